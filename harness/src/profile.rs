//! The profile: which SUT to run and how, what it declares it can do, the
//! hooks that trigger it, timeouts and brokers. Read from TOML
//! (`DMCONF_PROFILE=path`); with no profile the built-in reference device
//! is the SUT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::mgmt::{self, MgmtSpec};
use crate::protocol::ability::Limits;
use crate::reference::Fault;
use crate::reference::ability_cloud::CloudFault;
use crate::reference::ability_device::{self, AbilityDeviceFault};
use crate::reference::dmf_device::DeviceFault;
use crate::reference::dmf_server::ServerFault;
use crate::suite::Role;
use crate::suite::ast::parse_duration;

/// Every capability the built-in reference device declares.
pub const REFERENCE_DEVICE_CAPABILITIES: [&str; 3] = [
    "dmf.download-only",
    "dmf.request-attributes",
    "dmf.reregister",
];

/// Every capability the built-in reference server declares.
pub const REFERENCE_SERVER_CAPABILITIES: [&str; 1] = ["dmf.download-only"];

/// The hooks the built-in reference device offers.
pub const REFERENCE_DEVICE_HOOKS: [&str; 1] = ["reregister"];

/// A whole profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Where it was read from, for reports.
    pub origin: String,
    /// The folder hooks run in: the profile's, or the SUT's `cwd`.
    pub hook_dir: PathBuf,
    /// The system under test.
    pub sut: SutSpec,
    /// The protocol the SUT speaks: `dmf` or `ability`.
    pub protocol: String,
    /// The role the SUT plays.
    pub role: Role,
    /// Capabilities the SUT declares.
    pub capabilities: Vec<String>,
    /// Hook names the SUT offers for `trigger` steps.
    pub hooks: BTreeMap<String, Hook>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Brokers.
    pub broker: BrokerSpec,
    /// Cases run at once in one process.
    pub parallel: usize,
    /// The tenant a server under test serves; `None` gives each case a
    /// tenant of its own (the reference server).
    pub tenant: Option<String>,
    /// The server's Management API, when it offers hawkBit's.
    pub mgmt: Option<MgmtSpec>,
    /// Names of the server's broker objects.
    pub dmf: DmfNames,
    /// The Device API's size limits, as the platform declares them.
    pub limits: Limits,
    /// What every thing and device id of the run starts with; twelve hex
    /// digits follow.
    pub id_prefix: String,
}

/// The default start of thing and device ids.
pub const ID_PREFIX: &str = "dmconf-";

/// The names of a DMF server's broker objects.
#[derive(Clone, Debug)]
pub struct DmfNames {
    /// The inbound exchange (`dmf.exchange`).
    pub exchange: String,
    /// The dead-letter exchange that its receiver queue names, or `None`
    /// when the server's refusals cannot be observed.
    pub dead_letter_exchange: Option<String>,
}

impl Default for DmfNames {
    fn default() -> Self {
        DmfNames {
            exchange: crate::protocol::dmf::DMF_EXCHANGE.to_owned(),
            dead_letter_exchange: Some(crate::protocol::dmf::DEAD_LETTER_EXCHANGE.to_owned()),
        }
    }
}

/// The system under test.
#[derive(Clone, Debug)]
pub enum SutSpec {
    /// The built-in reference device, optionally with a fault.
    ReferenceDevice {
        /// The fault to carry.
        fault: Option<DeviceFault>,
    },
    /// The built-in reference server, optionally with a fault; one
    /// instance per case, each on broker objects of its own.
    ReferenceServer {
        /// The fault to carry.
        fault: Option<ServerFault>,
    },
    /// The built-in Device API device, optionally with a fault.
    ReferenceAbilityDevice {
        /// The fault to carry.
        fault: Option<AbilityDeviceFault>,
    },
    /// The built-in Device API platform, optionally with a fault; one
    /// instance per case, serving that case's device.
    ReferenceAbilityCloud {
        /// The fault to carry.
        fault: Option<CloudFault>,
    },
    /// An external program: a device is started once per case, a server
    /// once per run.
    Command(CommandSpec),
    /// A server that is already running (a hawkBit reached through the
    /// profile's broker and Management API); nothing is started.
    Running,
}

