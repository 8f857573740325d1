//! The bridge to the test runner: one libtest trial per planned case, the
//! run's evidence file, and the exit status. The only module that imports
//! libtest-mimic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use libtest_mimic::{Arguments, Failed, Trial};

use crate::baseline::{self, Baseline};
use crate::env;
use crate::error::Error;
use crate::event::Outcome;
use crate::plan::Planned;
use crate::profile::Profile;
use crate::reaper;
use crate::session::Harness;
use crate::sut::References;

/// The conformance run: every suite against the SUT of the profile that
/// `DMCONF_PROFILE` names, or, with none, each suite against the built-in
/// reference of its protocol and role, from the checkout [`root`] finds.
pub fn main(references: References) -> ExitCode {
    if reaped() {
        return ExitCode::SUCCESS;
    }
    match root().and_then(|root| conformance(root, references)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("dmconf: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The cases of a run as the profile (or the references) and the
/// selection make them, each with the SUT it is judged against.
type Listed = Vec<(Arc<Profile>, Planned)>;

/// Loads the suites and the profile, and lists the cases.
fn prepare(
    root: PathBuf,
    references: References,
) -> Result<(Harness, Vec<Profile>, Listed), Error> {
    let named = std::env::var_os(env::PROFILE)
        .map(|p| Profile::load(std::path::Path::new(&p)))
        .transpose()?;
    let broker = named.as_ref().map(|p| p.broker.clone()).unwrap_or_default();
    let harness = Harness::load(root, broker, references)?;
    let mut profiles = match named {
        Some(p) => vec![harness.resolve(p)?],
        None => harness.references(),
    };
    for p in &mut profiles {
        p.select = std::mem::take(&mut p.select)
            .with_env()
            .map_err(Error::Setup)?;
    }
    // With several SUTs, each runs the suites of its own protocol and role.
    let several = profiles.len() > 1;
    let mut planned = Vec::new();
    for profile in &profiles {
        let profile = Arc::new(profile.clone());
        for p in harness.plan(&profile) {
            if !several || (p.suite.role == profile.role && p.suite.protocol == profile.protocol) {
                planned.push((profile.clone(), p));
            }
        }
    }
    planned.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    Ok((harness, profiles, planned))
}

fn conformance(root: PathBuf, references: References) -> Result<u8, Error> {
    let mut args = Arguments::from_args();
    let (mut harness, profiles, planned) = prepare(root, references)?;
    let ignored = planned.iter().filter(|(_, p)| p.ignored.is_some()).count();
    let baseline = match std::env::var_os(baseline::ENV)
        .map(PathBuf::from)
        .or_else(|| profiles.iter().find_map(|p| p.baseline.clone()))
    {
        Some(path) => Baseline::load(&path).map_err(Error::Setup)?,
        None => Baseline::default(),
    };
    let names: Vec<&str> = planned.iter().map(|(_, p)| p.name.as_str()).collect();
    for case in baseline.unknown(&names) {
        eprintln!("dmconf: warning: the baseline names `{case}`, which no suite has");
    }
    if !args.list {
        let names: Vec<&str> = profiles.iter().map(|p| p.origin.as_str()).collect();
        let listed: Vec<&Planned> = planned.iter().map(|(_, p)| p).collect();
        match harness.start_evidence(&profiles, &listed, &baseline) {
            Ok((path, warnings)) => {
                eprintln!(
                    "dmconf: SUT: {}; evidence: {}",
                    names.join(" + "),
                    path.display()
                );
                for w in warnings {
                    eprintln!("dmconf: warning: the version hook failed: {w}");
                }
            }
            Err(e) => eprintln!("dmconf: {e}"),
        }
        // A capability no suite of the SUT's protocol and role asks for is
        // most likely misspelt or of the other role: its cases would be
        // ignored without a word.
        for profile in &profiles {
            for c in &profile.capabilities {
                let asked = harness.suites().iter().any(|s| {
                    s.protocol == profile.protocol
                        && s.role == profile.role
                        && (s.capabilities.contains(c)
                            || s.cases.iter().any(|k| k.capabilities.contains(c)))
                });
                if !asked {
                    eprintln!(
                        "dmconf: warning: {} declares `{c}`, which no {} {} suite asks for",
                        profile.origin,
                        profile.protocol,
                        profile.role.as_str()
                    );
                }
            }
        }
        // Why cases are ignored, each reason once with how many it
        // leaves out (the list names every case with `--ignored --list`).
        let mut why: Vec<(&str, usize)> = Vec::new();
        for reason in planned.iter().filter_map(|(_, p)| p.ignored.as_deref()) {
            match why.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => why.push((reason, 1)),
            }
        }
        eprintln!(
            "dmconf: {} case(s) apply, {ignored} ignored",
            planned.len() - ignored
        );
        for (reason, n) in why {
            eprintln!("dmconf:   {n} ignored: {reason}");
        }
    }
    default_threads(
        &mut args,
        profiles.iter().map(|p| p.parallel).max().unwrap_or(16),
    );
    let harness = Arc::new(harness);
    let progress = Arc::new(Progress::default());
    let trials: Vec<Trial> = planned
        .into_iter()
        .map(|(profile, p)| {
            let h = harness.clone();
            let ignored = p.ignored.is_some();
            let deviation = baseline.get(&p.name).cloned();
            let progress = progress.clone();
            Trial::test(p.name.clone(), move || {
                let judged = h.run(&profile, &p);
                progress.finished(&judged.verdict.outcome);
                match (&judged.verdict.outcome, deviation) {
                    (Outcome::Passed, None) => Ok(()),
                    (Outcome::Passed, Some(d)) => Err(Failed::from(format!(
                        "passes now: take it out of the baseline (it says: {})",
                        d.said()
                    ))),
                    (Outcome::Failed(_), Some(_)) => Ok(()),
                    _ => Err(Failed::from(judged.text)),
                }
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    if !args.list && std::env::var_os("NEXTEST_RUN_ID").is_none() {
        let runs = |t: &Trial| {
            !args.is_filtered_out(t)
                && (args.include_ignored || args.ignored == t.has_ignored_flag())
        };
        let total = trials.iter().filter(|t| runs(t)).count();
        if total < trials.len() - ignored {
            eprintln!("dmconf: {total} of them chosen by the test filter");
        }
        progress.total.store(total, Ordering::Relaxed);
    }
    let conclusion = libtest_mimic::run(&args, trials);
    let known = harness.known_deviations();
    if known > 0 {
        eprintln!(
            "dmconf: {known} known deviation(s) failed as the baseline says; they do not fail the run"
        );
    }
    let mut code = harness.finish(ignored);
    if let Some(path) = std::env::var_os(baseline::WRITE_ENV) {
        let failed = harness.failed_cases();
        match std::fs::write(&path, Baseline::write(&failed)) {
            Ok(()) => eprintln!(
                "dmconf: baseline of {} failed case(s) written to {}",
                failed.len(),
                PathBuf::from(&path).display()
            ),
            Err(e) => eprintln!("dmconf: cannot write the baseline: {e}"),
        }
    }
    if conclusion.has_failed() && code == crate::error::EXIT_PASSED {
        // A trial that panicked: a bug of the harness's.
        code = crate::error::EXIT_FAILED;
    }
    if code == crate::error::EXIT_HARNESS_ERROR {
        eprintln!(
            "dmconf: some cases could not be judged (see `error:` above); that is the harness's or the broker's trouble, not the SUT's"
        );
    }
    if let Some((line, reports)) = harness.write_reports() {
        eprintln!("dmconf: {line}");
        for path in reports {
            eprintln!("dmconf: report: {}", path.display());
        }
    }
    if let Some(path) = harness.evidence_path() {
        eprintln!("dmconf: evidence: {}", path.display());
    }
    if let Ok(h) = Arc::try_unwrap(harness) {
        h.shutdown();
    }
    Ok(code)
}

/// `dmconf list`: every case with its requirements and whether it
/// applies to the SUT of the profile (or to the built-in references), as
/// a table or, with `json`, as JSON. Starts nothing.
pub fn list(references: References, json: bool) -> ExitCode {
    let listed = root().and_then(|root| prepare(root, references));
    let (_harness, _, planned) = match listed {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dmconf: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let mut out = String::new();
    if json {
        let cases: Vec<serde_json::Value> = planned
            .iter()
            .map(|(_, p)| {
                serde_json::json!({
                    "case": p.name,
                    "applies": p.ignored.is_none(),
                    "ignored": p.ignored,
                    "requirements": crate::run::requirements(p),
                })
            })
            .collect();
        out = serde_json::to_string_pretty(&cases).unwrap_or_default();
        out.push('\n');
    } else {
        for (_, p) in &planned {
            let reqs: Vec<String> = crate::run::requirements(p)
                .iter()
                .map(|r| format!("{} [{}]", r.id, r.grade()))
                .collect();
            let applies = match &p.ignored {
                None => "runs".to_owned(),
                Some(why) => format!("ignored: {why}"),
            };
            out.push_str(&format!("{}\t{}\t{applies}\n", p.name, reqs.join(" ")));
        }
    }
    // A reader that stops early (`| head`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    ExitCode::SUCCESS
}

/// The checkout a run reads its suites, schemas and fixtures from, and
/// writes its evidence under: `DMCONF_ROOT`, else the working folder
/// (where `cargo test` runs a test binary: the package's root), else the
/// folder of the executable or one above it (an installed `dmconf` beside
/// its suites, or `target/release/dmconf` in a checkout). Never a path
/// from the time the binary was built, so that a copied checkout or an
/// installed binary reads its own tree.
pub fn root() -> Result<PathBuf, Error> {
    let root = match std::env::var_os(env::ROOT) {
        Some(r) => PathBuf::from(r),
        None => {
            let here = std::env::current_dir()
                .map_err(|e| Error::Setup(format!("no working folder: {e}")))?;
            let beside_exe = std::env::current_exe().ok().and_then(|exe| {
                exe.ancestors()
                    .skip(1)
                    .take(4)
                    .find(|d| d.join("schemas").is_dir() && d.join("suites").is_dir())
                    .map(PathBuf::from)
            });
            match beside_exe {
                Some(d) if !here.join("schemas").is_dir() => d,
                _ => here,
            }
        }
    };
    if root.join("schemas").is_dir() {
        Ok(root)
    } else {
        Err(Error::Setup(format!(
            "{} holds no schemas/: run from a dmconf checkout, or name one in {}",
            root.display(),
            env::ROOT
        )))
    }
}

/// Does a reaper's work when this test binary was started again as one
/// (under nextest, to remove what the run shared once nextest exits);
/// `true` when it was, and the process should end. Every test target
/// that runs cases calls it first.
pub fn reaped() -> bool {
    reaper::can_reap();
    match std::env::var(env::REAP) {
        Ok(spec) => {
            reaper::reap(&spec);
            true
        }
        Err(_) => false,
    }
}

/// The running count, beside libtest's line per case: on standard error,
/// at every tenth of the run and at its end, how many cases have ended
/// and how many of them did not pass (not under nextest, which counts).
#[derive(Default)]
struct Progress {
    total: AtomicUsize,
    ended: AtomicUsize,
    failed: AtomicUsize,
    errors: AtomicUsize,
}

impl Progress {
    fn finished(&self, outcome: &Outcome) {
        let total = self.total.load(Ordering::Relaxed);
        match outcome {
            Outcome::Passed => {}
            Outcome::Failed(_) => _ = self.failed.fetch_add(1, Ordering::Relaxed),
            Outcome::Error { .. } => _ = self.errors.fetch_add(1, Ordering::Relaxed),
        }
        let n = self.ended.fetch_add(1, Ordering::Relaxed) + 1;
        let step = total.div_ceil(10).max(1);
        if total > 0 && (n.is_multiple_of(step) || n == total) {
            eprintln!(
                "dmconf: {n}/{total} cases ended, {} failed, {} not judged",
                self.failed.load(Ordering::Relaxed),
                self.errors.load(Ordering::Relaxed)
            );
        }
    }
}

/// Sets libtest's thread count to the profile's parallelism unless the
/// user chose one: cases wait on the network, not on the CPU.
pub fn default_threads(args: &mut Arguments, parallel: usize) {
    if args.test_threads.is_none() {
        args.test_threads = Some(parallel);
    }
}
