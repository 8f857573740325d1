//! What the SUT sent in a case and no step has taken yet. Each arrival is
//! decoded, validated and given its correlation once, when it comes in
//! ([`Item`]); a waiting step sees each one once, through a [`Scope`]
//! that says which messages are its to judge and a [`Watch`] that judges
//! them. Pure: tested by feeding it items, without a broker.

use serde_json::Value;

use crate::matching::View;
use crate::message::Message;
use crate::protocol::Protocol;
use crate::suite::Role;

/// One message from the SUT, or one of the harness's that it refused,
/// as the steps read it: its parts as one JSON value, the body parsed
/// once.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// Its transcript entry; entries grow in arrival order.
    pub entry: usize,
    /// Where it was published.
    pub channel: String,
    /// `{headers, properties, body}`: the body parsed when it is JSON,
    /// as text when it is not, `null` when empty.
    pub view: Value,
    /// Whether the body is JSON.
    pub json_body: bool,
    /// The body as it came.
    pub body: Vec<u8>,
    /// A message of the harness's, handed back because the SUT refused it.
    pub refused: bool,
    /// Its correlation (DMF: actionId; the Device API: correlationId).
    pub correlation: Option<String>,
    /// What is wrong with it: it does not decode, or violates the schema
    /// of its kind, or is not a message the SUT may send.
    pub problem: Option<String>,
}

impl Item {
    /// Takes a message in as entry `entry`: its parts move into the view.
    pub(crate) fn new(entry: usize, msg: Message, protocol: Protocol) -> Self {
        let (body, json_body) = match serde_json::from_slice::<Value>(&msg.body) {
            _ if msg.body.is_empty() => (Value::Null, false),
            Ok(v) => (v, true),
            Err(_) => (
                Value::String(String::from_utf8_lossy(&msg.body).into_owned()),
                false,
            ),
        };
        let mut view = serde_json::Map::new();
        view.insert("headers".into(), Value::Object(msg.headers));
        view.insert("properties".into(), Value::Object(msg.properties));
        view.insert("body".into(), body);
        let view = Value::Object(view);
        Item {
            entry,
            channel: msg.channel,
            correlation: protocol.correlation(&view),
            view,
            json_body,
            body: msg.body,
            refused: false,
            problem: None,
        }
    }

    /// The message again, for reports and checks.
    pub(crate) fn message(&self) -> Message {
        let part = |k: &str| self.view[k].as_object().cloned().unwrap_or_default();
        Message {
            channel: self.channel.clone(),
            headers: part("headers"),
            properties: part("properties"),
            body: self.body.clone(),
            raw: false,
        }
    }

    /// A property as text.
    pub(crate) fn property(&self, name: &str) -> Option<String> {
        self.view["properties"]
            .get(name)
            .and_then(crate::message::scalar_text)
    }

    /// The item as matching sees it.
    pub(crate) fn view(&self) -> View<'_> {
        View {
            value: &self.view,
            json_body: self.json_body,
        }
    }
}

/// The SUT's own traffic, told apart: a protocol, the SUT's role, and
/// the correlations that are the case's.
#[derive(Clone, Debug)]
pub(crate) struct Own {
    /// The protocol, which says what is sent of the SUT's own accord.
    pub protocol: Protocol,
    /// The role of the SUT.
    pub role: Role,
    /// The case's correlations.
    pub known: Vec<String>,
}

impl Own {
    /// Whether the item is the SUT's own traffic.
    pub(crate) fn is_own(&self, item: &Item) -> bool {
        self.protocol.own(
            self.role,
            &item.view,
            item.correlation.as_deref(),
            &self.known,
        )
    }
}

/// Which messages a step judges.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scope {
    /// Only those whose entry is at least this: what arrived after a
    /// stimulus, or after a named step.
    pub from: usize,
    /// When not empty, only those with one of these correlations (or,
    /// unless `strict`, with none): the answers to the stimuli.
    pub narrow: Vec<String>,
    /// An answer must carry the correlation: one without any is not it.
    pub strict: bool,
    /// Refusals (the harness's messages handed back) rather than the
    /// SUT's messages.
    pub refusals: bool,
    /// Leave out the SUT's own traffic.
    pub own: Option<Own>,
    /// Leave out what the sources disagree the SUT sends at all, for
    /// this protocol and SUT role.
    pub disputed: Option<(Protocol, Role)>,
}

