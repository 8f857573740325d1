//! The bridge to the test runner: loads suites and the profile, lists one
//! libtest trial per case, runs each on a shared broker, and maps the
//! outcome to an exit status. The only module that imports libtest-mimic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::event::{RunEvent, Verdict};
use crate::plan::{self, Planned};
use crate::profile::{Profile, SutSpec};
use crate::reaper;
use crate::report;
use crate::run::link::Sides;
use crate::run::{self, RunEnv};
use crate::schema::SchemaStore;
use crate::suite::Role;
use crate::suite::{Context, Suite};
use crate::sut::Process;
use crate::{discover, run::check};

/// Exit status when a suite file is broken (not a SUT failure).
pub const EXIT_BROKEN_SUITE: u8 = 2;
/// Exit status when the harness cannot run (profile, schemas, broker).
pub const EXIT_HARNESS_ERROR: u8 = 3;
/// Exit status when a case failed, as libtest uses.
pub const EXIT_FAILED: u8 = 101;

/// Where the project's data lives.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The project root; file names in reports are relative to it.
    pub root: PathBuf,
    /// `suites/`.
    pub suites: PathBuf,
    /// `schemas/`.
    pub schemas: PathBuf,
    /// `fixtures/`.
    pub fixtures: PathBuf,
}

impl Paths {
    /// The standard layout under `root`; `DMCONF_SUITES` may point at
    /// another suites folder.
    pub fn under(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let suites = std::env::var_os("DMCONF_SUITES")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("suites"));
        Paths {
            suites,
            schemas: root.join("schemas"),
            fixtures: root.join("fixtures"),
            root,
        }
    }
}

/// Why the harness could not load.
#[derive(Debug)]
pub enum LoadError {
    /// A suite file is broken; the text names file, line and column.
    Suite(String),
    /// Something else: schemas, profile.
    Harness(String),
}

struct Live {
    sides: Sides,
    /// Server commands that run for the whole run, by profile.
    servers: tokio::sync::Mutex<std::collections::HashMap<String, Result<Arc<Process>, String>>>,
}

/// How long a server command may take to be ready.
const SERVER_READY: std::time::Duration = std::time::Duration::from_secs(60);
/// How long an MQTT server command is given to subscribe, when it names
/// no line that says it is ready.
const SERVER_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Loaded suites and schemas, and the broker, started on first use.
pub struct Harness {
    /// The project's paths.
    pub paths: Paths,
    /// Compiled schemas.
    pub schemas: SchemaStore,
    /// Every suite.
    pub suites: Vec<Arc<Suite>>,
    runtime: tokio::runtime::Runtime,
    live: OnceCell<Result<Live, String>>,
    broker_spec: crate::profile::BrokerSpec,
    reporter: Mutex<Option<report::json::JsonLines>>,
}

impl Harness {
    /// Loads schemas and every suite. No broker is started.
    pub fn load(paths: Paths, broker_spec: crate::profile::BrokerSpec) -> Result<Self, LoadError> {
        let schemas = SchemaStore::load(&paths.schemas).map_err(LoadError::Harness)?;
        let cx = Context {
            schemas: &schemas,
            checks: &check::NAMES,
        };
        let suites = discover::load(&paths.suites, &paths.root, &cx).map_err(|e| {
            let root = paths.root.clone();
            LoadError::Suite(e.render(|f| std::fs::read_to_string(root.join(f)).ok()))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| LoadError::Harness(format!("cannot start the async runtime: {e}")))?;
        Ok(Harness {
            paths,
            schemas,
            suites,
            runtime,
            live: OnceCell::new(),
            broker_spec,
            reporter: Mutex::new(None),
        })
    }

    /// Writes events to a JSON Lines file in `dir`.
    pub fn report_to(
        &self,
        dir: &std::path::Path,
        prefix: &str,
        profiles: &[Profile],
    ) -> Result<PathBuf, String> {
        let suts: Vec<_> = profiles
            .iter()
            .map(|p| {
                json!({
                    "profile": p.origin,
                    "role": p.role.as_str(),
                    "sut": format!("{:?}", p.sut),
                    "capabilities": p.capabilities,
                })
            })
            .collect();
        let header = json!({
            "tool": concat!("dmconf ", env!("CARGO_PKG_VERSION")),
            "suts": suts,
            "suites": self.suites.iter().map(|s| s.origin.clone()).collect::<Vec<_>>(),
        });
        let r = report::json::JsonLines::create(dir, prefix, header)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = r.path().to_owned();
        *self.reporter.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        Ok(path)
    }

    fn emit(&self, event: RunEvent) {
        if let Some(r) = self
            .reporter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            r.on_event(&event);
        }
    }

