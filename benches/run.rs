//! `cargo bench`: prints what a run costs, every ratio measured in one
//! run.
//!
//! - how many messages a second the engine takes in (decoded, validated,
//!   correlated) and matches for a waiting step, with an empty inbox and
//!   with 10,000 messages pending;
//! - the time to a verdict for a DMF device that sends 50,000 allowed
//!   messages before it registers, in a case limited to 60 s;
//! - each broker's start time (container start to first login);
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
        Harness::load(root, BrokerSpec::default(), dmconf_reference::all()).expect("suites load"),
    );
    throughput(&harness);
    if only_throughput {
        return;
    }
    flood(&harness);

    for (broker, start, url) in harness.broker_info().expect("brokers start") {
        println!(
            "{broker} start (container to first login): {:.2} s  [{url}]",
            start.as_secs_f64()
        );
    }

    for profile in harness.references() {
        at_once(&harness, Arc::new(profile));
    }
    if let Ok(h) = Arc::try_unwrap(harness) {
        h.shutdown();
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

/// The time to a verdict for a device that floods before it registers.
fn flood(harness: &Harness) {
    let limit = Duration::from_secs(60);
    let mut profile = harness
        .reference(Protocol::Dmf, Role::Device, None, Some("floods"))
        .expect("the floods variant");
    profile.timeouts.case = limit;
    // Windows longer than the case, so that the case limit binds.
    profile.timeouts.scale = 10.0;
    let case = harness
        .plan(&profile)
        .into_iter()
        .find(|p| p.name == "dmf::device::registration::thing-created")
        .expect("the registration case");
    let began = Instant::now();
    let judged = harness.run(&profile, &case);
    let took = began.elapsed();
    let bound = limit.mul_f64(1.05);
    println!(
        "a device that sends {} attribute updates, then registers ({}):",
        dmconf_reference::dmf_device::FLOOD,
        case.name
    );
    println!(
        "  messages taken in:           {:>10}",
        judged.verdict.arrived
    );
    println!(
        "  verdict:                     {:>10}",
        if judged.verdict.passed() {
            "passed"
        } else {
            "not passed"
        }
    );
    println!(
        "  time to verdict:             {:>10.2} s  (case limit {} s; bound {:.0} s: {})",
        took.as_secs_f64(),
        limit.as_secs(),
        bound.as_secs_f64(),
        if took <= bound { "within" } else { "OVER" }
    );
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
    println!("  cases run at once:            {n} ({failed} not passed)");
    println!("  wall time, broker excluded:   {wall:.2} s");
    println!("  longest mandated wait chain:  {mandated:.2} s");
    println!(
        "  wall / mandated wait chain:   {:.2}",
        wall / mandated.max(f64::EPSILON)
    );
    println!(
        "  longest case:                 {:.2} s  ({})",
        longest.1, longest.0
    );
    println!("  wall / longest case:          {:.2}", wall / longest.1);
}
