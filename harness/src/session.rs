//! A session of the harness: the schemas and every suite loaded and
//! checked, the brokers and server commands started on first use, the
//! references it may start, and the run's evidence file. It runs one
//! planned case at a time, on whatever thread asks, and keeps the counts
//! the run's exit status comes from.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::baseline::Baseline;
use crate::discover;
use crate::env;
use crate::error::{EXIT_FAILED, EXIT_HARNESS_ERROR, EXIT_PASSED, Error};
use crate::event::{CasePlan, Identity, Outcome, RunEvent, Sink, SutInfo, Verdict};
use crate::plan::{self, Planned};
use crate::profile::{BrokerSpec, Profile, SutSpec};
use crate::protocol::Sides;
use crate::report::json::JsonLines;
use crate::report::text::CaseText;
use crate::report::{Fanout, RunReports, json};
use crate::run::{self, RunEnv};
use crate::schema::SchemaStore;
use crate::suite::{Context, Protocol, Role, Suite};
use crate::sut::{References, Servers};

/// Where the project's data lives.
#[derive(Clone, Debug)]
pub(crate) struct Paths {
    /// The project root; file names in reports are relative to it.
    pub root: PathBuf,
    /// `suites/`, or the folder `DMCONF_SUITES` names.
    pub suites: PathBuf,
    /// `schemas/`.
    pub schemas: PathBuf,
    /// `fixtures/`.
    pub fixtures: PathBuf,
}

