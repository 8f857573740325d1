//! The profile: which SUT to run and how, what it declares it can do, the
//! hooks that trigger it, timeouts and brokers. Read from TOML
//! (`DMCONF_PROFILE=path`); with no profile the built-in reference device
//! is the SUT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;
use crate::mgmt::{self, MgmtSpec};
use crate::protocol::ability::Limits;
use crate::select::Selection;
use crate::suite::{MAX_DURATION, parse_duration};
use crate::suite::{Protocol, Role};

/// The most cases a profile may run at once in one process.
pub const MAX_PARALLEL: usize = 1024;

/// A whole profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Where it was read from, for reports.
    pub origin: String,
    /// The folder hooks run in: the profile's, or the SUT's `cwd`.
    pub hook_dir: PathBuf,
    /// The system under test.
    pub sut: SutSpec,
    /// The protocol the SUT speaks.
    pub protocol: Protocol,
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
    /// The SUT is a reference that serves the Management API itself.
    pub builtin_mgmt: bool,
    /// Names of the server's broker objects.
    pub dmf: DmfNames,
    /// The Device API's size limits, as the platform declares them.
    pub limits: Limits,
    /// What every thing and device id of the run starts with; hex digits
    /// follow (twelve of the case's own, and for a Device API device on a
    /// broker dmconf started, twelve of the run's before them).
    pub id_prefix: String,
    /// Which cases the run takes (`[select]`; the environment may set it
    /// instead).
    pub select: Selection,
    /// The known-deviation file (`[run] baseline`, relative to the
    /// profile).
    pub baseline: Option<PathBuf>,
    /// Names of the SUT's environment variables whose values are secrets
    /// (beside those whose names say so), never shown.
    pub secret_env: Vec<String>,
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
    /// A PEM file of the CA that signs the certificate of the server's
    /// HTTPS download URLs, when no public CA does.
    pub artifact_ca: Option<std::path::PathBuf>,
}

impl Default for DmfNames {
    fn default() -> Self {
        DmfNames {
            exchange: crate::protocol::dmf::DMF_EXCHANGE.to_owned(),
            dead_letter_exchange: Some(crate::protocol::dmf::DEAD_LETTER_EXCHANGE.to_owned()),
            artifact_ca: None,
        }
    }
}

/// The system under test.
#[derive(Clone, Debug)]
pub enum SutSpec {
    /// The built-in reference of the profile's protocol and role, correct
    /// or with a fault, or showing a variant. A reference server runs
    /// once per case, on broker objects of its own.
    Reference {
        /// The fault to carry, by name.
        fault: Option<String>,
        /// The variant to show, by name.
        variant: Option<String>,
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
#[derive(Clone, Debug, Default, Deserialize)]
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
    /// Upper bound of a whole case, before `scale`.
    pub case: Duration,
}

impl Timeouts {
    /// A suite's window times `scale`, at most a day.
    pub fn scaled(&self, d: Duration) -> Duration {
        Duration::try_from_secs_f64(d.as_secs_f64() * self.scale)
            .unwrap_or(MAX_DURATION)
            .min(MAX_DURATION)
    }

    /// The limit of a whole case, times `scale` like every window in it:
    /// a slow device's scaled waits must not meet an unscaled limit.
    pub fn case_limit(&self) -> Duration {
        self.scaled(self.case)
    }
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
    /// The address a started broker's ports are published on: this
    /// machine only (127.0.0.1) unless a SUT on another host or in another
    /// container must reach it.
    pub listen: Option<String>,
    /// Keep the started brokers for the next run, and use the ones an
    /// earlier run kept (`DMCONF_REUSE=1` says the same).
    pub reuse: bool,
}

impl BrokerSpec {
    /// The address a started broker listens on.
    pub fn listen(&self) -> &str {
        self.listen.as_deref().unwrap_or(crate::broker::LOOPBACK)
    }

