//! `cargo bench`: prints what a run costs, every ratio measured in one
//! run.
//!
//! - how many messages a second the engine takes in (decoded, validated,
//!   correlated) and matches for a waiting step, with an empty inbox and
//!   with 10,000 messages pending;
//! - the time to a verdict for a DMF device that sends 50,000 allowed
//!   messages before it registers, in a case limited to 60 s;
//! - each broker's readiness (start request to first login), cold, and
//!   warm: a second run on the brokers a first one kept
//!   (`DMCONF_REUSE`);
//! - for each reference, the wall time of all its cases run at once
//!   against the critical path: the longest case, and the longest chain
//!   of waits the suites mandate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dmconf_harness::suite::{Protocol, Role};
use dmconf_harness::{BrokerSpec, Harness, Profile};

fn main() {
    if dmconf_harness::reaped() {
        return;
    }
    // `cargo bench` passes `--bench`; `cargo bench -- throughput` measures
    // only what needs no broker.
    let only_throughput = std::env::args().any(|a| a == "throughput");
    let root = dmconf_harness::root().expect("a dmconf checkout");
    let harness = Arc::new(
        Harness::load(root.clone(), BrokerSpec::default(), dmconf_reference::all())
            .expect("suites load"),
    );
    throughput(&harness);
    if only_throughput {
        return;
    }
    flood(&harness);

    for b in harness.brokers().expect("brokers start") {
        println!(
            "{} ready (start request to first login), cold: {:.2} s",
            b.broker,
            b.ready_after.as_secs_f64()
        );
    }
    warm(&root);

    for profile in harness.references() {
        at_once(&harness, Arc::new(profile));
    }
    println!(
        "peak RSS of this process over the whole bench: {:.0} MiB",
        status_mib("VmHWM:")
    );
    if let Ok(h) = Arc::try_unwrap(harness) {
        h.shutdown();
    }
}

/// Broker readiness on warm brokers: a first run keeps its brokers (and
/// boots them, unless an earlier run kept some), a second one finds them.
/// Brokers this bench started are removed afterwards.
fn warm(root: &std::path::Path) {
    let spec = BrokerSpec {
        reuse: true,
        ..BrokerSpec::default()
    };
    let run = || {
        let h = Harness::load(root.to_owned(), spec.clone(), dmconf_reference::all())
            .expect("suites load");
        let started = h.brokers().expect("warm brokers start");
        (h, started)
    };
    let (first, booted) = run();
    let (second, found) = run();
    for (cold, warm) in booted.iter().zip(&found) {
        println!(
            "{} ready, warm (a second run on the brokers a first one kept): {:.2} s{}",
            warm.broker,
            warm.ready_after.as_secs_f64(),
            if warm.reused { "" } else { "  (NOT REUSED)" }
        );
        if !cold.reused {
            println!(
                "  (the first run booted it: {:.2} s)",
                cold.ready_after.as_secs_f64()
            );
        }
    }
    second.shutdown();
    first.shutdown();
    if booted.iter().all(|b| !b.reused) {
        dmconf_harness::brokers(["stop".to_owned()].into_iter());
    }
}

/// Matching throughput, empty inbox against 10,000 pending messages: the
/// best of nine runs of each (the run least disturbed by the machine's
/// other work), taken in turns, in alternating order, after a warm-up.
fn throughput(harness: &Harness) {
    const ARRIVALS: usize = 50_000;
    const RUNS: usize = 9;
    harness.matching_rate(0, ARRIVALS);
    let (mut empty, mut pending, mut matched) = (0f64, 0f64, 0);
    for run in 0..RUNS {
        for with in [run % 2 == 0, run % 2 == 1] {
            if with {
                pending = pending.max(harness.matching_rate(10_000, ARRIVALS).0);
            } else {
                let (rate, m) = harness.matching_rate(0, ARRIVALS);
                empty = empty.max(rate);
                matched = m;
            }
        }
    }
    println!(
        "take in + validate + match, {ARRIVALS} status updates ({matched} match), best of {RUNS}:"
    );
    println!("  inbox empty:                 {empty:>10.0} messages/s");
    println!("  10,000 messages pending:     {pending:>10.0} messages/s");
    println!("  pending / empty:             {:>10.2}", pending / empty);
}

