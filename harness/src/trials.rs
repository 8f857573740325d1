//! The bridge to the test runner: loads suites and the profile, lists one
//! libtest trial per case, runs each on a shared broker, and maps the
//! outcome to an exit status. The only module that imports libtest-mimic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::broker::{self, Broker};
use crate::event::{RunEvent, Verdict};
use crate::plan::{self, Planned};
use crate::profile::Profile;
use crate::protocol::dmf::DmfServerSide;
use crate::report;
use crate::run::{self, RunEnv};
use crate::schema::SchemaStore;
use crate::suite::{Context, Suite};
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
    broker: Broker,
    server: DmfServerSide,
}

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
        profile: &Profile,
    ) -> Result<PathBuf, String> {
        let header = json!({
            "tool": concat!("dmconf ", env!("CARGO_PKG_VERSION")),
            "profile": profile.origin,
            "sut": format!("{:?}", profile.sut),
            "capabilities": profile.capabilities,
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
                let broker = Broker::start(&self.broker_spec).await?;
                let server = DmfServerSide::start(&broker.amqp_url).await?;
                Ok(Live { broker, server })
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The broker's start time and URL, starting it if needed.
    pub fn broker_info(&self) -> Result<(std::time::Duration, String), String> {
        self.runtime
            .block_on(self.live())
            .map(|l| (l.broker.start_time, l.broker.amqp_url.clone()))
    }

    /// Whether starting the broker failed.
    pub fn broker_failed(&self) -> bool {
        matches!(self.live.get(), Some(Err(_)))
    }

    /// Runs one case against the SUT of `profile`; blocks.
    pub fn run(&self, profile: &Profile, planned: &Planned) -> Result<Verdict, String> {
        self.emit(RunEvent::CaseStarted {
            name: planned.name.clone(),
        });
        let verdict = self.runtime.block_on(async {
            let live = self.live().await?;
            let env = RunEnv {
                schemas: &self.schemas,
                fixtures: &self.paths.fixtures,
                profile,
                amqp_url: &live.broker.amqp_url,
                server: &live.server,
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

    /// Removes the broker this process started.
    pub fn shutdown(self) {
        let Harness { runtime, live, .. } = self;
        if let Some(Ok(live)) = live.into_inner() {
            runtime.block_on(live.broker.stop());
        }
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
/// (`DMCONF_PROFILE`, or the built-in reference device).
pub fn conformance_main(root: impl Into<PathBuf>) -> ExitCode {
    if let Ok(spec) = std::env::var(broker::REAPER_ENV) {
        broker::reap(&spec);
        return ExitCode::SUCCESS;
    }
    let mut args = Arguments::from_args();
    let profile = match std::env::var_os("DMCONF_PROFILE") {
        Some(p) => match Profile::load(std::path::Path::new(&p)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("dmconf: profile: {e}");
                return ExitCode::from(EXIT_HARNESS_ERROR);
            }
        },
        None => Profile::reference_device(None),
    };
    let harness = match Harness::load(Paths::under(root), profile.broker.clone()) {
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
    let planned = harness.plan(&profile);
    let listing = args.list;
    if !listing {
        let dir = std::env::var_os("DMCONF_REPORT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| harness.paths.root.join("target").join("dmconf-reports"));
        match harness.report_to(&dir, "conformance", &profile) {
            Ok(path) => eprintln!(
                "dmconf: SUT: {}; evidence: {}",
                profile.origin,
                path.display()
            ),
            Err(e) => eprintln!("dmconf: no evidence file: {e}"),
        }
        for p in planned.iter().filter(|p| p.ignored.is_some()) {
            eprintln!(
                "dmconf: ignored {}: {}",
                p.name,
                p.ignored.as_deref().unwrap_or_default()
            );
        }
    }
    default_threads(&mut args, profile.parallel);
    let profile = Arc::new(profile);
    let trials = planned
        .into_iter()
        .map(|p| {
            let (h, prof) = (harness.clone(), profile.clone());
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
