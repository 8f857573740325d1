//! The state of one running case, and what every step does with it:
//! record a message in the transcript (and emit it), take in what the SUT
//! sent (validate it, answer it as the opposite role would), publish,
//! mark stimuli, and say which messages a step is to judge.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::RunEnv;
use super::failure::{Miss, StepError, observed, published};
use super::inbox::{Inbox, Item, Own, Scope};
use crate::event::{Observed, RunEvent, Sink};
use crate::matching::Bound;
use crate::message::{Arrival, Direction, Entry, Message};
use crate::protocol::{Link, Protocol, Stimulus};
use crate::suite::{Role, Suite};
use crate::vars::Vars;

/// How many arrivals are taken in before a waiting step looks at the
/// clock again: a flood cannot hold a step past its window.
pub(crate) const DRAIN_BATCH: usize = 256;

/// The most body bytes a case keeps of what the SUT sends; past that the
/// case fails, and what else arrives is dropped, so that no SUT can grow
/// the test process without bound.
pub(crate) const CASE_BYTES: usize = 32 << 20;

/// The stimuli just run (the `send`, `resend` and `trigger` steps since
/// the last step of another kind): where their answers begin, and the
/// correlations those carry, when the protocol narrows to them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stimuli {
    pub from: usize,
    pub narrow: Vec<String>,
    /// No step of another kind has run since the last stimulus.
    pub open: bool,
}

/// One running case.
pub(crate) struct Cx<'a> {
    pub env: &'a RunEnv<'a>,
    pub suite: &'a Suite,
    pub link: Link,
    pub refusals: Result<(), String>,
    pub vars: Vars,
    pub inbox: Inbox,
    /// When the case must be over (`timeouts.case`).
    pub deadline: Instant,
    /// Where a named step began, or after the message it took.
    pub marks: HashMap<String, usize>,
    pub stimuli: Stimuli,
    /// The correlations that are the case's: of what it sent, and of
    /// what its hooks asked for.
    pub known: Vec<String>,
    pub sent: HashMap<String, Message>,
    pub collected: HashMap<String, Vec<Message>>,
    pub taken: Vec<(usize, usize)>,
    /// The waits the suite mandates.
    pub mandated: Duration,
    /// Sizes the case set, for a failure to show.
    pub notes: Vec<String>,
    /// The 1-based index of the running step.
    pub step: usize,
    /// Answers to the SUT's messages held back while a `query` asks the
    /// SUT what it received, with the entries they answer.
    held: Option<Vec<(usize, Message)>>,
    /// Body bytes kept so far, and how many messages came past
    /// [`CASE_BYTES`].
    kept: usize,
    dropped: usize,
    started: Instant,
    entries: usize,
    case: String,
    sink: &'a mut dyn Sink,
}