/// A memory figure of this process from `/proc/self/status`, in MiB:
/// `VmRSS` (resident now) or `VmHWM` (the most it has been).
fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// Runs one case, sampling this process's memory meanwhile: the verdict,
/// the wall time, the memory before and at its peak.
fn measured(harness: &Harness, profile: &Profile, case: &str) -> (bool, usize, Duration, f64, f64) {
    let planned = harness
        .plan(profile)
        .into_iter()
        .find(|p| p.name == case)
        .expect("the case");
    let before = rss_mib();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (judged, took, peak) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = before;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mib());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        let began = Instant::now();
        let judged = harness.run(profile, &planned);
        let took = began.elapsed();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (judged, took, sampler.join().expect("the sampler"))
    });
    (
        judged.verdict.passed(),
        judged.verdict.arrived,
        took,
        before,
        peak,
    )
}

/// The time to a verdict, and the memory, for a device that floods
/// before it registers and for one that sends a compression bomb.
fn flood(harness: &Harness) {
    let limit = Duration::from_secs(60);
    let mut profile = harness
        .reference(Protocol::Dmf, Role::Device, None, Some("floods"))
        .expect("the floods variant");
    profile.timeouts.case = limit;
    // Windows longer than the case, so that the case limit binds.
    profile.timeouts.scale = 10.0;
    let case = "dmf::device::registration::thing-created";
    let (passed, arrived, took, before, peak) = measured(harness, &profile, case);
    let bound = limit.mul_f64(1.05);
    println!(
        "a device that sends {} attribute updates, then registers ({case}):",
        dmconf_reference::dmf_device::FLOOD,
    );
    println!("  messages taken in:           {arrived:>10}");
    println!(
        "  verdict:                     {:>10}",
        if passed { "passed" } else { "not passed" }
    );
    println!(
        "  time to verdict:             {:>10.2} s  (case limit {} s; bound {:.0} s: {})",
        took.as_secs_f64(),
        limit.as_secs(),
        bound.as_secs_f64(),
        if took <= bound { "within" } else { "OVER" }
    );
    println!("  RSS before, at peak:         {before:>10.0} MiB, {peak:.0} MiB");
    let bomb = harness
        .reference(
            Protocol::Ability,
            Role::Device,
            Some("sends-gzip-bomb"),
            None,
        )
        .expect("the bomb fault");
    let case = "ability::device::compression::gzip-declared-is-gzip";
    let (passed, _, took, before, peak) = measured(harness, &bomb, case);
    println!("a device that sends a gzip bomb of 64 MiB ({case}):");
    println!(
        "  verdict:                     {:>10}",
        if passed { "passed" } else { "failed" }
    );
    println!(
        "  time to verdict:             {:>10.2} s",
        took.as_secs_f64()
    );
    println!("  RSS before, at peak:         {before:>10.0} MiB, {peak:.0} MiB");
}

/// Runs every case of the profile's role at once and prints the wall
/// time against the critical path.
fn at_once(harness: &Arc<Harness>, profile: Arc<Profile>) {
    let cases: Vec<_> = harness
        .plan(&profile)
        .into_iter()
        .filter(|p| {
            p.ignored.is_none()
                && p.suite.role == profile.role
                && p.suite.protocol == profile.protocol
        })
        .collect();
    let began = Instant::now();
    let handles: Vec<_> = cases
        .into_iter()
        .map(|p| {
            let (h, prof) = (harness.clone(), profile.clone());
            std::thread::spawn(move || (p.name.clone(), h.run(&prof, &p)))
        })
        .collect();
    let mut longest = (String::new(), 0.0f64);
    let mut mandated = 0.0f64;
    let mut failed = 0;
    let n = handles.len();
    for h in handles {
        let (name, judged) = h.join().expect("case thread");
        let v = judged.verdict;
        failed += usize::from(!v.passed());
        mandated = mandated.max(v.mandated_wait.as_secs_f64());
        if v.duration.as_secs_f64() > longest.1 {
            longest = (name, v.duration.as_secs_f64());
        }
    }
    let wall = began.elapsed().as_secs_f64();
    println!(
        "[{} {}] {}",
        profile.protocol,
        profile.role.as_str(),
        profile.origin
    );
    // The physical limit first: no run can be shorter than the longest
    // chain of waits its suites mandate.
    println!(
        "  wall / mandated wait chain:   {:.2}  (the physical limit is 1.00)",
        wall / mandated.max(f64::EPSILON)
    );
    println!("  cases run at once:            {n} ({failed} not passed)");
    println!("  wall time, broker excluded:   {wall:.2} s");
    println!("  longest mandated wait chain:  {mandated:.2} s");
    println!(
        "  longest case:                 {:.2} s  ({})",
        longest.1, longest.0
    );
    println!("  wall / longest case:          {:.2}", wall / longest.1);
}