/// An external SUT program.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory (relative to the profile's folder).
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Grace period between SIGTERM and kill.
    pub stop_timeout: Duration,
    /// A server command is ready once its output contains this text.
    pub ready: Option<String>,
}

/// A hook: a command run to make the SUT act. Arguments are expanded
/// with the case's variables (`${thingId}`, ...).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// Program and arguments.
    pub command: Vec<String>,
}

/// Timeouts; `scale` multiplies every window of every suite.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Factor applied to `within`, `during` and `wait`.
    pub scale: f64,
    /// Default `within` of an `expect` or `collect`.
    pub expect: Duration,
    /// Upper bound of a whole case.
    pub case: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            scale: 1.0,
            expect: Duration::from_secs(10),
            case: Duration::from_secs(90),
        }
    }
}

/// Brokers: an existing one, or the image to start.
#[derive(Clone, Debug, Default)]
pub struct BrokerSpec {
    /// Use this broker; start none.
    pub amqp_url: Option<String>,
    /// The RabbitMQ image to start.
    pub rabbitmq_image: Option<String>,
    /// Use this MQTT broker (the service identity's URL); start none.
    pub mqtt_url: Option<String>,
    /// The Mosquitto image to start.
    pub mosquitto_image: Option<String>,
    /// Publish the device listener (TLS) on this host port; the Azure IoT
    /// device SDKs insist on 8883.
    pub mqtt_tls_port: Option<u16>,
    /// One more name for the device listener's certificate, for devices
    /// that connect by another host name.
    pub mqtt_host: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    sut: RawSut,
    #[serde(default)]
    dmf: RawDmf,
    #[serde(default)]
    ability: RawAbility,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    broker: RawBroker,
    #[serde(default)]
    parallel: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSut {
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    id_prefix: Option<String>,
    #[serde(default)]
    mgmt: Option<RawMgmt>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    fault: Option<String>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    stop_timeout: Option<String>,
    #[serde(default)]
    ready: Option<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    hooks: BTreeMap<String, Hook>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAbility {
    d2c_bytes: Option<usize>,
    c2d_bytes: Option<usize>,
    header_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDmf {
    exchange: Option<String>,
    dead_letter_exchange: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMgmt {
    url: String,
    #[serde(default = "admin")]
    user: String,
    #[serde(default = "admin")]
    password: String,
}

fn admin() -> String {
    "admin".to_owned()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    scale: Option<f64>,
    expect: Option<String>,
    case: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    amqp_url: Option<String>,
    rabbitmq_image: Option<String>,
    mqtt_url: Option<String>,
    mosquitto_image: Option<String>,
    mqtt_tls_port: Option<u16>,
    mqtt_host: Option<String>,
}

/// Hooks a reference implements in process (no command).
fn builtin_hooks(names: &[&str]) -> BTreeMap<String, Hook> {
    let hook = || Hook {
        command: Vec::new(),
    };
    names.iter().map(|h| (h.to_string(), hook())).collect()
}

/// A reference profile with the fault named `name`, if one is.
fn with_fault<F: Fault>(
    origin: &str,
    name: Option<&str>,
    make: fn(Option<F>) -> Profile,
) -> Result<Profile, String> {
    let fault = name
        .map(|n| {
            F::all()
                .iter()
                .copied()
                .find(|f| f.name() == n)
                .ok_or_else(|| {
                    let names: Vec<_> = F::all().iter().map(|f| f.name()).collect();
                    format!("{origin}: unknown fault `{n}`; known: {}", names.join(", "))
                })
        })
        .transpose()?;
    Ok(make(fault))
}

impl Profile {
    /// The SUT, capabilities and hooks, to build another profile on.
    fn parts(self) -> (SutSpec, Vec<String>, BTreeMap<String, Hook>) {
        (self.sut, self.capabilities, self.hooks)
    }

    /// The built-in default: the reference device, correct.
    pub fn reference_device(fault: Option<DeviceFault>) -> Self {
        Profile {
            origin: "built-in reference device".to_owned(),
            hook_dir: PathBuf::from("."),
            sut: SutSpec::ReferenceDevice { fault },
            protocol: "dmf".to_owned(),
            role: Role::Device,
            capabilities: REFERENCE_DEVICE_CAPABILITIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            hooks: builtin_hooks(&REFERENCE_DEVICE_HOOKS),
            timeouts: Timeouts::default(),
            broker: BrokerSpec::default(),
            parallel: 64,
            tenant: None,
            mgmt: None,
            dmf: DmfNames::default(),
            limits: Limits::default(),
            id_prefix: ID_PREFIX.to_owned(),
        }
    }

    /// The built-in reference server, correct unless given a fault.
    pub fn reference_server(fault: Option<ServerFault>) -> Self {
        Profile {
            origin: "built-in reference server".to_owned(),
            sut: SutSpec::ReferenceServer { fault },
            role: Role::Server,
            capabilities: REFERENCE_SERVER_CAPABILITIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            hooks: BTreeMap::new(),
            ..Self::reference_device(None)
        }
    }

    /// The built-in Device API device, correct unless given a fault.
    pub fn reference_ability_device(fault: Option<AbilityDeviceFault>) -> Self {
        Profile {
            origin: "built-in reference Device API device".to_owned(),
            sut: SutSpec::ReferenceAbilityDevice { fault },
            protocol: "ability".to_owned(),
            role: Role::Device,
            capabilities: Vec::new(),
            hooks: builtin_hooks(&ability_device::HOOKS),
            ..Self::reference_device(None)
        }
    }

    /// The built-in Device API platform, correct unless given a fault.
    pub fn reference_ability_cloud(fault: Option<CloudFault>) -> Self {
        Profile {
            origin: "built-in reference Device API platform".to_owned(),
            sut: SutSpec::ReferenceAbilityCloud { fault },
            protocol: "ability".to_owned(),
            role: Role::Server,
            capabilities: Vec::new(),
            hooks: BTreeMap::new(),
            ..Self::reference_device(None)
        }
    }

    /// Every built-in reference, correct: the default SUTs of a run.
    pub fn references() -> Vec<Self> {
        vec![
            Self::reference_device(None),
            Self::reference_server(None),
            Self::reference_ability_device(None),
            Self::reference_ability_cloud(None),
        ]
    }

    /// Whether a `trigger` or `query` step may name `hook`: the profile
    /// has a command for it, or the SUT's Management API offers it.
    pub fn offers(&self, hook: &str) -> bool {
        self.hooks.contains_key(hook)
            || (matches!(self.sut, SutSpec::ReferenceServer { .. }) || self.mgmt.is_some())
                && mgmt::OPERATIONS.contains(&hook)
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses profile text; `path` locates relative paths and errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let origin = path.display().to_string();
        let raw: RawProfile = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        // A bare file name has an empty parent: its folder is the current one.
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dur = |s: &Option<String>, d: Duration| -> Result<Duration, String> {
            s.as_deref()
                .map(parse_duration)
                .transpose()
                .map(|o| o.unwrap_or(d))
                .map_err(|e| format!("{origin}: {e}"))
        };
        let fault_name = raw.sut.fault.as_deref();
        let protocol = raw.sut.protocol.clone().unwrap_or_else(|| "dmf".to_owned());
        if !["dmf", "ability"].contains(&protocol.as_str()) {
            return Err(format!(
                "{origin}: unknown protocol `{protocol}`; known: dmf, ability"
            ));
        }
        let reference = raw.sut.reference.as_deref().map(|r| (protocol.as_str(), r));
        let (sut, mut capabilities, mut hooks) = match (reference, &raw.sut.command) {
            (Some(("dmf", "device")), None) => {
                with_fault(&origin, fault_name, Self::reference_device)?.parts()
            }
            (Some(("dmf", "server")), None) => {
                with_fault(&origin, fault_name, Self::reference_server)?.parts()
            }
            (Some(("ability", "device")), None) => {
                with_fault(&origin, fault_name, Self::reference_ability_device)?.parts()
            }
            (Some(("ability", "server")), None) => {
                with_fault(&origin, fault_name, Self::reference_ability_cloud)?.parts()
            }
            (Some((_, r)), None) => {
                return Err(format!(
                    "{origin}: unknown reference `{r}`; known: device, server"
                ));
            }
            (None, Some(argv)) if !argv.is_empty() => {
                if fault_name.is_some() {
                    return Err(format!("{origin}: `fault` applies to a reference SUT only"));
                }
                let spec = CommandSpec {
                    argv: argv.clone(),
                    cwd: dir.join(raw.sut.cwd.clone().unwrap_or_default()),
                    env: raw.sut.env.clone(),
                    stop_timeout: dur(&raw.sut.stop_timeout, Duration::from_secs(5))?,
                    ready: raw.sut.ready.clone(),
                };
                (SutSpec::Command(spec), Vec::new(), BTreeMap::new())
            }
            (None, None) if raw.sut.role == Some(Role::Server) => {
                if fault_name.is_some() {
                    return Err(format!("{origin}: `fault` applies to a reference SUT only"));
                }
                (SutSpec::Running, Vec::new(), BTreeMap::new())
            }
            _ => {
                return Err(format!(
                    "{origin}: [sut] needs exactly one of `reference = \"device\"`, `reference = \"server\"` or `command = [\"program\", ...]` (a server that is already running needs neither: `role = \"server\"` alone)"
                ));
            }
        };
        capabilities.extend(raw.sut.capabilities.iter().cloned());
        hooks.extend(raw.sut.hooks.clone());
        let defaults = Timeouts::default();
        let scale = raw.timeouts.scale.unwrap_or(1.0);
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(format!(
                "{origin}: timeouts.scale must be a positive number"
            ));
        }
        let implied = match sut {
            SutSpec::ReferenceDevice { .. } | SutSpec::ReferenceAbilityDevice { .. } => {
                Some(Role::Device)
            }
            SutSpec::ReferenceServer { .. } | SutSpec::ReferenceAbilityCloud { .. } => {
                Some(Role::Server)
            }
            SutSpec::Command(_) | SutSpec::Running => None,
        };
        let role = match (raw.sut.role, implied) {
            (Some(r), Some(i)) if r != i => {
                return Err(format!(
                    "{origin}: the reference SUT is a {}, but `role` says {}",
                    i.as_str(),
                    r.as_str()
                ));
            }
            (r, i) => r.or(i).unwrap_or(Role::Device),
        };
        let defaults_dmf = DmfNames::default();
        let dmf = DmfNames {
            exchange: raw.dmf.exchange.unwrap_or(defaults_dmf.exchange),
            dead_letter_exchange: match raw.dmf.dead_letter_exchange {
                Some(d) if d.is_empty() => None,
                Some(d) => Some(d),
                None => defaults_dmf.dead_letter_exchange,
            },
        };
        let default_limits = Limits::default();
        let limits = Limits {
            d2c: raw.ability.d2c_bytes.unwrap_or(default_limits.d2c),
            c2d: raw.ability.c2d_bytes.unwrap_or(default_limits.c2d),
            headers: raw.ability.header_bytes.unwrap_or(default_limits.headers),
        };
        let hook_dir = match &sut {
            SutSpec::Command(c) => c.cwd.clone(),
            _ => dir.to_path_buf(),
        };
        let id_prefix = raw.sut.id_prefix.unwrap_or_else(|| ID_PREFIX.to_owned());
        if id_prefix.is_empty()
            || !id_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "{origin}: [sut] id_prefix `{id_prefix}`: use letters, digits, `-`, `_` and `.` (it starts MQTT client ids and topics)"
            ));
        }
        Ok(Profile {
            origin: origin.clone(),
            hook_dir,
            sut,
            protocol,
            limits,
            role,
            id_prefix,
            tenant: raw.sut.tenant,
            mgmt: raw.sut.mgmt.map(|m| MgmtSpec {
                url: m.url,
                user: m.user,
                password: m.password,
            }),
            dmf,
            capabilities,
            hooks,
            timeouts: Timeouts {
                scale,
                expect: dur(&raw.timeouts.expect, defaults.expect)?,
                case: dur(&raw.timeouts.case, defaults.case)?,
            },
            broker: BrokerSpec {
                amqp_url: raw.broker.amqp_url,
                rabbitmq_image: raw.broker.rabbitmq_image,
                mqtt_url: raw.broker.mqtt_url,
                mosquitto_image: raw.broker.mosquitto_image,
                mqtt_tls_port: raw.broker.mqtt_tls_port,
                mqtt_host: raw.broker.mqtt_host,
            },
            parallel: raw.parallel.unwrap_or(16).max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_profile() {
        let p = Profile::parse(
            r#"
            [sut]
            command = ["python3", "device.py"]
            capabilities = ["dmf.download-only"]
            [sut.hooks.reregister]
            command = ["kill", "-HUP", "${thingId}"]
            [timeouts]
            scale = 2.0
            expect = "5s"
            "#,
            Path::new("/x/profile.toml"),
        )
        .unwrap();
        assert!(matches!(p.sut, SutSpec::Command(ref c) if c.cwd == Path::new("/x/")));
        let here = Profile::parse("[sut]\ncommand = [\"d\"]\n", Path::new("p.toml")).unwrap();
        assert!(
            matches!(here.sut, SutSpec::Command(ref c) if c.cwd == Path::new(".")),
            "a profile named by a bare file name runs its command here"
        );
        assert_eq!(p.timeouts.expect, Duration::from_secs(5));
        assert!(p.hooks.contains_key("reregister"));
        assert!(Profile::parse("[sut]\n", Path::new("p.toml")).is_err());
        assert!(
            Profile::parse(
                "[sut]\nreference = \"device\"\nfault = \"nope\"\n",
                Path::new("p.toml")
            )
            .is_err()
        );
    }

    #[test]
    fn server_profiles() {
        let hawkbit = Profile::parse(
            r#"
            [sut]
            role = "server"
            tenant = "DEFAULT"
            [sut.mgmt]
            url = "http://localhost:8080"
            [dmf]
            dead_letter_exchange = ""
            "#,
            Path::new("hawkbit.toml"),
        )
        .unwrap();
        assert!(matches!(hawkbit.sut, SutSpec::Running));
        assert_eq!(hawkbit.role, Role::Server);
        assert!(hawkbit.offers("assign") && !hawkbit.offers("reregister"));
        assert_eq!(hawkbit.dmf.dead_letter_exchange, None);
        assert_eq!(
            hawkbit.mgmt.as_ref().map(|m| m.user.as_str()),
            Some("admin")
        );

        let faulty = Profile::parse(
            "[sut]\nreference = \"server\"\nfault = \"no-thing-deleted\"\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(faulty.role, Role::Server);
        assert!(faulty.offers("cancel"));
        let wrong = "[sut]\nreference = \"server\"\nrole = \"device\"\n";
        assert!(Profile::parse(wrong, Path::new("p.toml")).is_err());
        let device_fault = "[sut]\nreference = \"server\"\nfault = \"cancel-silent\"\n";
        assert!(Profile::parse(device_fault, Path::new("p.toml")).is_err());
        assert!(Profile::parse("[sut]\n", Path::new("p.toml")).is_err());
    }
}
