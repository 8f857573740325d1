//! Runs one case: arms the link, starts the SUT, runs the steps in order,
//! validates every message the SUT sends, and returns the verdict. Every
//! wait has a deadline.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use std::sync::Arc;

use super::check;
use super::link::{CaseLink, Sides};
use crate::event::{Failure, StepRef, Verdict};
use crate::matching;
use crate::message::{Arrival, Direction, Entry, Message, Transcript};
use crate::profile::{Profile, SutSpec};
use crate::protocol::{ability, dmf};
use crate::schema::SchemaStore;
use crate::suite::{Action, Case, Generator, Pattern, Role, Step, Suite, VarSpec};
use crate::sut::{CaseIds, MqttIds, Process, SutInstance};
use crate::vars::Vars;

/// How IoT Hub counts a message's size, as a failure says it.
const IOTHUB_COUNT: &str =
    "as IoT Hub counts: body, system property values, application property names and values";

/// What every case of a run shares.
pub struct RunEnv<'a> {
    /// Compiled schemas.
    pub schemas: &'a SchemaStore,
    /// The `fixtures/` folder.
    pub fixtures: &'a Path,
    /// The profile.
    pub profile: &'a Profile,
    /// The sides of the broker the harness plays.
    pub sides: &'a Sides,
    /// A server command that runs for the whole run, if there is one.
    pub shared_sut: Option<Arc<Process>>,
}

/// A message from the SUT, or a refusal of one the harness sent,
/// waiting to be taken by a step.
struct Pending {
    seq: u64,
    msg: Message,
    refused: bool,
}

/// The state of one running case.
pub struct CaseRun<'a> {
    env: &'a RunEnv<'a>,
    suite: &'a Suite,
    link: CaseLink,
    refusals: Result<(), String>,
    started: Instant,
    vars: Vars,
    pending: Vec<Pending>,
    next_seq: u64,
    step_seq: HashMap<String, u64>,
    sent: HashMap<String, Message>,
    collected: HashMap<String, Vec<Message>>,
    transcript: Transcript,
    invalid: Vec<(Message, String)>,
    mandated: Duration,
    last_taken: Option<u64>,
    /// Sizes the case set, with the profile's declared limits, so that a
    /// failure at a boundary shows both numbers.
    notes: Vec<String>,
}

/// How often a `query` step asks again.
const QUERY_INTERVAL: Duration = Duration::from_millis(200);

/// Why a step failed: what was expected, what happened.
struct StepError {
    expected: String,
    actual: String,
}

fn err(expected: impl Into<String>, actual: impl Into<String>) -> StepError {
    StepError {
        expected: expected.into(),
        actual: actual.into(),
    }
}