    /// Whether started brokers are kept warm for the next run.
    pub fn warm(&self) -> bool {
        self.reuse
            || std::env::var(crate::env::REUSE)
                .is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
    }
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
    #[serde(default)]
    select: RawSelect,
    #[serde(default)]
    run: RawRun,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRun {
    baseline: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSelect {
    #[serde(default)]
    requirements: Vec<String>,
    level: Option<String>,
    #[serde(default)]
    basis: Vec<String>,
    #[serde(default)]
    capabilities: Vec<String>,
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
    variant: Option<String>,
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
    #[serde(default)]
    secret_env: Vec<String>,
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
    artifact_ca: Option<std::path::PathBuf>,
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
    listen: Option<std::net::IpAddr>,
    #[serde(default)]
    reuse: bool,
}

impl Profile {
    /// The built-in reference of `protocol` and `role`, correct unless
    /// given a fault or a variant. The harness completes it (its
    /// capabilities and hooks) from the reference itself.
    pub fn reference(
        protocol: Protocol,
        role: Role,
        fault: Option<&str>,
        variant: Option<&str>,
    ) -> Self {
        Profile {
            origin: String::new(),
            hook_dir: PathBuf::from("."),
            sut: SutSpec::Reference {
                fault: fault.map(str::to_owned),
                variant: variant.map(str::to_owned),
            },
            protocol,
            role,
            capabilities: Vec::new(),
            hooks: BTreeMap::new(),
            timeouts: Timeouts::default(),
            broker: BrokerSpec::default(),
            parallel: 64,
            tenant: None,
            mgmt: None,
            builtin_mgmt: false,
            dmf: DmfNames::default(),
            limits: Limits::default(),
            id_prefix: ID_PREFIX.to_owned(),
            select: Selection::default(),
            baseline: None,
            secret_env: Vec::new(),
        }
    }

    /// Every built-in reference, correct: the default SUTs of a run.
    pub fn references() -> Vec<Self> {
        let mut all = Vec::new();
        for protocol in Protocol::ALL {
            for role in [Role::Device, Role::Server] {
                all.push(Self::reference(protocol, role, None, None));
            }
        }
        all
    }

    /// Whether a `trigger` or `query` step may name `hook`: the profile
    /// has a command for it, or the SUT's Management API offers it.
    pub fn offers(&self, hook: &str) -> bool {
        self.hooks.contains_key(hook)
            || (self.builtin_mgmt || self.mgmt.is_some()) && mgmt::OPERATIONS.contains(&hook)
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Profile {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses profile text; `path` locates relative paths and errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let origin = path.display().to_string();
        Self::parse_raw(text, path).map_err(|message| Error::Profile { origin, message })
    }

    fn parse_raw(text: &str, path: &Path) -> Result<Self, String> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| e.to_string())?;
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
        };
        let protocol_name = raw.sut.protocol.clone().unwrap_or_else(|| "dmf".to_owned());
        let protocol = Protocol::from_name(&protocol_name)
            .ok_or_else(|| format!("unknown protocol `{protocol_name}`; known: dmf, ability"))?;
        let tuned = raw.sut.fault.is_some() || raw.sut.variant.is_some();
        let (sut, implied) = match (raw.sut.reference.as_deref(), &raw.sut.command) {
            (Some(r), None) => {
                let role = match r {
                    "device" => Role::Device,
                    "server" => Role::Server,
                    _ => return Err(format!("unknown reference `{r}`; known: device, server")),
                };
                let sut = SutSpec::Reference {
                    fault: raw.sut.fault.clone(),
                    variant: raw.sut.variant.clone(),
                };
                (sut, Some(role))
            }
            (None, Some(argv)) if !argv.is_empty() => {
                if tuned {
                    return Err("`fault` and `variant` apply to a reference SUT only".to_owned());
                }
                let spec = CommandSpec {
                    argv: argv.clone(),
                    cwd: dir.join(raw.sut.cwd.clone().unwrap_or_default()),
                    env: raw.sut.env.clone(),
                    stop_timeout: dur(&raw.sut.stop_timeout, Duration::from_secs(5))?,
                    ready: raw.sut.ready.clone(),
                };
                (SutSpec::Command(spec), None)
            }
            (None, None) if raw.sut.role == Some(Role::Server) => {
                if tuned {
                    return Err("`fault` and `variant` apply to a reference SUT only".to_owned());
                }
                (SutSpec::Running, None)
            }
            _ => {
                return Err(
                    "[sut] needs exactly one of `reference = \"device\"`, `reference = \"server\"` or `command = [\"program\", ...]` (a server that is already running needs neither: `role = \"server\"` alone)".to_owned()
                );
            }
        };
        let capabilities = raw.sut.capabilities.clone();
        let hooks = raw.sut.hooks.clone();
        let defaults = Timeouts::default();
        let scale = raw.timeouts.scale.unwrap_or(1.0);
        if !(scale > 0.0 && scale <= 1000.0) {
            return Err("timeouts.scale must be a number above 0 and at most 1000".to_owned());
        }
        let role = match (raw.sut.role, implied) {
            (Some(r), Some(i)) if r != i => {
                return Err(format!(
                    "the reference SUT is a {}, but `role` says {}",
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
            artifact_ca: raw.dmf.artifact_ca.map(|p| dir.join(p)),
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
                "[sut] id_prefix `{id_prefix}`: use letters, digits, `-`, `_` and `.` (it starts MQTT client ids and topics)"
            ));
        }
        let select = Selection {
            capabilities: raw.select.capabilities.clone(),
            ..Selection::parse(
                &raw.select.requirements,
                raw.select.level.as_deref(),
                &raw.select.basis,
            )
            .map_err(|e| format!("[select] {e}"))?
        };
        let parallel = raw.parallel.unwrap_or(16);
        if !(1..=MAX_PARALLEL).contains(&parallel) {
            return Err(format!(
                "parallel = {parallel}: run between 1 and {MAX_PARALLEL} cases at once"
            ));
        }
        Ok(Profile {
            origin: path.display().to_string(),
            hook_dir,
            sut,
            protocol,
            limits,
            role,
            id_prefix,
            select,
            baseline: raw.run.baseline.map(|b| dir.join(b)),
            secret_env: raw.sut.secret_env.clone(),
            tenant: raw.sut.tenant,
            mgmt: raw.sut.mgmt.map(|m| MgmtSpec {
                url: m.url,
                user: m.user,
                password: m.password,
            }),
            builtin_mgmt: false,
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
                listen: raw.broker.listen.map(|a| a.to_string()),
                reuse: raw.broker.reuse,
            },
            parallel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_brokers_are_asked_for_by_the_profile() {
        let text = "[sut]\ncommand = [\"d\"]\n[broker]\nreuse = true\n";
        assert!(
            Profile::parse(text, Path::new("p.toml"))
                .unwrap()
                .broker
                .reuse
        );
        let plain = Profile::parse("[sut]\ncommand = [\"d\"]\n", Path::new("p.toml")).unwrap();
        assert!(!plain.broker.reuse);
        assert!(
            Profile::parse(&text.replace("true", "\"yes\""), Path::new("p.toml")).is_err(),
            "reuse takes a boolean"
        );
    }

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
        assert_eq!(
            p.timeouts.case_limit(),
            Duration::from_secs(180),
            "the case limit grows with the windows it holds"
        );
        assert!(p.hooks.contains_key("reregister"));
        assert!(Profile::parse("[sut]\n", Path::new("p.toml")).is_err());
        assert!(
            Profile::parse(
                "[sut]\ncommand = [\"d\"]\nfault = \"double-install\"\n",
                Path::new("p.toml")
            )
            .is_err(),
            "a fault belongs to a reference"
        );
    }

    #[test]
    fn numbers_out_of_range_are_refused_not_panicked_on() {
        for bad in [
            "[sut]\ncommand = [\"d\"]\n[timeouts]\nscale = 1e300\n",
            "[sut]\ncommand = [\"d\"]\n[timeouts]\ncase = \"1e20s\"\n",
            "[sut]\ncommand = [\"d\"]\n[timeouts]\ncase = \"100000000000000000000s\"\n",
            "[sut]\ncommand = [\"d\"]\nstop_timeout = \"1e20s\"\n",
            "[sut]\ncommand = [\"d\"]\nparallel = 100000000\n",
        ] {
            let e = Profile::parse(bad, Path::new("p.toml")).unwrap_err();
            assert!(e.to_string().starts_with("profile p.toml: "), "{e}");
        }
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
            artifact_ca = "certs/ca.pem"
            "#,
            Path::new("lab/hawkbit.toml"),
        )
        .unwrap();
        assert_eq!(
            hawkbit.dmf.artifact_ca.as_deref(),
            Some(Path::new("lab/certs/ca.pem")),
            "relative to the profile"
        );
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
        assert!(
            matches!(faulty.sut, SutSpec::Reference { fault: Some(ref f), .. } if f == "no-thing-deleted")
        );
        let wrong = "[sut]\nreference = \"server\"\nrole = \"device\"\n";
        assert!(Profile::parse(wrong, Path::new("p.toml")).is_err());
        assert!(Profile::parse("[sut]\n", Path::new("p.toml")).is_err());
    }
}