impl<'a> Cx<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        env: &'a RunEnv<'a>,
        suite: &'a Suite,
        case: String,
        link: Link,
        refusals: Result<(), String>,
        started: Instant,
        deadline: Instant,
        sink: &'a mut dyn Sink,
    ) -> Self {
        Cx {
            env,
            suite,
            link,
            refusals,
            vars: Vars::default(),
            inbox: Inbox::default(),
            deadline,
            marks: HashMap::new(),
            stimuli: Stimuli::default(),
            known: Vec::new(),
            sent: HashMap::new(),
            collected: HashMap::new(),
            taken: Vec::new(),
            mandated: Duration::ZERO,
            notes: Vec::new(),
            step: 0,
            held: None,
            kept: 0,
            dropped: 0,
            started,
            entries: 0,
            case,
            sink,
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.suite.protocol
    }

    pub(crate) fn role(&self) -> Role {
        self.suite.role
    }

    /// How many transcript entries there are: the entry the next message
    /// gets.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// The case's name.
    pub(crate) fn case(&self) -> &str {
        &self.case
    }

    /// Emits an event.
    pub(crate) fn emit(&mut self, event: RunEvent) {
        self.sink.event(&event);
    }

    /// Adds a message to the transcript; returns its entry.
    fn record(&mut self, direction: Direction, message: Message, answers: Option<usize>) -> usize {
        let index = self.entries;
        self.entries += 1;
        let entry = Entry {
            index,
            at: self.started.elapsed(),
            direction,
            answers,
            message,
        };
        let case = self.case.clone();
        self.emit(RunEvent::MessageSeen { case, entry });
        index
    }

    /// Publishes `msg` and records it; returns it as it went out.
    pub(crate) async fn publish(&mut self, msg: &Message) -> Result<Message, StepError> {
        let sent = self
            .link
            .publish(msg)
            .await
            .map_err(|e| published(e, &msg.channel))?;
        self.record(Direction::ToSut, sent.clone(), None);
        if let Some(c) = self.protocol().correlation(&sent.view().0) {
            self.know(c);
        }
        Ok(sent)
    }

    /// Adds a correlation to the case's own.
    fn know(&mut self, correlation: String) {
        if !self.known.contains(&correlation) {
            self.known.push(correlation);
        }
    }

    /// Sends `msg` as a stimulus (see [`Cx::begin_stimulus`]), and keeps
    /// it under the step's name for `resend` and refusals.
    pub(crate) async fn stimulate(
        &mut self,
        msg: &Message,
        step: Option<&String>,
    ) -> Result<(), StepError> {
        self.begin_stimulus().await;
        let sent = self.publish(msg).await?;
        self.end_stimulus(&Stimulus::Sent(&sent));
        if let Some(n) = step {
            self.sent.insert(n.clone(), sent);
        }
        Ok(())
    }

    /// Takes in everything that has arrived and, unless the step before
    /// was a stimulus too, marks the start of the stimuli's answers: what
    /// arrives from here on.
    pub(crate) async fn begin_stimulus(&mut self) {
        self.drain_all().await;
        if !self.stimuli.open {
            self.stimuli = Stimuli {
                from: self.entries,
                narrow: Vec::new(),
                open: true,
            };
        }
    }

    /// Records what a stimulus carried, so that the expectations after it
    /// judge its answers.
    pub(crate) fn end_stimulus(&mut self, s: &Stimulus<'_>) {
        let p = self.protocol();
        if let Some(c) = p.correlation_of(s) {
            self.know(c.clone());
            if p.narrows(self.role(), s) && !self.stimuli.narrow.contains(&c) {
                self.stimuli.narrow.push(c);
            }
        }
    }

    /// A step other than a stimulus ran: the next stimulus starts anew.
    pub(crate) fn close_stimuli(&mut self) {
        self.stimuli.open = false;
    }

    /// Which messages an `expect` or `collect` judges: those after the
    /// stimuli just run (or after the step named in `after`), answering
    /// their correlations, unless it asks for the SUT's own traffic too.
    pub(crate) fn answer_scope(&self, after: &Option<String>, own: bool) -> Scope {
        let from = match after {
            Some(name) => self.marks.get(name).copied().unwrap_or(0),
            None => self.stimuli.from,
        };
        Scope {
            from,
            narrow: if own {
                Vec::new()
            } else {
                self.stimuli.narrow.clone()
            },
            strict: self.protocol().answers_carry_correlation(),
            refusals: false,
            own: None,
            disputed: (!own).then(|| (self.protocol(), self.role())),
        }
    }

    /// Which messages an `expect_none` judges: every message of the case
    /// (or after the step named in `after`) but the SUT's own traffic,
    /// unless it asks for that too.
    pub(crate) fn quiet_scope(&self, after: &Option<String>, own: bool) -> Scope {
        Scope {
            from: after
                .as_ref()
                .and_then(|n| self.marks.get(n).copied())
                .unwrap_or(0),
            narrow: Vec::new(),
            strict: false,
            refusals: false,
            // Own traffic includes what is disputed.
            own: (!own).then(|| self.own()),
            disputed: None,
        }
    }

    /// The test for the SUT's own traffic, with the case's correlations.
    pub(crate) fn own(&self) -> Own {
        Own {
            protocol: self.protocol(),
            role: self.role(),
            known: self.known.clone(),
        }
    }

    /// Takes in what has arrived, until none is left or the case's time
    /// is up: a SUT that floods the link cannot hold the case.
    pub(crate) async fn drain_all(&mut self) {
        while Instant::now() < self.deadline && self.drain(DRAIN_BATCH).await {
            tokio::task::yield_now().await;
        }
    }

    /// Takes in up to `at_most` arrivals without waiting; `true` when
    /// there may be more.
    pub(crate) async fn drain(&mut self, at_most: usize) -> bool {
        for _ in 0..at_most {
            match self.link.try_recv() {
                Some(a) => self.ingest(a).await,
                None => return false,
            }
        }
        true
    }

    /// Takes in one arrival: records it, validates it against the schema
    /// of its kind, keeps it for the steps, and answers it as the
    /// opposite role would.
    pub(crate) async fn ingest(&mut self, arrival: Arrival) {
        let size = match &arrival {
            Arrival::Message(m) | Arrival::Refused(m) | Arrival::Malformed(m, _) => m.body.len(),
        };
        if self.kept + size > CASE_BYTES {
            self.dropped += 1;
            return;
        }
        self.kept += size;
        let (msg, refused, malformed) = match arrival {
            Arrival::Message(m) => (m, false, None),
            Arrival::Refused(m) => (m, true, None),
            Arrival::Malformed(m, why) => (m, false, Some(why)),
        };
        let direction = if refused {
            Direction::Refused
        } else {
            Direction::FromSut
        };
        let entry = self.record(direction, msg.clone(), None);
        let answer = (!refused && malformed.is_none())
            .then(|| self.protocol().answer(self.role(), &msg))
            .flatten();
        let mut item = Item::new(entry, msg, self.protocol());
        item.refused = refused;
        item.problem = match (refused, malformed) {
            (true, _) => None,
            (false, Some(why)) => Some(why),
            (false, None) => self.violation(&item),
        };
        let answer = answer.filter(|_| item.problem.is_none());
        self.inbox.push(item);
        if let Some(answer) = answer {
            match &mut self.held {
                Some(held) => held.push((entry, answer)),
                None => self.send_answer(entry, answer).await,
            }
        }
    }

    /// Publishes the harness's answer to entry `to`; an answer the broker
    /// does not take (a reply exchange that is gone) is not the case's
    /// business.
    async fn send_answer(&mut self, to: usize, answer: Message) {
        if let Ok(sent) = self.link.publish(&answer).await {
            self.record(Direction::ToSut, sent, Some(to));
        }
    }

    /// Holds the harness's answers back until [`Cx::release_answers`]:
    /// while a `query` asks the SUT what it last received, an answer of
    /// the harness's must not overwrite what the case sent.
    pub(crate) fn hold_answers(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Sends the answers held back.
    pub(crate) async fn release_answers(&mut self) {
        for (to, answer) in self.held.take().unwrap_or_default() {
            self.send_answer(to, answer).await;
        }
    }

    /// What is wrong with a message of the SUT's, by the schema of its
    /// kind.
    fn violation(&self, item: &Item) -> Option<String> {
        let who = self.role().as_str();
        match self.protocol().schema_of(self.role(), &item.view) {
            Ok(None) => None,
            Ok(Some(schema)) => self
                .env
                .schemas
                .validate(&schema, &item.view)
                .err()
                .map(|v| {
                    let list: Vec<String> = v.iter().map(|v| format!("  - {v}")).collect();
                    format!(
                        "it violates schemas/{schema}.schema.json:\n{}",
                        list.join("\n")
                    )
                }),
            Err(e) => Some(format!("it is not a message a {who} may send: {e}")),
        }
    }

    /// Fails when a message that is wrong in itself has arrived, or the
    /// SUT has sent more than a case keeps.
    pub(crate) fn fail_on_malformed(&self) -> Result<(), StepError> {
        if self.dropped > 0 {
            return Err(super::failure::miss(
                format!("the SUT sends at most {CASE_BYTES} bytes of bodies in one case"),
                format!(
                    "it sent more: after {} bytes in {} message(s), {} more message(s) were dropped",
                    self.kept,
                    self.inbox.arrived(),
                    self.dropped
                ),
            ));
        }
        let Some(bad) = self.inbox.malformed() else {
            return Ok(());
        };
        Err(StepError::Failed(Box::new(Miss {
            expected: format!(
                "every message from the SUT conforms to the {} message format",
                self.protocol().format()
            ),
            actual: format!(
                "a message from the SUT is malformed: {}",
                bad.problem.as_deref().unwrap_or_default()
            ),
            pattern: None,
            observed: vec![observed(bad, Vec::new())],
        })))
    }

    /// Why the messages in `scope` did not match `pattern`, for a failure.
    /// The SUT's own traffic comes last: it is rarely the answer that went
    /// wrong.
    pub(crate) fn near_misses(&self, pattern: &Bound, scope: &Scope) -> Vec<Observed> {
        let own = self.own();
        let (mut shown, theirs): (Vec<&Item>, Vec<&Item>) = self
            .inbox
            .in_scope(scope)
            .filter(|i| i.problem.is_none())
            .partition(|i| !own.is_own(i));
        shown.extend(theirs);
        shown
            .into_iter()
            .take(6)
            .map(|i| {
                let why = pattern
                    .check(&i.view(), self.env.schemas)
                    .err()
                    .unwrap_or_default();
                observed(i, why)
            })
            .collect()
    }
}