impl Scope {
    /// Whether the step judges this item.
    pub(crate) fn admits(&self, item: &Item) -> bool {
        item.entry >= self.from
            && item.refused == self.refusals
            && (self.narrow.is_empty()
                || match &item.correlation {
                    Some(c) => self.narrow.contains(c),
                    None => !self.strict,
                })
            && !self.own.as_ref().is_some_and(|o| o.is_own(item))
            && !self
                .disputed
                .is_some_and(|(p, role)| p.disputed(role, &item.view))
    }
}

/// What a step makes of one message in its scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Not its business: leave it for later steps.
    Skip,
    /// Take it, and go on waiting.
    Take,
    /// Take it, and stop: the step has what it waited for.
    TakeAndStop,
    /// Stop without taking it: the step has seen what it must not.
    Stop,
}

/// A waiting step, judging messages one at a time.
pub(crate) trait Watch {
    /// Judges one message in scope.
    fn offer(&mut self, item: &Item) -> Offer;
    /// Receives a message it took.
    fn take(&mut self, item: Item);
    /// Whether the step waits for something the SUT must send (then a
    /// SUT that has exited ends it), rather than watching a quiet window.
    fn awaits_answer(&self) -> bool {
        true
    }
}

/// Where a watch has got to: every item before `next` has been offered.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cursor {
    next: usize,
}

impl Cursor {
    /// A cursor at the start of `scope`.
    pub(crate) fn at(scope: &Scope) -> Self {
        Cursor { next: scope.from }
    }
}

/// What a scan ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// Every new item was offered; the watch goes on.
    Open,
    /// The watch stopped, at this entry.
    Stopped(usize),
}

/// Messages waiting to be taken, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    items: Vec<Item>,
    arrived: usize,
}

impl Inbox {
    /// Keeps an arrival.
    pub(crate) fn push(&mut self, item: Item) {
        debug_assert!(self.items.last().is_none_or(|l| l.entry < item.entry));
        if !item.refused {
            self.arrived += 1;
        }
        self.items.push(item);
    }

    /// How many messages the SUT has sent so far.
    pub(crate) fn arrived(&self) -> usize {
        self.arrived
    }

    /// The first message that is wrong in itself, if one has arrived.
    pub(crate) fn malformed(&self) -> Option<&Item> {
        self.items.iter().find(|i| i.problem.is_some())
    }

    /// Offers the watch every item in `scope` it has not seen yet, in
    /// arrival order; each item is offered once.
    pub(crate) fn scan(
        &mut self,
        cursor: &mut Cursor,
        scope: &Scope,
        w: &mut dyn Watch,
    ) -> Scanned {
        // What the watch has not seen is at the end: walk back to it, so
        // that a new arrival costs the same however many items wait.
        let mut i = self.items.len();
        while i > 0 && self.items[i - 1].entry >= cursor.next {
            i -= 1;
        }
        while i < self.items.len() {
            let item = &self.items[i];
            cursor.next = item.entry + 1;
            if item.problem.is_some() || !scope.admits(item) {
                i += 1;
                continue;
            }
            let entry = item.entry;
            match w.offer(item) {
                Offer::Skip => i += 1,
                Offer::Take => w.take(self.items.remove(i)),
                Offer::TakeAndStop => {
                    w.take(self.items.remove(i));
                    return Scanned::Stopped(entry);
                }
                Offer::Stop => return Scanned::Stopped(entry),
            }
        }
        Scanned::Open
    }

    /// Items in `scope` that no step took, for reports.
    pub(crate) fn in_scope<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Item> + 'a {
        self.items.iter().filter(move |i| scope.admits(i))
    }

    /// Every item no step took.
    pub(crate) fn left(&self) -> &[Item] {
        &self.items
    }
}

#[cfg(test)]
mod tests;