/// Runs `case` of `suite` and returns its verdict.
pub async fn run_case(env: &RunEnv<'_>, suite: &Suite, case: &Case) -> Verdict {
    let short = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let started = Instant::now();
    let unknown_ids = CaseIds {
        amqp_url: String::new(),
        tenant: String::new(),
        thing_id: String::new(),
        dmf_exchange: String::new(),
        mqtt: None,
    };
    let ids = case_ids(env, suite, short).await;
    let shown = ids.as_ref().unwrap_or(&unknown_ids);
    let mut verdict = Verdict {
        failure: None,
        tenant: shown.tenant.clone(),
        thing_id: shown.thing_id.clone(),
        transcript: Transcript::default(),
        sut_output: String::new(),
        duration: Duration::ZERO,
        mandated_wait: Duration::ZERO,
    };
    let fail = |expected: &str, actual: String| Failure {
        step: None,
        expected: expected.to_owned(),
        actual,
    };

    let ids = match ids {
        Ok(ids) => ids,
        Err(e) => {
            verdict.failure = Some(fail("the harness can start the broker", e));
            return verdict;
        }
    };
    // Arm first: from here on, everything the SUT sends this case is kept
    // for it, so nothing can be missed.
    let link = match open_link(env, suite, &ids).await {
        Ok(l) => l,
        Err(e) => {
            verdict.failure = Some(fail("the harness can reach the broker", e));
            return verdict;
        }
    };
    let reply_to = match &link {
        CaseLink::ToServer(l) => Some(l.reply_to.clone()),
        _ => None,
    };
    let mut sut = match SutInstance::start(env.profile, &ids, env.shared_sut.clone()).await {
        Ok(s) => s,
        Err(e) => {
            link.close().await;
            verdict.failure = Some(fail("the SUT starts", e));
            return verdict;
        }
    };
    let refusals = match (suite.role, &env.profile.dmf.dead_letter_exchange) {
        _ if suite.protocol != "dmf" => {
            Err("only a DMF server refuses by dead-lettering; a Device API platform answers with a negative ack".to_owned())
        }
        (Role::Device, _) => Err("the SUT is a device; refusals are a server's".to_owned()),
        (Role::Server, None) => Err(
            "the profile declares that this server's refusals cannot be observed (`[dmf] dead_letter_exchange = \"\"`)"
                .to_owned(),
        ),
        (Role::Server, Some(dlx)) => match env.sides.device().await {
            Ok(side) => side.watch_refusals(dlx).await,
            Err(e) => Err(e),
        },
    };
    let mut run = CaseRun {
        env,
        suite,
        link,
        refusals,
        started,
        vars: Vars::default(),
        pending: Vec::new(),
        next_seq: 0,
        step_seq: HashMap::new(),
        sent: HashMap::new(),
        collected: HashMap::new(),
        transcript: Transcript::default(),
        invalid: Vec::new(),
        mandated: Duration::ZERO,
        last_taken: None,
        notes: Vec::new(),
    };
    run.vars.set("tenant", Value::String(ids.tenant.clone()));
    run.vars.set("thingId", Value::String(ids.thing_id.clone()));
    run.vars
        .set("dmfExchange", Value::String(ids.dmf_exchange.clone()));
    if let Some(r) = reply_to {
        run.vars.set("replyTo", Value::String(r));
    }
    if suite.protocol == "ability" {
        let limits = env.profile.limits;
        run.vars
            .set("deviceId", Value::String(ids.thing_id.clone()));
        run.vars
            .set("d2c", Value::String(ability::events_topic(&ids.thing_id)));
        run.vars.set(
            "c2d",
            Value::String(ability::devicebound_topic(&ids.thing_id)),
        );
        for (name, n) in [
            ("headerLimit", limits.headers),
            ("d2cLimit", limits.d2c),
            ("c2dLimit", limits.c2d),
        ] {
            run.vars.set(name, Value::from(n));
            run.vars.set(&format!("{name}Below"), Value::from(n - 1));
            run.vars.set(&format!("{name}Above"), Value::from(n + 1));
        }
    }
    for (name, spec) in suite.vars.iter().chain(case.vars.iter()) {
        run.vars.set(name, generate(spec));
    }

    let limit = env.profile.timeouts.case;
    let outcome = tokio::time::timeout(limit, run.steps(case, &mut sut)).await;
    let mut failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(_) => Some(fail(
            &format!("the case finishes within {limit:?} (timeouts.case of the profile)"),
            "it did not; the SUT or the broker stopped answering".to_owned(),
        )),
    };
    if let Some(f) = failure.as_mut() {
        if let Some(how) = sut.exited().await {
            f.actual.push_str(&format!("\n\nNote: {how}."));
        }
        if !run.notes.is_empty() {
            f.actual.push_str("\n\nSizes this case set:\n");
            for n in &run.notes {
                f.actual.push_str(&format!("  - {n}\n"));
            }
        }
        let strays = run.link.unattributed();
        if !strays.is_empty() {
            f.actual.push_str(&format!(
                "\n\nMessages on {} that named neither this case's tenant nor its thing id while it ran:\n",
                dmf::DMF_EXCHANGE
            ));
            for m in strays.iter().take(5) {
                f.actual.push_str(&m.render("    "));
            }
        }
    }
    let report = sut.stop().await;
    verdict.failure = failure;
    verdict.sut_output = report.output;
    verdict.mandated_wait = run.mandated;
    verdict.transcript = std::mem::take(&mut run.transcript);
    verdict.duration = started.elapsed();
    run.link.close().await;
    verdict
}

