//! The engine driven without a broker: a scripted SUT behind a memory
//! link answers what the harness sends, and sends of its own accord what
//! a test puts in. Each test runs a small suite's steps and judges where
//! the case ends.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::RunEnv;
use super::case::run_steps;
use super::cx::Cx;
use super::failure::StepError;
use crate::event::{RunEvent, StepRef};
use crate::message::{Arrival, Deliveries, Message};
use crate::profile::{BrokerSpec, Profile};
use crate::protocol::Link;
use crate::protocol::Sides;
use crate::protocol::link::memory::{MemoryLink, Script};
use crate::schema::SchemaStore;
use crate::suite::{Context, Protocol, Role, Step, Suite};
use crate::sut::{References, SutInstance};

fn schemas() -> SchemaStore {
    SchemaStore::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas"
    )))
    .expect("the schemas")
}

/// A suite of one case with these steps.
fn suite(protocol: &str, role: &str, steps: &str, schemas: &SchemaStore) -> Suite {
    let text = format!(
        "id: t\ntitle: t\nprotocol: {protocol}\nrole: {role}\nrequirements:\n  - {{id: X-1, level: MUST, basis: seed, source: s, section: s, text: t}}\ncases:\n  - id: c\n    title: c\n    requirements: [X-1]\n    steps:\n{steps}"
    );
    let no_fixtures = |_: &str| Err("no fixtures here".to_owned());
    let cx = Context {
        schemas,
        fixture: &no_fixtures,
    };
    crate::suite::parse(&text, "test.yaml", &cx).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn message(headers: Value, properties: Value, body: Value) -> Message {
    Message {
        channel: "x".into(),
        headers: serde_json::from_value(headers).expect("headers"),
        properties: serde_json::from_value(properties).expect("properties"),
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
        raw: false,
    }
}

/// A DMF device's status of action `id`.
fn status(id: u64, s: &str) -> Arrival {
    Arrival::Message(message(
        json!({"type": "EVENT", "topic": "UPDATE_ACTION_STATUS", "tenant": "T", "thingId": "t1"}),
        json!({"content_type": "application/json"}),
        json!({"actionId": id, "actionStatus": s}),
    ))
}

/// A DMF device's poll.
fn poll() -> Arrival {
    Arrival::Message(message(
        json!({"type": "THING_CREATED", "tenant": "T", "thingId": "t1"}),
        json!({"reply_to": "r"}),
        Value::Null,
    ))
}

/// A Device API device's request with a correlation of its own.
fn request(action: &str, correlation: &str) -> Arrival {
    Arrival::Message(message(
        json!({"msgType": "action", "action": action, "version": "2", "correlationId": correlation}),
        json!({"$.ct": "application/json", "$.ce": "utf-8", "iothub-connection-device-id": "d1"}),
        json!({"identity": "x"}),
    ))
}

/// How a case ended: `Ok`, or the step it failed at (`None`: after the
/// last step) and what it says.
type Ended = Result<(), (Option<String>, String)>;

/// Runs the case's steps against `script`, with `before` already sent by
/// the SUT, and `limit` for the whole case.
async fn run(
    protocol: Protocol,
    role: Role,
    steps: &str,
    script: Script,
    before: Vec<Arrival>,
    limit: Duration,
) -> (Ended, Vec<Message>) {
    run_on(protocol, role, steps, script, before, limit, None).await
}

/// [`run`], on a broker that shows its deliveries to the SUT as
/// `deliveries` (the same for every message).
async fn run_on(
    protocol: Protocol,
    role: Role,
    steps: &str,
    script: Script,
    before: Vec<Arrival>,
    limit: Duration,
    deliveries: Option<Deliveries>,
) -> (Ended, Vec<Message>) {
    let schemas = schemas();
    let suite = suite(protocol.name(), role.as_str(), steps, &schemas);
    let mut profile = Profile::reference(protocol, role, None, None);
    profile.timeouts.case = limit;
    let sides = Sides::new(BrokerSpec::default());
    let references = References::default();
    let env = RunEnv {
        schemas: &schemas,
        profile: &profile,
        sides: &sides,
        references: &references,
        shared_sut: None,
    };
    let (mut link, own) = MemoryLink::new(script);
    link.seen = deliveries.is_some();
    link.deliveries = deliveries;
    for a in before {
        own.send(a).expect("the link is open");
    }
    let mut sink = |_: &RunEvent| {};
    let now = Instant::now();
    let mut cx = Cx::new(
        &env,
        &suite,
        "t::c".into(),
        Link::Memory(link),
        Ok(()),
        now,
        now + limit,
        &mut sink,
    );
    for (k, v) in [("tenant", "T"), ("thingId", "t1"), ("replyTo", "r")] {
        cx.vars.set(k, json!(v));
    }
    let steps: Vec<&Step> = suite.cases[0].steps.iter().collect();
    let mut sut = SutInstance::none();
    let ended = run_steps(&mut cx, &steps, &mut sut).await.map_err(
        |(at, e): (Option<StepRef>, StepError)| {
            let why = match e {
                StepError::Failed(m) => format!("{}: {}", m.expected, m.actual),
                StepError::Harness(e) => e.to_string(),
            };
            (at.map(|s| s.name.unwrap_or(s.kind.to_owned())), why)
        },
    );
    let Link::Memory(link) = cx.link else {
        unreachable!("a memory link")
    };
    (ended, link.published)
}

/// Runs a DMF device case, with five seconds for the whole case.
async fn device(steps: &str, script: Script, before: Vec<Arrival>) -> (Ended, Vec<Message>) {
    let limit = Duration::from_secs(5);
    run(Protocol::Dmf, Role::Device, steps, script, before, limit).await
}

const DEPLOY: &str = r#"      - name: deploy
        send:
          to: r
          headers: {type: EVENT, topic: DOWNLOAD_AND_INSTALL, thingId: t1, tenant: T}
          properties: {content_type: application/json}
          body: {actionId: 7}
"#;

/// A device that answers action 7 with RUNNING, then FINISHED.
fn installs() -> Script {
    Box::new(|m: &Message| {
        if m.header("topic").as_deref() == Some("DOWNLOAD_AND_INSTALL") {
            vec![status(7, "RUNNING"), status(7, "FINISHED")]
        } else {
            Vec::new()
        }
    })
}

#[tokio::test]
async fn an_expect_takes_the_answer_to_its_stimulus_not_what_came_first() {
    let steps = format!(
        "{DEPLOY}      - name: first\n        expect:\n          message: {{headers: {{topic: UPDATE_ACTION_STATUS}}, body: {{actionStatus: {{$one_of: [RUNNING, FINISHED]}}}}}}\n          capture: {{s: body.actionStatus}}\n      - expect:\n          message: {{body: {{actionStatus: FINISHED}}}}\n"
    );
    // Before the stimulus, the device polled and reported another action.
    let before = vec![poll(), status(99, "FINISHED")];
    let (ended, _) = device(&steps, installs(), before).await;
    assert_eq!(
        ended,
        Ok(()),
        "the earlier status and the poll are the SUT's own"
    );
}

#[tokio::test]
async fn a_message_no_step_expected_still_fails_the_case() {
    let steps = format!(
        "{DEPLOY}      - expect:\n          message: {{body: {{actionStatus: RUNNING}}}}\n"
    );
    let (ended, _) = device(&steps, installs(), Vec::new()).await;
    let (at, why) = ended.expect_err("FINISHED of action 7 was not expected");
    assert_eq!(at, None);
    assert!(why.contains("no step expected"), "{why}");
}

#[tokio::test]
async fn a_flood_cannot_hold_a_step_past_the_case_limit() {
    // 50,000 polls, then nothing the step waits for.
    let before: Vec<Arrival> = (0..50_000).map(|_| poll()).collect();
    let steps = "      - expect:\n          message: {headers: {type: THING_REMOVED}}\n          within: 1m\n";
    let (ended, _) = run(
        Protocol::Dmf,
        Role::Device,
        steps,
        Box::new(|_| Vec::new()),
        before,
        Duration::from_millis(500),
    )
    .await;
    let (at, why) = ended.expect_err("the case limit");
    assert_eq!(at.as_deref(), Some("expect"));
    assert!(why.contains("within 500ms (timeouts.case"), "{why}");
    assert!(why.contains("the SUT had sent"), "{why}");
}

#[tokio::test]
async fn a_backlog_cannot_hold_a_stimulus_past_the_case_limit() {
    // More than the case has time to take in before it sends.
    let before: Vec<Arrival> = (0..200_000).map(|_| poll()).collect();
    let steps = format!("{DEPLOY}      - expect:\n          message: {{body: {{actionId: 7}}}}\n");
    let (ended, _) = run(
        Protocol::Dmf,
        Role::Device,
        &steps,
        installs(),
        before,
        Duration::from_millis(300),
    )
    .await;
    // Without the bound, the send would wait for the whole backlog to be
    // taken in, and the answer would then be in time.
    let (at, why) = ended.expect_err("the case limit");
    assert_eq!(at.as_deref(), Some("expect"));
    assert!(why.contains("timeouts.case"), "{why}");
}

#[tokio::test]
async fn after_names_the_stimulus_a_collect_answers() {
    // The statuses of `deploy` arrive before the repeated request.
    let steps = format!(
        "{DEPLOY}      - resend: deploy\n      - collect:\n          after: deploy\n          into: statuses\n          message: {{body: {{actionId: 7}}}}\n          until: {{body: {{actionId: 7, actionStatus: FINISHED}}}}\n          within: 1s\n"
    );
    let once = std::sync::atomic::AtomicBool::new(false);
    let script: Script = Box::new(move |m: &Message| {
        let first = !once.swap(true, std::sync::atomic::Ordering::SeqCst);
        if first && m.header("topic").as_deref() == Some("DOWNLOAD_AND_INSTALL") {
            vec![status(7, "RUNNING"), status(7, "FINISHED")]
        } else {
            Vec::new()
        }
    });
    let (ended, published) = device(&steps, script, Vec::new()).await;
    assert_eq!(ended, Ok(()));
    assert_eq!(published.len(), 2);
}

#[tokio::test]
async fn without_after_a_collect_judges_only_what_follows_its_stimuli() {
    let steps = format!(
        "{DEPLOY}      - wait: {{for: 50ms}}\n      - resend: deploy\n      - collect:\n          into: statuses\n          message: {{body: {{actionId: 7}}}}\n          until: {{body: {{actionId: 7, actionStatus: FINISHED}}}}\n          within: 300ms\n"
    );
    let once = std::sync::atomic::AtomicBool::new(false);
    let script: Script = Box::new(move |_: &Message| {
        if once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Vec::new()
        } else {
            vec![status(7, "RUNNING"), status(7, "FINISHED")]
        }
    });
    let (ended, _) = device(&steps, script, Vec::new()).await;
    let (at, _) = ended.expect_err("the statuses came before the resend");
    assert_eq!(at.as_deref(), Some("collect"));
}