impl Paths {
    fn under(root: PathBuf) -> Self {
        let suites = std::env::var_os(env::SUITES)
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

/// One case's verdict, and its text when it did not pass.
#[derive(Clone, Debug)]
pub struct Judged {
    /// The verdict.
    pub verdict: Verdict,
    /// What the test runner shows for a case that failed or could not be
    /// judged; empty when it passed.
    pub text: String,
}

#[derive(Default)]
struct Counts {
    passed: usize,
    failed: usize,
    errors: usize,
}

/// Loaded suites and schemas, and the brokers, started on first use.
pub struct Harness {
    paths: Paths,
    schemas: SchemaStore,
    suites: Vec<Arc<Suite>>,
    references: References,
    runtime: tokio::runtime::Runtime,
    sides: Sides,
    servers: Servers,
    evidence: Option<JsonLines>,
    counts: Mutex<Counts>,
    reports: Arc<Mutex<RunReports>>,
    /// Where the reports go; unset under nextest, where each process runs
    /// one case and nextest reports the run.
    bundle: Arc<std::sync::OnceLock<PathBuf>>,
    began: Instant,
}

impl Harness {
    /// Loads and checks the schemas and every suite under `root`; starts
    /// nothing.
    pub fn load(
        root: impl Into<PathBuf>,
        broker: BrokerSpec,
        references: References,
    ) -> Result<Self, Error> {
        let paths = Paths::under(root.into());
        let schemas = SchemaStore::load(&paths.schemas).map_err(Error::Schemas)?;
        let fixtures = paths.fixtures.clone();
        let fixture = move |name: &str| {
            let path = fixtures.join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let cx = Context {
            schemas: &schemas,
            fixture: &fixture,
        };
        let root = paths.root.clone();
        let suites = discover::load(&paths.suites, &paths.root, &cx)
            .map_err(|e| Error::Suite(e.render(|f| std::fs::read_to_string(root.join(f)).ok())))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Setup(format!("no async runtime: {e}")))?;
        let reports = Arc::default();
        let bundle = Arc::default();
        runtime.spawn(interrupted(Arc::clone(&reports), Arc::clone(&bundle)));
        Ok(Harness {
            paths,
            schemas,
            suites,
            references,
            runtime,
            sides: Sides::new(broker),
            servers: Servers::default(),
            evidence: None,
            counts: Mutex::default(),
            reports,
            bundle,
            began: Instant::now(),
        })
    }

    /// Every suite.
    pub fn suites(&self) -> &[Arc<Suite>] {
        &self.suites
    }

    /// Completes a profile: a reference's capabilities and hooks; `Err`
    /// when it names a reference, fault or variant that does not exist.
    pub fn resolve(&self, mut profile: Profile) -> Result<Profile, Error> {
        self.references.resolve(&mut profile)?;
        Ok(profile)
    }

    /// The profile of a built-in reference, with a fault or a variant.
    pub fn reference(
        &self,
        protocol: Protocol,
        role: Role,
        fault: Option<&str>,
        variant: Option<&str>,
    ) -> Result<Profile, Error> {
        self.resolve(Profile::reference(protocol, role, fault, variant))
    }

    /// Every built-in reference, correct.
    pub fn references(&self) -> Vec<Profile> {
        self.references
            .all()
            .filter_map(|r| self.reference(r.protocol(), r.role(), None, None).ok())
            .collect()
    }

    /// The faults and variants of the reference of a protocol and role.
    pub fn catalogue(
        &self,
        protocol: Protocol,
        role: Role,
    ) -> (Vec<&'static str>, Vec<&'static str>) {
        self.references
            .find(protocol, role)
            .map(|r| (r.faults().to_vec(), r.variants().to_vec()))
            .unwrap_or_default()
    }

    /// Lists the cases for `profile`, each ignored with a reason when the
    /// profile does not let it run.
    pub fn plan(&self, profile: &Profile) -> Vec<Planned> {
        plan::plan(&self.suites, profile)
    }

    /// Opens the run's bundle and records the run's start, with the cases
    /// listed; the bundle's reports say `running` until the run ends.
    /// Returns the evidence file, and warnings (a `version` hook that
    /// failed).
    pub(crate) fn start_evidence(
        &mut self,
        profiles: &[Profile],
        planned: &[&Planned],
        baseline: &Baseline,
    ) -> Result<(PathBuf, Vec<String>), Error> {
        let mut warnings = Vec::new();
        let mut suts = Vec::new();
        for p in profiles {
            let mut info = sut_info(p);
            match self.runtime.block_on(sut_version(p)) {
                Ok(v) => info.version = v,
                Err(e) => warnings.push(e),
            }
            suts.push(info);
        }
        let plan: Vec<CasePlan> = planned
            .iter()
            .map(|p| CasePlan {
                case: p.name.clone(),
                requirements: crate::run::requirements(p),
                ignored: p.ignored.clone(),
                known_deviation: baseline.get(&p.name).map(|d| d.said()),
            })
            .collect();
        let started = RunEvent::RunStarted {
            tool: concat!("dmconf ", env!("CARGO_PKG_VERSION")).to_owned(),
            suts,
            suites: self.suites.iter().map(|s| s.origin.clone()).collect(),
            cases: plan.len(),
            plan,
            identity: identity(&self.paths.root),
        };
        // The run's own reports (the score, known deviations) know the plan
        // even when no evidence file can be written.
        lock(&self.reports).event(&started);
        let dir = std::env::var_os(env::REPORT_DIR)
            .map(PathBuf::from)
            .unwrap_or_else(|| self.paths.root.join("target").join("dmconf-reports"));
        let file = json::JsonLines::create(&dir)
            .map_err(|e| Error::Setup(format!("no evidence file in {}: {e}", dir.display())))?;
        let path = file.path().to_owned();
        file.event(&started);
        if std::env::var_os("NEXTEST_RUN_ID").is_none() {
            // Known to an interrupt before the first reports exist.
            let _ = self.bundle.set(file.bundle().to_owned());
            lock(&self.reports).write(file.bundle());
        }
        self.evidence = Some(file);
        Ok((path, warnings))
    }

    /// Runs one case against the SUT of `profile`; blocks.
    pub fn run(&self, profile: &Profile, planned: &Planned) -> Judged {
        let mut text = CaseText::default();
        let verdict = self.runtime.block_on(async {
            let shared_sut = match (&profile.sut, profile.role) {
                (SutSpec::Command(_), Role::Server) => {
                    Some(self.servers.get(&self.sides, profile).await)
                }
                _ => None,
            };
            let mut sink = Fanout {
                json: self.evidence.as_ref(),
                text: &mut text,
                run: &self.reports,
            };
            let shared_sut = match shared_sut.transpose() {
                Ok(s) => s,
                Err(unready) => {
                    return crate::run::unready(planned, profile, unready, &mut sink);
                }
            };
            let env = RunEnv {
                schemas: &self.schemas,
                profile,
                sides: &self.sides,
                references: &self.references,
                shared_sut,
            };
            run::run_case(&env, planned, &mut sink).await
        });
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match &verdict.outcome {
            Outcome::Passed => counts.passed += 1,
            Outcome::Failed(_) => counts.failed += 1,
            Outcome::Error { .. } => counts.errors += 1,
        }
        Judged {
            text: text.render().unwrap_or_default(),
            verdict,
        }
    }

    /// Both brokers, started if needed: how long each took to take a
    /// login, and whether it was a warm one an earlier run started.
    pub fn brokers(&self) -> Result<Vec<crate::event::BrokerStart>, Error> {
        self.runtime.block_on(async {
            self.sides.rabbitmq().await?;
            self.sides.mosquitto().await?;
            Ok(self.sides.started())
        })
    }

    /// Records the run's end in the evidence file, and the exit status
    /// its cases give: a failure on the SUT's side first, then a case the
    /// harness could not judge (or a broker that did not start).
    /// Failed cases the baseline names (known deviations) do not fail
    /// the run.
    pub(crate) fn finish(&self, ignored: usize) -> u8 {
        let known = self.known_deviations();
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let finished = RunEvent::RunFinished {
            passed: counts.passed,
            failed: counts.failed,
            errors: counts.errors,
            ignored,
            duration: self.began.elapsed(),
            brokers: self.sides.started(),
            ended_unix: crate::event::unix_now(),
        };
        if let Some(e) = &self.evidence {
            e.event(&finished);
            lock(&self.reports).event(&finished);
        }
        if counts.failed > known {
            EXIT_FAILED
        } else if counts.errors > 0 || self.sides.broker_failed() {
            EXIT_HARNESS_ERROR
        } else {
            EXIT_PASSED
        }
    }

    /// How many failed cases the baseline names.
    pub(crate) fn known_deviations(&self) -> usize {
        lock(&self.reports).score.known_deviations()
    }

    /// Writes the run's reports to its bundle beside the evidence:
    /// `summary.json`, `junit.xml` and `report.html` (not under nextest,
    /// where a process runs one case of many and nextest writes JUnit
    /// itself); returns the score line and the files written.
    pub(crate) fn write_reports(&self) -> Option<(String, Vec<PathBuf>)> {
        let reports = lock(&self.reports);
        let line = reports.score.score()?.line();
        let written = self
            .bundle
            .get()
            .map(|dir| reports.write(dir))
            .unwrap_or_default();
        Some((line, written))
    }

    /// The cases the SUT failed, each with what went wrong in one line.
    pub(crate) fn failed_cases(&self) -> Vec<(String, String)> {
        let reports = lock(&self.reports);
        reports.score.failed().to_vec()
    }

    /// Where the evidence file is, if one is written.
    pub(crate) fn evidence_path(&self) -> Option<&std::path::Path> {
        self.evidence.as_ref().map(JsonLines::path)
    }

    /// Stops the server commands and removes the brokers this process
    /// started.
    pub fn shutdown(self) {
        let Harness {
            runtime,
            sides,
            servers,
            ..
        } = self;
        runtime.block_on(async {
            servers.stop().await;
            sides.stop().await;
        });
    }

    /// Parses one suite text as the run would load it, for tests of the
    /// parser's diagnostics; `Err` has every problem, located.
    pub fn check_suite(&self, text: &str, origin: &str) -> Result<(), crate::suite::SuiteErrors> {
        let fixtures = self.paths.fixtures.clone();
        let fixture = move |name: &str| {
            let path = fixtures.join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let cx = Context {
            schemas: &self.schemas,
            fixture: &fixture,
        };
        crate::suite::parse(text, origin, &cx).map(|_| ())
    }

    /// The compiled schemas, for measurements.
    pub(crate) fn schemas(&self) -> &SchemaStore {
        &self.schemas
    }
}

/// Ends the run on SIGINT or SIGTERM, at once, with 130 or 143, once the
/// bundle's reports say that the run was interrupted: the guard of this
/// process (see `reaper`) then removes the brokers, SUT processes and
/// secrets the run started. An interrupt is never counted as a SUT's
/// failure.
async fn interrupted(reports: Arc<Mutex<RunReports>>, bundle: Arc<std::sync::OnceLock<PathBuf>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let code = tokio::select! {
        _ = int.recv() => crate::error::EXIT_INTERRUPTED,
        _ = term.recv() => crate::error::EXIT_TERMINATED,
    };
    eprintln!("dmconf: interrupted; what the run started is being removed");
    if let Some(dir) = bundle.get() {
        let mut reports = lock(&reports);
        reports.score.end(crate::report::score::Status::Interrupted);
        if !reports.write(dir).is_empty() {
            eprintln!("dmconf: report (incomplete): {}", dir.display());
        }
    }
    std::process::exit(code.into());
}

/// The value behind `m`, also when a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The SUT's version: a reference's own, or what the profile's `version`
/// hook prints (its first line, secrets hidden); `Err` when the hook
/// fails.
async fn sut_version(p: &Profile) -> Result<Option<String>, String> {
    if let SutSpec::Reference { .. } = p.sut {
        return Ok(Some(
            concat!("dmconf reference ", env!("CARGO_PKG_VERSION")).to_owned(),
        ));
    }
    let Some(hook) = p.hooks.get("version").filter(|h| !h.command.is_empty()) else {
        return Ok(None);
    };
    let log = Mutex::default();
    let said = crate::sut::hook::run_hook("version", hook, &Default::default(), &p.hook_dir, &log)
        .await
        .map_err(|e| format!("{}: {e}", p.origin))?;
    let text = match said {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    let first: String = text
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    Ok(Some(crate::secrets::Secrets::of(p, &[]).hide(&first)))
}

/// What the evidence says of a SUT: its profile, secrets hidden.
fn sut_info(p: &Profile) -> SutInfo {
    let text = std::fs::read(&p.origin).ok();
    SutInfo {
        profile: p.origin.clone(),
        protocol: p.protocol.to_string(),
        role: p.role.as_str().to_owned(),
        kind: match p.sut {
            SutSpec::Reference { .. } => "reference",
            SutSpec::Command(_) => "command",
            SutSpec::Running => "running",
        }
        .to_owned(),
        capabilities: p.capabilities.clone(),
        profile_sha256: text.as_ref().map(|b| crate::message::sha256(b)),
        profile_redacted: text
            .map(|b| crate::secrets::Secrets::of(p, &[]).hide(&String::from_utf8_lossy(&b))),
        version: None,
    }
}

/// The commit of the checkout at `root` and the digest of every file under
/// its `suites/` and `schemas/`.
fn identity(root: &std::path::Path) -> Identity {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let mut files = std::collections::BTreeMap::new();
    let mut todo = vec![root.join("suites"), root.join("schemas")];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                files.insert(
                    rel.to_string_lossy().into_owned(),
                    crate::message::sha256(&bytes),
                );
            }
        }
    }
    Identity {
        commit,
        started_unix: crate::event::unix_now(),
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_in_the_evidence_hides_its_secrets() {
        let dir = std::env::temp_dir().join(format!("dmconf-sutinfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        let text = r#"
[sut]
protocol = "dmf"
role = "server"
command = ["srv"]
env = { API_TOKEN = "tok-91ab", MODE = "plain" }
[sut.mgmt]
url = "http://localhost:8080"
user = "admin"
password = "pw-33cd"
[broker]
amqp_url = "amqp://lab:url-77ef@localhost:5672/%2f"
"#;
        std::fs::write(&path, text).unwrap();
        let profile = Profile::load(&path).unwrap();
        let info = sut_info(&profile);
        let _ = std::fs::remove_dir_all(&dir);
        let shown = info.profile_redacted.unwrap();
        for secret in ["tok-91ab", "pw-33cd", "url-77ef"] {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
        assert!(shown.contains("MODE = \"plain\""), "{shown}");
        assert_eq!(
            info.profile_sha256.unwrap(),
            crate::message::sha256(text.as_bytes())
        );
    }
}