/// The tenant, thing (device) id and broker of one case. A device under
/// test gets a tenant of its own per case; a server serves the profile's
/// tenant (hawkBit's `DEFAULT` if none is named), except the reference
/// DMF server, which runs per case on a tenant and exchange of its own.
async fn case_ids(env: &RunEnv<'_>, suite: &Suite, short: String) -> Result<CaseIds, String> {
    let p = env.profile;
    // hawkBit keeps tenants in upper case and sends them so.
    let own_tenant = || format!("DMCONF_{}", short.to_uppercase());
    let (tenant, dmf_exchange) = match (suite.role, &p.sut) {
        (Role::Device, _) => (own_tenant(), dmf::DMF_EXCHANGE.to_owned()),
        (Role::Server, SutSpec::ReferenceServer { .. }) => (
            p.tenant
                .clone()
                .unwrap_or_else(|| format!("DMCONF_{}", short.to_uppercase())),
            format!("dmconf.dmf.exchange.{short}"),
        ),
        (Role::Server, SutSpec::ReferenceAbilityCloud { .. }) => (
            p.tenant.clone().unwrap_or_else(own_tenant),
            p.dmf.exchange.clone(),
        ),
        (Role::Server, _) => (
            p.tenant.clone().unwrap_or_else(|| "DEFAULT".to_owned()),
            p.dmf.exchange.clone(),
        ),
    };
    let (amqp_url, mqtt) = match suite.protocol.as_str() {
        "ability" => {
            let m = env.sides.mosquitto().await?;
            let ids = MqttIds {
                service_url: m.service_url.clone(),
                device_url: m.device_url.clone(),
                service: m.service()?,
                devices: m.devices()?,
                ca_file: m.ca_file.clone(),
            };
            (String::new(), Some(ids))
        }
        _ => (env.sides.rabbitmq().await?.amqp_url.clone(), None),
    };
    Ok(CaseIds {
        amqp_url,
        tenant,
        thing_id: format!("{}{short}", p.id_prefix),
        dmf_exchange,
        mqtt,
    })
}

async fn open_link(env: &RunEnv<'_>, suite: &Suite, ids: &CaseIds) -> Result<CaseLink, String> {
    let limits = env.profile.limits;
    Ok(match (suite.protocol.as_str(), suite.role) {
        ("ability", Role::Device) => CaseLink::AbilityToDevice(
            env.sides
                .ability_platform()
                .await?
                .open_case(&ids.thing_id, limits.d2c)
                .await?,
        ),
        ("ability", Role::Server) => CaseLink::AbilityToPlatform(
            env.sides
                .ability_device()
                .await?
                .open_case(&ids.thing_id, limits.c2d)
                .await?,
        ),
        (_, Role::Device) => {
            let side = env.sides.server().await?;
            CaseLink::ToDevice(side.open_case(&ids.tenant, &ids.thing_id).await?)
        }
        (_, Role::Server) => CaseLink::ToServer(Box::new(
            env.sides.device().await?.open_case(&ids.thing_id).await?,
        )),
    })
}

fn generate(spec: &VarSpec) -> Value {
    match spec {
        VarSpec::Literal(v) => v.clone(),
        VarSpec::Generated { generate, length } => match generate {
            // Below 2^53, so that every JSON parser reads it exactly.
            Generator::Int => {
                Value::from(1 + (uuid::Uuid::new_v4().as_u128() % 9_000_000_000_000) as u64)
            }
            Generator::Uuid => Value::String(uuid::Uuid::new_v4().to_string()),
            Generator::Text => {
                let n = length.unwrap_or(16);
                let mut text = String::with_capacity(n + 32);
                while text.len() < n {
                    text.push_str(&uuid::Uuid::new_v4().simple().to_string());
                }
                text.truncate(n);
                Value::String(text)
            }
        },
    }
}

fn kind(action: &Action) -> &'static str {
    match action {
        Action::Send(_) => "send",
        Action::Resend(_) => "resend",
        Action::Expect(_) => "expect",
        Action::ExpectNone(_) => "expect_none",
        Action::Collect(_) => "collect",
        Action::Check(_) => "check",
        Action::Trigger(_) => "trigger",
        Action::Wait(_) => "wait",
        Action::Query(_) => "query",
        Action::ExpectRefused(_) => "expect_refused",
        Action::ExpectAccepted(_) => "expect_accepted",
    }
}