#[tokio::test]
async fn expect_none_leaves_the_devices_own_requests_alone() {
    let steps = "      - send:\n          to: \"devices/d1/messages/devicebound/\"\n          headers: {msgType: ack, version: \"2\", action: identity.create, correlationId: c-1}\n          properties: {\"$.ct\": application/json, \"$.ce\": utf-8}\n          body: {success: true, code: ok, details: \"\"}\n      - expect_none:\n          message: {headers: {msgType: action}}\n          during: 200ms\n";
    // The device's own identity.create, with a correlation of its own.
    let own: Script = Box::new(|_| vec![request("identity.create", "own-1")]);
    let (ended, _) = run(
        Protocol::Ability,
        Role::Device,
        steps,
        own,
        Vec::new(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(ended, Ok(()));
    // A request that answers the case's own correlation is not.
    let answer: Script = Box::new(|_| vec![request("identity.create", "c-1")]);
    let (ended, _) = run(
        Protocol::Ability,
        Role::Device,
        steps,
        answer,
        Vec::new(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(ended.expect_err("caught").0.as_deref(), Some("expect_none"));
}

#[tokio::test]
async fn a_request_that_asks_for_acks_is_answered_as_the_platform_would() {
    let steps = "      - wait: {for: 100ms}\n";
    let mut asks = request("model.create", "own-2");
    if let Arrival::Message(m) = &mut asks {
        m.headers.insert("ack".into(), json!("all"));
        m.body = br#"{"model":"abb.ability.device","type":"t@1","properties":{}}"#.to_vec();
    }
    let (ended, published) = run(
        Protocol::Ability,
        Role::Device,
        steps,
        Box::new(|_| Vec::new()),
        vec![asks],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(ended, Ok(()));
    let ack = published.first().expect("an ack");
    assert_eq!(ack.header("msgType").as_deref(), Some("ack"));
    assert_eq!(ack.header("correlationId").as_deref(), Some("own-2"));
}

#[tokio::test]
async fn a_malformed_message_fails_the_first_step_that_reads() {
    let steps = format!("{DEPLOY}      - wait: {{for: 100ms}}\n");
    let bad: Script = Box::new(|_| {
        vec![Arrival::Message(message(
            json!({"type": "EVENT", "topic": "UPDATE_ACTION_STATUS", "tenant": "T"}),
            json!({}),
            json!({"actionId": 7, "actionStatus": "DONE"}),
        ))]
    });
    let (ended, _) = device(&steps, bad, Vec::new()).await;
    let (at, why) = ended.expect_err("malformed");
    assert_eq!(at.as_deref(), Some("wait"));
    assert!(why.contains("malformed"), "{why}");
}

#[tokio::test]
async fn refusals_are_judged_by_the_message_id_of_what_was_sent() {
    let steps = "      - name: reg\n        send:\n          to: dmf.exchange\n          headers: {type: THING_CREATED, tenant: T, thingId: t1}\n          properties: {message_id: m-0}\n      - expect_refused: {of: reg, within: 1s}\n";
    let refuses: Script = Box::new(|m: &Message| vec![Arrival::Refused(m.clone())]);
    let (ended, _) = run(
        Protocol::Dmf,
        Role::Server,
        steps,
        refuses,
        Vec::new(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(ended, Ok(()));
    let accepted = "      - name: reg\n        send:\n          to: dmf.exchange\n          headers: {type: THING_CREATED, tenant: T, thingId: t1}\n          properties: {message_id: m-1}\n      - expect_accepted: {of: reg, during: 200ms}\n";
    let refuses: Script = Box::new(|m: &Message| vec![Arrival::Refused(m.clone())]);
    let (ended, _) = run(
        Protocol::Dmf,
        Role::Server,
        accepted,
        refuses,
        Vec::new(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        ended.expect_err("refused").0.as_deref(),
        Some("expect_accepted")
    );
}

#[tokio::test]
async fn a_requeue_loop_or_a_message_never_taken_is_not_an_acceptance() {
    let accepted = "      - name: reg\n        send:\n          to: dmf.exchange\n          headers: {type: THING_CREATED, tenant: T, thingId: t1}\n          properties: {message_id: m-2}\n      - expect_accepted: {of: reg, during: 100ms}\n";
    let judge = |times, again| async move {
        let deliveries = Deliveries {
            times,
            again,
            first: None,
        };
        let quiet: Script = Box::new(|_| Vec::new());
        let limit = Duration::from_secs(2);
        let role = Role::Server;
        run_on(
            Protocol::Dmf,
            role,
            accepted,
            quiet,
            Vec::new(),
            limit,
            Some(deliveries),
        )
        .await
        .0
    };
    assert_eq!(judge(1, 0).await, Ok(()));
    assert_eq!(
        judge(3, 2).await,
        Ok(()),
        "a few deliveries again: a lost consumer, a retried conflict"
    );
    let (at, why) = judge(40, 39).await.expect_err("a requeue loop");
    assert_eq!(at.as_deref(), Some("expect_accepted"));
    assert!(
        why.contains("requeue loop") && why.contains("40 times"),
        "{why}"
    );
    let (_, why) = judge(0, 0).await.expect_err("never taken");
    assert!(why.contains("never took it"), "{why}");
}

#[tokio::test]
async fn a_case_keeps_a_bounded_amount_of_what_the_sut_sends() {
    // Forty attribute updates of 1 MiB each.
    let big = || {
        Arrival::Message(message(
            json!({"type": "EVENT", "topic": "UPDATE_ATTRIBUTES", "tenant": "T", "thingId": "t1"}),
            json!({"content_type": "application/json"}),
            json!({"attributes": {"blob": "x".repeat(1 << 20)}}),
        ))
    };
    let before: Vec<Arrival> = (0..40).map(|_| big()).collect();
    let steps = "      - wait: {for: 100ms}\n";
    let (ended, _) = device(steps, Box::new(|_| Vec::new()), before).await;
    let (at, why) = ended.expect_err("past the case's bytes");
    assert_eq!(at.as_deref(), Some("wait"));
    assert!(why.contains("more message(s) were dropped"), "{why}");
}

#[test]
fn evidence_keeps_the_start_of_a_long_body_with_its_size_and_hash() {
    let m = message(json!({}), json!({}), json!({"blob": "y".repeat(10_000)}));
    let v = serde_json::to_value(&m).expect("serializable");
    assert_eq!(
        v["body"].as_str().map(str::len),
        Some(crate::message::BODY_KEPT)
    );
    assert_eq!(v["body_bytes"], json!(m.body.len()));
    assert_eq!(v["body_sha256"].as_str().map(str::len), Some(64));
    assert!(m.render("").contains("sha256"));
}

/// How a DMF device case ends, when the device has sent `before` and
/// the case has `limit`.
async fn ends(steps: &str, before: Vec<Arrival>, limit: Duration) -> Ended {
    run(
        Protocol::Dmf,
        Role::Device,
        steps,
        installs(),
        before,
        limit,
    )
    .await
    .0
}

#[tokio::test]
async fn a_wait_until_ends_at_the_message_it_waits_for() {
    let steps =
        "      - wait:\n          for: 3s\n          until: {headers: {type: THING_CREATED}}\n";
    let limit = Duration::from_secs(1);
    // The device polls: the wait ends there, well within the case's 1 s.
    assert_eq!(ends(steps, vec![poll()], limit).await, Ok(()));
    // Nothing comes: the wait runs into the case's limit.
    let ended = ends(steps, Vec::new(), limit).await;
    let (_, why) = ended.expect_err("the 3 s wait outlasts the case");
    assert!(why.contains("timeouts.case"), "{why}");
}

#[tokio::test]
async fn expect_none_more_than_lets_the_first_through() {
    let steps = "      - expect_none:\n          own: true\n          more_than: 1\n          message: {headers: {type: THING_CREATED}}\n          during: 100ms\n";
    let limit = Duration::from_secs(5);
    assert_eq!(ends(steps, vec![poll()], limit).await, Ok(()));
    let ended = ends(steps, vec![poll(), poll()], limit).await;
    let (at, why) = ended.expect_err("the second one is one too many");
    assert_eq!(at.as_deref(), Some("expect_none"));
    assert!(why.contains("no more than 1"), "{why}");
}
