//! Every `DMCONF_*` environment variable, named once: those a user sets
//! to steer a run, and those a SUT finds in its environment.

// What a user sets.

/// The checkout whose suites, schemas and fixtures a run reads; the
/// working folder by default.
pub const ROOT: &str = "DMCONF_ROOT";
/// The profile file of the SUT; none runs every built-in reference.
pub const PROFILE: &str = "DMCONF_PROFILE";
/// Another folder of suites than `suites/`.
pub const SUITES: &str = "DMCONF_SUITES";
/// Where evidence files go; `target/dmconf-reports/` by default.
pub const REPORT_DIR: &str = "DMCONF_REPORT_DIR";
/// The RabbitMQ image to start.
pub const RABBITMQ_IMAGE: &str = "DMCONF_RABBITMQ_IMAGE";
/// The Mosquitto image to start.
pub const MOSQUITTO_IMAGE: &str = "DMCONF_MOSQUITTO_IMAGE";
/// Keep started brokers for the next run, and use kept ones (`1`).
pub const REUSE: &str = "DMCONF_REUSE";
/// Where devices connect on a broker the user runs.
pub const MQTT_DEVICE_URL: &str = "DMCONF_MQTT_DEVICE_URL";
/// Makes a test binary a reaper (set by the harness itself).
pub const REAP: &str = "DMCONF_REAP";

// What a SUT finds (and, for the brokers, what a user may set to use a
// broker of their own: the same names, the same meaning).

/// The AMQP broker: `amqp://user:pass@host:port/vhost`.
pub const AMQP_URL: &str = "DMCONF_AMQP_URL";
/// The MQTT broker: for a device, where devices connect; for a platform,
/// the service identity's URL with its login.
pub const MQTT_URL: &str = "DMCONF_MQTT_URL";
/// The CA of the MQTT broker's TLS listener, as a PEM file.
pub const MQTT_CA: &str = "DMCONF_MQTT_CA";
/// The CA of the harness's HTTPS artifact server, as a PEM file (a DMF
/// device).
pub const ARTIFACT_CA: &str = "DMCONF_ARTIFACT_CA";
/// The case's tenant (a device), or the tenant served (a server).
pub const TENANT: &str = "DMCONF_TENANT";
/// The thing id a DMF device registers.
pub const THING_ID: &str = "DMCONF_THING_ID";
/// The device id of a Device API device.
pub const DEVICE_ID: &str = "DMCONF_DEVICE_ID";
/// The DMF server's inbound exchange.
pub const DMF_EXCHANGE: &str = "DMCONF_DMF_EXCHANGE";
/// The DMF server's receiver queue, when the harness names one (a
/// server that runs for one case, on broker objects of its own).
pub const DMF_RECEIVER_QUEUE: &str = "DMCONF_DMF_RECEIVER_QUEUE";
/// The device-to-cloud limit the profile declares, in bytes.
pub const D2C_BYTES: &str = "DMCONF_D2C_BYTES";
/// The cloud-to-device limit the profile declares, in bytes.
pub const C2D_BYTES: &str = "DMCONF_C2D_BYTES";
/// The header-properties limit the profile declares, in bytes.
pub const HEADER_BYTES: &str = "DMCONF_HEADER_BYTES";

/// What a SUT is told about its case: variable name and value.
pub type SutEnv = Vec<(&'static str, String)>;