impl<'a> CaseRun<'a> {
    /// The case's link to the broker.
    pub fn link(&mut self) -> &mut CaseLink {
        &mut self.link
    }

    /// Messages a `collect` step stored under `name`.
    pub fn collected(&self, name: &str) -> Option<&[Message]> {
        self.collected.get(name).map(Vec::as_slice)
    }

    async fn steps(&mut self, case: &Case, sut: &mut SutInstance) -> Result<(), Failure> {
        let all: Vec<&Step> = self.suite.setup.iter().chain(case.steps.iter()).collect();
        for (i, step) in all.iter().enumerate() {
            let at = StepRef {
                index: i + 1,
                kind: kind(&step.action),
                name: step.name.clone(),
                location: step.location.clone(),
            };
            let wrap = |e: StepError| Failure {
                step: Some(at.clone()),
                expected: e.expected,
                actual: e.actual,
            };
            if let Some(cond) = &step.when
                && !matching::when(cond, &self.vars)
            {
                continue;
            }
            if let Some(name) = &step.name {
                self.step_seq.insert(name.clone(), self.next_seq);
            }
            self.step(step, sut).await.map_err(wrap)?;
            if let (Some(name), Some(seq)) = (&step.name, self.last_taken.take()) {
                self.step_seq.insert(name.clone(), seq);
            }
            // Malformed messages are reported by the first step that reads
            // messages, so that the step named in a verdict does not depend
            // on how fast the SUT answered a `send`.
            if matches!(
                step.action,
                Action::Expect(_)
                    | Action::ExpectNone(_)
                    | Action::Collect(_)
                    | Action::Wait(_)
                    | Action::ExpectRefused(_)
                    | Action::ExpectAccepted(_)
            ) {
                self.drain();
                self.check_invalid().map_err(wrap)?;
            }
        }
        self.drain();
        self.check_invalid().map_err(|e| Failure {
            step: None,
            expected: e.expected,
            actual: e.actual,
        })?;
        self.leftovers().map_err(|e| Failure {
            step: None,
            expected: e.expected,
            actual: e.actual,
        })
    }

