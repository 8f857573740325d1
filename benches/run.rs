//! `cargo bench`: prints what a run costs.
//!
//! - the broker's start time (container start to first AMQP login);
//! - for each role, the wall time of every conformance case run at once
//!   against the reference (device cases against the reference device;
//!   server cases, one virtual device each, against the reference server),
//!   against its critical path: the longest case, and the longest chain of
//!   waits the suites mandate (quiet windows, pauses);
//! - how many messages per second matching and schema validation handle.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dmconf_harness::matching;
use dmconf_harness::message::Message;
use dmconf_harness::profile::{BrokerSpec, Profile};
use dmconf_harness::protocol::dmf;
use dmconf_harness::suite::Pattern;
use dmconf_harness::trials::{Harness, Paths};
use dmconf_harness::vars::Vars;

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let harness =
        Arc::new(Harness::load(Paths::under(root), BrokerSpec::default()).expect("suites load"));
    throughput(&harness);

    for (broker, start, url) in harness.broker_info().expect("brokers start") {
        println!(
            "{broker} start (container to first login): {:.2} s  [{url}]",
            start.as_secs_f64()
        );
    }

    for profile in Profile::references() {
        at_once(&harness, Arc::new(profile));
    }
    if let Ok(h) = Arc::try_unwrap(harness) {
        h.shutdown();
    }
}

/// Runs every case of the profile's role at once and prints the wall
/// time against the critical path.
fn at_once(harness: &Arc<Harness>, profile: Arc<Profile>) {
    let role = profile.role;
    let cases: Vec<_> = harness
        .plan(&profile)
        .into_iter()
        .filter(|p| {
            p.ignored.is_none() && p.suite.role == role && p.suite.protocol == profile.protocol
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
        let (name, verdict) = h.join().expect("case thread");
        let v = verdict.expect("case runs");
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
        role.as_str(),
        profile.origin
    );
    println!("  cases run at once:            {n} ({failed} failed)");
    println!("  wall time, broker excluded:   {wall:.2} s");
    println!(
        "  longest case:                 {:.2} s  ({})",
        longest.1, longest.0
    );
    println!("  longest mandated wait chain:  {mandated:.2} s");
    println!(
        "  wall / longest case:          {:.2} (target <= 1.25)",
        wall / longest.1
    );
}

/// Classifies, validates and matches a stream of status updates.
fn throughput(harness: &Harness) {
    let pattern: Pattern = serde_json::from_value(serde_json::json!({
        "headers": {"type": "EVENT", "topic": "UPDATE_ACTION_STATUS", "tenant": "${tenant}"},
        "body": {"actionId": "${actionId}", "actionStatus": {"$one_of": ["FINISHED", "ERROR"]}}
    }))
    .expect("pattern");
    let mut vars = Vars::default();
    vars.set("tenant", serde_json::json!("DEFAULT"));
    vars.set("actionId", serde_json::json!(137));
    let statuses = ["RUNNING", "DOWNLOAD", "DOWNLOADED", "FINISHED"];
    let messages: Vec<Message> = (0..20_000)
        .map(|i| {
            let mut m = Message::default();
            for (k, v) in [
                ("type", "EVENT"),
                ("topic", "UPDATE_ACTION_STATUS"),
                ("tenant", "DEFAULT"),
                ("thingId", "dev-1"),
            ] {
                m.headers.insert(k.into(), v.into());
            }
            m.properties
                .insert("content_type".into(), "application/json".into());
            m.body = format!(
                r#"{{"actionId":137,"actionStatus":"{}","message":["step {i}"]}}"#,
                statuses[i % statuses.len()]
            )
            .into_bytes();
            m
        })
        .collect();
    let began = Instant::now();
    let mut matched = 0usize;
    for m in &messages {
        let schema = dmf::device_message_schema(m).expect("known kind");
        harness.schemas.validate(schema, &m.view()).expect("valid");
        matched += usize::from(matching::matches(&pattern, m, &vars, &harness.schemas));
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "matching + schema validation: {:.0} messages/s ({} messages, {matched} matched, {secs:.2} s)",
        messages.len() as f64 / secs,
        messages.len()
    );
}