    async fn live(&self) -> Result<&Live, String> {
        self.live
            .get_or_init(|| async {
                Ok(Live {
                    sides: Sides::new(self.broker_spec.clone()),
                    servers: Default::default(),
                })
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Each broker's start time and URL, starting them if needed.
    pub fn broker_info(&self) -> Result<Vec<(String, std::time::Duration, String)>, String> {
        self.runtime.block_on(async {
            let live = self.live().await?;
            let rabbit = live.sides.rabbitmq().await?;
            let mosquitto = live.sides.mosquitto().await?;
            Ok(vec![
                (
                    "RabbitMQ".to_owned(),
                    rabbit.start_time,
                    rabbit.amqp_url.clone(),
                ),
                (
                    "Mosquitto".to_owned(),
                    mosquitto.start_time,
                    mosquitto.device_url.clone(),
                ),
            ])
        })
    }

    /// Whether starting a broker failed.
    pub fn broker_failed(&self) -> bool {
        match self.live.get() {
            Some(Ok(l)) => l.sides.broker_failed(),
            Some(Err(_)) => true,
            None => false,
        }
    }

    /// Runs one case against the SUT of `profile`; blocks.
    pub fn run(&self, profile: &Profile, planned: &Planned) -> Result<Verdict, String> {
        self.emit(RunEvent::CaseStarted {
            name: planned.name.clone(),
        });
        let verdict = self.runtime.block_on(async {
            let live = self.live().await?;
            let shared_sut = match (&profile.sut, profile.role) {
                (SutSpec::Command(_), Role::Server) => Some(server_process(live, profile).await?),
                _ => None,
            };
            let env = RunEnv {
                schemas: &self.schemas,
                fixtures: &self.paths.fixtures,
                profile,
                sides: &live.sides,
                shared_sut,
            };
            Ok::<_, String>(
                run::run_case(&env, &planned.suite, &planned.suite.cases[planned.case]).await,
            )
        })?;
        self.emit(RunEvent::CaseFinished {
            name: planned.name.clone(),
            verdict: Box::new(verdict.clone()),
        });
        Ok(verdict)
    }

    /// Lists the cases for `profile`.
    pub fn plan(&self, profile: &Profile) -> Vec<Planned> {
        plan::plan(&self.suites, profile)
    }

    /// Stops the server commands and removes the broker this process
    /// started.
    pub fn shutdown(self) {
        let Harness { runtime, live, .. } = self;
        if let Some(Ok(live)) = live.into_inner() {
            runtime.block_on(async {
                for p in live.servers.lock().await.values().flatten() {
                    p.stop().await;
                }
                live.sides.stop().await;
            });
        }
    }
}

/// The server command of `profile`, started on first use and kept for
/// the run. It is ready once its inbound exchange exists.
async fn server_process(live: &Live, profile: &Profile) -> Result<Arc<Process>, String> {
    let mut servers = live.servers.lock().await;
    if let Some(p) = servers.get(&profile.origin) {
        return p.clone();
    }
    let started = start_server(live, profile).await;
    servers.insert(profile.origin.clone(), started.clone());
    started
}

async fn start_server(live: &Live, profile: &Profile) -> Result<Arc<Process>, String> {
    let SutSpec::Command(spec) = &profile.sut else {
        return Err("not a command".to_owned());
    };
    let env = server_env(live, profile).await?;
    let Ok(run) = std::env::var("NEXTEST_RUN_ID") else {
        let process = Process::spawn(spec, &env)?;
        ready(live, profile, &process).await?;
        return Ok(Arc::new(process));
    };
    // Under nextest every case is a process of its own, and all of them
    // must meet one server: the first starts it, the others find it.
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        profile.origin.hash(&mut h);
        h.finish()
    };
    let dir = std::env::temp_dir().join(format!("dmconf-server-{run}-{key:016x}"));
    let lock = reaper::lock(&dir.join("lock"))?;
    let (pid_file, log, failed) = (dir.join("pid"), dir.join("output.log"), dir.join("failed"));
    if let Ok(why) = std::fs::read_to_string(&failed) {
        return Err(why);
    }
    let known = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .filter(|p| reaper::alive(*p as i32));
    if let Some(pid) = known {
        return Ok(Arc::new(Process::adopt(pid, &log, spec)));
    }
    let (process, pid) = Process::spawn_shared(spec, &env, &log)?;
    reaper::spawn(reaper::Target::Process(pid), &[&dir]);
    if let Err(why) = ready(live, profile, &process).await {
        let _ = std::fs::write(&failed, &why);
        return Err(why);
    }
    std::fs::write(&pid_file, pid.to_string())
        .map_err(|e| format!("{}: {e}", pid_file.display()))?;
    drop(lock);
    Ok(Arc::new(process))
}

/// What a server command finds in its environment.
async fn server_env(live: &Live, profile: &Profile) -> Result<Vec<(&'static str, String)>, String> {
    let tenant = profile
        .tenant
        .clone()
        .unwrap_or_else(|| "DEFAULT".to_owned());
    let mut env = vec![("DMCONF_TENANT", tenant)];
    let dmf = profile.protocol == "dmf";
    if dmf {
        env.push((
            "DMCONF_AMQP_URL",
            live.sides.rabbitmq().await?.amqp_url.clone(),
        ));
        env.push(("DMCONF_DMF_EXCHANGE", profile.dmf.exchange.clone()));
    } else {
        let m = live.sides.mosquitto().await?;
        env.push(("DMCONF_MQTT_URL", m.service_url.clone()));
        if let Some(ca) = &m.ca_file {
            env.push(("DMCONF_MQTT_CA", ca.display().to_string()));
        }
    }
    Ok(env)
}

/// Waits until a server command is ready: it printed the profile's
/// `ready` text; else, for DMF, its inbound exchange exists; else (MQTT
/// shows no sign) after a pause. Stops it if it never gets there.
async fn ready(live: &Live, profile: &Profile, process: &Process) -> Result<(), String> {
    let SutSpec::Command(spec) = &profile.sut else {
        return Ok(());
    };
    let dmf = profile.protocol == "dmf";
    let deadline = tokio::time::Instant::now() + SERVER_READY.mul_f64(profile.timeouts.scale);
    let settle = tokio::time::Instant::now() + SERVER_SETTLE.mul_f64(profile.timeouts.scale);
    loop {
        let ready = match &spec.ready {
            Some(text) => process.output().contains(text.as_str()),
            None if dmf => {
                let side = live.sides.device().await?;
                side.exchange_exists(&profile.dmf.exchange).await?
            }
            None => tokio::time::Instant::now() >= settle,
        };
        if ready {
            return Ok(());
        }
        if let Some(how) = process.exited().await {
            return Err(format!(
                "the server under test stopped before it was ready: {how}\n{}",
                process.output()
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            let out = process.stop().await;
            let what = match (&spec.ready, dmf) {
                (Some(t), _) => format!("print `{t}`"),
                (None, _) => format!("declare its exchange `{}`", profile.dmf.exchange),
            };
            return Err(format!(
                "the server under test did not {what} within {SERVER_READY:?}\n{out}"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Renders a failed verdict for the test runner.
pub fn failure_text(planned: &Planned, verdict: &Verdict) -> String {
    report::text::failure(&planned.suite, planned.case, verdict)
}

/// Sets libtest's thread count to the profile's parallelism unless the
/// user chose one: cases wait on the network, not on the CPU.
pub fn default_threads(args: &mut Arguments, parallel: usize) {
    if args.test_threads.is_none() {
        args.test_threads = Some(parallel);
    }
}

/// The whole conformance run: every suite against the profile's SUT
/// (`DMCONF_PROFILE`), or, with no profile, each suite against the
/// built-in reference of its role (device or server).
pub fn conformance_main(root: impl Into<PathBuf>) -> ExitCode {
    if let Ok(spec) = std::env::var(reaper::ENV) {
        reaper::reap(&spec);
        return ExitCode::SUCCESS;
    }
    let mut args = Arguments::from_args();
    let profiles = match std::env::var_os("DMCONF_PROFILE") {
        Some(p) => match Profile::load(std::path::Path::new(&p)) {
            Ok(p) => vec![p],
            Err(e) => {
                eprintln!("dmconf: profile: {e}");
                return ExitCode::from(EXIT_HARNESS_ERROR);
            }
        },
        None => Profile::references(),
    };
    let broker_spec = profiles[0].broker.clone();
    let harness = match Harness::load(Paths::under(root), broker_spec) {
        Ok(h) => Arc::new(h),
        Err(LoadError::Suite(text)) => {
            eprintln!("dmconf: broken suite file(s); nothing was run:\n{text}");
            return ExitCode::from(EXIT_BROKEN_SUITE);
        }
        Err(LoadError::Harness(text)) => {
            eprintln!("dmconf: {text}");
            return ExitCode::from(EXIT_HARNESS_ERROR);
        }
    };
    // With several SUTs, each runs the suites of its own role.
    let several = profiles.len() > 1;
    let mut planned: Vec<(Arc<Profile>, Planned)> = Vec::new();
    for profile in &profiles {
        let profile = Arc::new(profile.clone());
        for p in harness.plan(&profile) {
            if !several || (p.suite.role == profile.role && p.suite.protocol == profile.protocol) {
                planned.push((profile.clone(), p));
            }
        }
    }
    planned.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    let listing = args.list;
    if !listing {
        let dir = std::env::var_os("DMCONF_REPORT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| harness.paths.root.join("target").join("dmconf-reports"));
        match harness.report_to(&dir, "conformance", &profiles) {
            Ok(path) => {
                let names: Vec<&str> = profiles.iter().map(|p| p.origin.as_str()).collect();
                eprintln!(
                    "dmconf: SUT: {}; evidence: {}",
                    names.join(" + "),
                    path.display()
                )
            }
            Err(e) => eprintln!("dmconf: no evidence file: {e}"),
        }
        for (_, p) in planned.iter().filter(|(_, p)| p.ignored.is_some()) {
            eprintln!(
                "dmconf: ignored {}: {}",
                p.name,
                p.ignored.as_deref().unwrap_or_default()
            );
        }
    }
    default_threads(
        &mut args,
        profiles.iter().map(|p| p.parallel).max().unwrap_or(16),
    );
    let trials = planned
        .into_iter()
        .map(|(prof, p)| {
            let h = harness.clone();
            let ignored = p.ignored.is_some();
            let name = p.name.clone();
            Trial::test(name, move || {
                let verdict = h.run(&prof, &p).map_err(Failed::from)?;
                match verdict.failure {
                    None => Ok(()),
                    Some(_) => Err(Failed::from(failure_text(&p, &verdict))),
                }
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    let broker_failed = harness.broker_failed();
    if let Ok(h) = Arc::try_unwrap(harness) {
        h.shutdown();
    }
    if broker_failed {
        eprintln!(
            "dmconf: the broker could not be started; the failures above are the harness's, not the SUT's"
        );
        ExitCode::from(EXIT_HARNESS_ERROR)
    } else if conclusion.has_failed() {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