    async fn step(&mut self, step: &Step, sut: &mut SutInstance) -> Result<(), StepError> {
        let scale = self.env.profile.timeouts.scale;
        let scaled = |d: Duration| d.mul_f64(scale);
        let default_within = self.env.profile.timeouts.expect;
        match &step.action {
            Action::Send(s) => {
                let msg = self
                    .build(s)
                    .map_err(|e| err("a message the harness can build", e))?;
                let sent = self.publish(&msg).await?;
                if let Some(n) = &step.name {
                    self.sent.insert(n.clone(), sent);
                }
                Ok(())
            }
            Action::Resend(name) => {
                let mut msg = self.sent.get(name).cloned().ok_or_else(|| {
                    err(
                        format!("a message sent by step `{name}`"),
                        "that step did not run",
                    )
                })?;
                // The same message under a message id of its own, so that
                // a refusal of the copy is told from one of the original.
                if msg
                    .property("message_id")
                    .is_some_and(|id| id.starts_with("dmconf-"))
                {
                    msg.properties.remove("message_id");
                }
                let sent = self.publish(&msg).await?;
                if let Some(n) = &step.name {
                    self.sent.insert(n.clone(), sent);
                }
                Ok(())
            }
            Action::Expect(e) => {
                let within = scaled(e.within.map(|d| d.0).unwrap_or(default_within));
                let after = self.after_seq(&e.after);
                let msg = self.take(&e.message, after, within).await?;
                for (var, path) in &e.capture {
                    let v = matching::lookup(&msg, path).ok_or_else(|| {
                        err(
                            format!("the matched message has `{path}` (to capture into `{var}`)"),
                            format!("it does not:\n{}", msg.render("    ")),
                        )
                    })?;
                    self.vars.set(var, v);
                }
                Ok(())
            }
            Action::ExpectNone(e) => {
                let during = scaled(e.during.0);
                self.mandated += during;
                let after = self.after_seq(&e.after);
                self.none(&e.message, after, during).await
            }
            Action::Collect(c) => {
                let within = scaled(c.within.map(|d| d.0).unwrap_or(default_within));
                let after = self.after_seq(&c.after);
                let got = self.collect(&c.message, &c.until, after, within).await?;
                self.collected.insert(c.into.clone(), got);
                Ok(())
            }
            Action::Check(c) => {
                let args = self
                    .vars
                    .expand(&Value::Object(c.args.clone().into_iter().collect()))
                    .map_err(|e| err("check arguments whose variables are set", e))?;
                let args = args.as_object().cloned().unwrap_or_default();
                check::run(&c.name, &args, self)
                    .await
                    .map_err(|e| err(format!("check `{}` passes", c.name), e))
            }
            Action::Trigger(t) => {
                let answer = self.call(&t.hook, &t.args, sut).await?;
                for (var, path) in &t.capture {
                    let v = matching::lookup_value(&answer, path).ok_or_else(|| {
                        err(
                            format!(
                                "the answer of `{}` has `{path}` (to capture into `{var}`)",
                                t.hook
                            ),
                            format!("it is: {answer}"),
                        )
                    })?;
                    self.vars.set(var, v);
                }
                Ok(())
            }
            Action::Query(q) => {
                let within = scaled(q.within.map(|d| d.0).unwrap_or(default_within));
                let deadline = Instant::now() + within;
                let expected = self
                    .vars
                    .expand(&q.expect)
                    .unwrap_or_else(|_| q.expect.clone());
                loop {
                    let answer = self.call(&q.hook, &q.args, sut).await?;
                    let why = match matching::check_value(&q.expect, &answer, &self.vars) {
                        Ok(()) => return Ok(()),
                        Err(why) => why,
                    };
                    if Instant::now() >= deadline {
                        return Err(err(
                            format!("within {within:?}, `{}` answers with {expected}", q.hook),
                            format!("its last answer was {answer}:\n  ✗ {}", why.join("\n  ✗ ")),
                        ));
                    }
                    tokio::time::sleep(QUERY_INTERVAL.min(deadline - Instant::now())).await;
                }
            }
            Action::ExpectRefused(r) => {
                let within = scaled(r.within.map(|d| d.0).unwrap_or(default_within));
                let id = self.refusable(&r.of)?;
                let deadline = Instant::now() + within;
                loop {
                    self.drain();
                    if let Some(i) = self.find_refusal(&id) {
                        let x = self.pending.remove(i);
                        self.last_taken = Some(x.seq);
                        return Ok(());
                    }
                    if !self.recv_until(deadline).await && Instant::now() >= deadline {
                        self.drain();
                        if let Some(i) = self.find_refusal(&id) {
                            self.pending.remove(i);
                            return Ok(());
                        }
                        return Err(err(
                            format!(
                                "within {within:?}, the SUT refuses the message of step `{}` (a DMF server dead-letters it)",
                                r.of
                            ),
                            "it was not refused".to_owned(),
                        ));
                    }
                }
            }
            Action::ExpectAccepted(a) => {
                let during = scaled(a.during.0);
                self.mandated += during;
                let id = self.refusable(&a.of)?;
                let deadline = Instant::now() + during;
                loop {
                    self.drain();
                    if let Some(i) = self.find_refusal(&id) {
                        return Err(err(
                            format!(
                                "for {during:?}, the SUT does not refuse the message of step `{}`",
                                a.of
                            ),
                            format!(
                                "it was refused (dead-lettered):\n{}",
                                self.pending[i].msg.render("    ")
                            ),
                        ));
                    }
                    if !self.recv_until(deadline).await && Instant::now() >= deadline {
                        return Ok(());
                    }
                }
            }
            Action::Wait(w) => {
                let d = scaled(w.duration.0);
                self.mandated += d;
                let deadline = Instant::now() + d;
                while self.recv_until(deadline).await {}
                Ok(())
            }
        }
    }

    /// Runs a hook with the step's arguments expanded.
    async fn call(
        &mut self,
        hook: &str,
        args: &std::collections::BTreeMap<String, Value>,
        sut: &mut SutInstance,
    ) -> Result<Value, StepError> {
        let mut expanded = serde_json::Map::new();
        for (k, v) in args {
            let v = self
                .vars
                .expand(v)
                .map_err(|e| err("hook arguments whose variables are set", e))?;
            expanded.insert(k.clone(), v);
        }
        sut.call(hook, &expanded, &self.vars)
            .await
            .map_err(|e| err(format!("the SUT performs `{hook}`"), e))
    }

    /// The message id of the message step `of` sent, if refusals can be
    /// observed.
    fn refusable(&self, of: &str) -> Result<String, StepError> {
        if let Err(why) = &self.refusals {
            return Err(err(
                "refusals by the SUT can be observed",
                format!("they cannot: {why}; this case cannot judge what it asserts"),
            ));
        }
        self.sent
            .get(of)
            .and_then(|m| m.property("message_id"))
            .ok_or_else(|| {
                err(
                    format!("a message sent by step `{of}`"),
                    "that step did not run",
                )
            })
    }

    fn find_refusal(&self, message_id: &str) -> Option<usize> {
        self.pending
            .iter()
            .position(|x| x.refused && x.msg.property("message_id").as_deref() == Some(message_id))
    }

    fn after_seq(&self, after: &Option<String>) -> u64 {
        after
            .as_ref()
            .and_then(|n| self.step_seq.get(n).copied())
            .unwrap_or(0)
    }

    fn build(&mut self, s: &crate::suite::Send) -> Result<Message, String> {
        let v = &self.vars;
        let mut msg = Message {
            channel: v.expand_str(&s.to)?,
            ..Default::default()
        };
        for (k, val) in &s.headers {
            msg.headers.insert(k.clone(), v.expand(val)?);
        }
        for (k, val) in &s.properties {
            msg.properties.insert(k.clone(), v.expand(val)?);
        }
        msg.body = if let Some(b) = &s.body {
            serde_json::to_vec(&v.expand(b)?).map_err(|e| e.to_string())?
        } else if let Some(t) = &s.body_text {
            v.expand_str(t)?.into_bytes()
        } else if let Some(f) = &s.body_fixture {
            let path = self.env.fixtures.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("fixture {}: {e}", path.display()))?;
            v.expand_str(&text)?.into_bytes()
        } else {
            Vec::new()
        };
        msg.raw = s.raw;
        if let Some(f) = &s.fill {
            let (what, n) = match (&f.headers, &f.message) {
                (Some(n), None) => ("headers", n),
                (None, Some(n)) => ("message", n),
                _ => return Err("`fill` takes one of `headers` and `message`".to_owned()),
            };
            let n = v.expand(n)?;
            let bytes = n
                .as_u64()
                .or_else(|| n.as_str().and_then(|t| t.parse().ok()))
                .ok_or_else(|| format!("`fill: {what}` needs a number of bytes, not {n}"))?;
            if self.suite.protocol != "ability" {
                return Err("`fill` is for the Device API".to_owned());
            }
            ability::fill(&mut msg, what, bytes as usize)?;
            let limits = self.env.profile.limits;
            let (declared, key, counted) = match what {
                "headers" => (
                    limits.headers,
                    "header_bytes",
                    "application property names and values, in UTF-8 bytes after decoding",
                ),
                _ if msg.channel.contains("/devicebound/") => {
                    (limits.c2d, "c2d_bytes", IOTHUB_COUNT)
                }
                _ => (limits.d2c, "d2c_bytes", IOTHUB_COUNT),
            };
            let relation = match bytes.cmp(&(declared as u64)) {
                std::cmp::Ordering::Less => "under",
                std::cmp::Ordering::Equal => "at",
                std::cmp::Ordering::Greater => "over",
            };
            self.notes.push(format!(
                "a message to {} with {what} filled to {bytes} bytes ({counted}): {relation} the limit the profile declares, {declared} bytes ([ability] {key})",
                msg.channel
            ));
        }
        Ok(msg)
    }

    async fn publish(&mut self, msg: &Message) -> Result<Message, StepError> {
        let sent = self.link.publish(msg).await.map_err(|e| {
            err(
                format!(
                    "the broker accepts a message for exchange `{}`",
                    msg.channel
                ),
                e,
            )
        })?;
        self.record(Direction::ToSut, sent.clone());
        Ok(sent)
    }

    fn record(&mut self, direction: Direction, message: Message) {
        self.transcript.0.push(Entry {
            at: self.started.elapsed(),
            direction,
            message,
        });
    }

    /// Takes one message from the SUT into the case: records it, checks it
    /// against the schema of its kind, and queues it for the steps.
    fn ingest(&mut self, arrival: Arrival) {
        let msg = match arrival {
            Arrival::Message(m) => m,
            Arrival::Malformed(m, why) => {
                self.record(Direction::FromSut, m.clone());
                self.invalid.push((m.clone(), why));
                self.next_seq += 1;
                self.pending.push(Pending {
                    seq: self.next_seq,
                    msg: m,
                    refused: false,
                });
                return;
            }
            Arrival::Refused(m) => {
                self.record(Direction::Refused, m.clone());
                self.next_seq += 1;
                self.pending.push(Pending {
                    seq: self.next_seq,
                    msg: m,
                    refused: true,
                });
                return;
            }
        };
        self.record(Direction::FromSut, msg.clone());
        let (schema, who) = match (self.suite.protocol.as_str(), self.suite.role) {
            ("ability", Role::Device) => (ability::request_schema(&msg), "device"),
            ("ability", Role::Server) => (ability::c2d_schema(&msg), "platform"),
            (_, Role::Device) => (
                dmf::device_message_schema(&msg).map(|s| Some(s.to_owned())),
                "device",
            ),
            (_, Role::Server) => (
                dmf::server_message_schema(&msg).map(|s| Some(s.to_owned())),
                "server",
            ),
        };
        let verdict = match schema {
            Ok(None) => Ok(()),
            Ok(Some(schema)) => self
                .env
                .schemas
                .validate(&schema, &msg.view())
                .map_err(|v| {
                    let list: Vec<String> = v.iter().map(|v| format!("  - {v}")).collect();
                    format!(
                        "it violates schemas/{schema}.schema.json:\n{}",
                        list.join("\n")
                    )
                }),
            Err(e) => Err(format!("it is not a message a {who} may send: {e}")),
        };
        if let Err(why) = verdict {
            self.invalid.push((msg.clone(), why));
        }
        self.next_seq += 1;
        self.pending.push(Pending {
            seq: self.next_seq,
            msg,
            refused: false,
        });
    }

    fn drain(&mut self) {
        while let Some(m) = self.link.try_recv() {
            self.ingest(m);
        }
    }

    /// Waits for the next message until `deadline`; `false` on timeout.
    async fn recv_until(&mut self, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.link.recv()).await {
            Ok(Some(m)) => {
                self.ingest(m);
                true
            }
            Ok(None) => {
                tokio::time::sleep_until(deadline).await;
                false
            }
            Err(_) => false,
        }
    }

    fn check_invalid(&self) -> Result<(), StepError> {
        if let Some((msg, why)) = self.invalid.first() {
            return Err(err(
                format!(
                    "every message from the SUT conforms to the {} message format",
                    if self.suite.protocol == "ability" {
                        "Device API v2 and IoT Hub"
                    } else {
                        "DMF"
                    }
                ),
                format!(
                    "a message from the SUT is malformed: {why}\n{}",
                    msg.render("    ")
                ),
            ));
        }
        Ok(())
    }

    fn find(&self, p: &Pattern, after: u64) -> Option<usize> {
        self.pending.iter().position(|x| {
            !x.refused
                && x.seq > after
                && matching::matches(p, &x.msg, &self.vars, self.env.schemas)
        })
    }

    async fn take(
        &mut self,
        p: &Pattern,
        after: u64,
        within: Duration,
    ) -> Result<Message, StepError> {
        let deadline = Instant::now() + within;
        loop {
            self.drain();
            if let Some(i) = self.find(p, after) {
                let x = self.pending.remove(i);
                self.last_taken = Some(x.seq);
                return Ok(x.msg);
            }
            self.check_invalid()?;
            if !self.recv_until(deadline).await && Instant::now() >= deadline {
                self.drain();
                if let Some(i) = self.find(p, after) {
                    return Ok(self.pending.remove(i).msg);
                }
                return Err(err(
                    format!(
                        "within {within:?}, a message with {}",
                        matching::describe(p, &self.vars)
                    ),
                    self.near_misses(p, after),
                ));
            }
        }
    }

    async fn none(&mut self, p: &Pattern, after: u64, during: Duration) -> Result<(), StepError> {
        let deadline = Instant::now() + during;
        loop {
            self.drain();
            if let Some(i) = self.find(p, after) {
                let m = &self.pending[i].msg;
                return Err(err(
                    format!(
                        "for {during:?}, no message with {}",
                        matching::describe(p, &self.vars)
                    ),
                    format!("this one arrived:\n{}", m.render("    ")),
                ));
            }
            self.check_invalid()?;
            if !self.recv_until(deadline).await && Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    async fn collect(
        &mut self,
        p: &Pattern,
        until: &Pattern,
        after: u64,
        within: Duration,
    ) -> Result<Vec<Message>, StepError> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            self.drain();
            // Take matching messages in arrival order, up to the end marker.
            let mut i = 0;
            while i < self.pending.len() {
                let x = &self.pending[i];
                let (s, v) = (self.env.schemas, &self.vars);
                if x.refused {
                    i += 1;
                    continue;
                }
                if x.seq > after && matching::matches(until, &x.msg, v, s) {
                    let x = self.pending.remove(i);
                    self.last_taken = Some(x.seq);
                    got.push(x.msg);
                    return Ok(got);
                }
                if x.seq > after && matching::matches(p, &x.msg, v, s) {
                    got.push(self.pending.remove(i).msg);
                } else {
                    i += 1;
                }
            }
            self.check_invalid()?;
            if !self.recv_until(deadline).await && Instant::now() >= deadline {
                let mut actual = format!(
                    "{} matching message(s) arrived, none that ends the sequence",
                    got.len()
                );
                for m in &got {
                    actual.push_str(&format!("\n  taken:\n{}", m.render("    ")));
                }
                actual.push('\n');
                actual.push_str(&self.near_misses(until, after));
                return Err(err(
                    format!(
                        "within {within:?}, messages with {} ending with one with {}",
                        matching::describe(p, &self.vars),
                        matching::describe(until, &self.vars)
                    ),
                    actual,
                ));
            }
        }
    }

    /// Why the waiting messages did not match, for a failure report.
    fn near_misses(&self, p: &Pattern, after: u64) -> String {
        let candidates: Vec<&Pending> = self
            .pending
            .iter()
            .filter(|x| !x.refused && x.seq > after)
            .collect();
        if candidates.is_empty() {
            return "no message from the SUT was waiting to be matched".to_owned();
        }
        let mut out = format!(
            "{} message(s) from the SUT did not match:\n",
            candidates.len()
        );
        for x in candidates.iter().take(6) {
            let why = matching::check(p, &x.msg, &self.vars, self.env.schemas)
                .err()
                .unwrap_or_default();
            out.push_str(&x.msg.render("    "));
            for w in why {
                out.push_str(&format!("      ✗ {w}\n"));
            }
        }
        out
    }

    /// Messages left over that no step took and the suite does not allow.
    fn leftovers(&self) -> Result<(), StepError> {
        if let Some(x) = self.pending.iter().find(|x| x.refused) {
            return Err(err(
                "no refusal beyond those the steps expect",
                format!(
                    "the SUT refused (dead-lettered) a message no step expected it to refuse:\n{}",
                    x.msg.render("    ")
                ),
            ));
        }
        let unexpected: Vec<&Pending> = self
            .pending
            .iter()
            .filter(|x| {
                !self
                    .suite
                    .allow
                    .iter()
                    .any(|p| matching::matches(p, &x.msg, &self.vars, self.env.schemas))
            })
            .collect();
        if unexpected.is_empty() {
            return Ok(());
        }
        let mut actual = format!("{} message(s) that no step expected:\n", unexpected.len());
        for x in unexpected.iter().take(6) {
            actual.push_str(&x.msg.render("    "));
        }
        Err(err(
            "no message from the SUT beyond those the steps expect (and the suite's `allow` list)",
            actual,
        ))
    }
}
