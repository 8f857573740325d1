//! What `cargo bench` measures of the engine in memory: how many messages
//! a second it takes in (decoded, validated against their schema, given a
//! correlation) and matches for a waiting step. Not a stable API.

use std::time::Instant;

use serde_json::json;

use crate::matching::Bound;
use crate::message::Message;
use crate::run::{Cursor, Inbox, Item, Offer, Scope, Watch};
use crate::session::Harness;
use crate::suite::{Pattern, Protocol, Role};
use crate::vars::Vars;

/// Counts matches and takes nothing, so that every arrival stays
/// pending, as in a flood.
struct Count<'a> {
    pattern: &'a Bound,
    harness: &'a Harness,
    matched: usize,
}

impl Watch for Count<'_> {
    fn offer(&mut self, item: &Item) -> Offer {
        if self.pattern.matches(&item.view(), self.harness.schemas()) {
            self.matched += 1;
        }
        Offer::Skip
    }

    fn take(&mut self, _: Item) {}
}

fn message(i: usize, topic: &str, status: &str) -> Message {
    let mut m = Message::default();
    for (k, v) in [
        ("type", "EVENT"),
        ("topic", topic),
        ("tenant", "DEFAULT"),
        ("thingId", "dev-1"),
    ] {
        m.headers.insert(k.into(), v.into());
    }
    m.properties
        .insert("content_type".into(), "application/json".into());
    m.body = if topic == "UPDATE_ACTION_STATUS" {
        format!(r#"{{"actionId":137,"actionStatus":"{status}","message":["step {i}"]}}"#)
    } else {
        format!(r#"{{"attributes":{{"uptime":"{i}"}},"mode":"MERGE"}}"#)
    }
    .into_bytes();
    m
}

impl Harness {
    /// Messages a second the engine takes in and matches for one waiting
    /// step while `pending` messages of another kind wait in its inbox
    /// (the step has looked at those once, when it started); and how many
    /// of the `arrivals` matched.
    pub fn matching_rate(&self, pending: usize, arrivals: usize) -> (f64, usize) {
        let p = Protocol::Dmf;
        let pattern: Pattern = serde_json::from_value(json!({
            "headers": {"type": "EVENT", "topic": "UPDATE_ACTION_STATUS", "tenant": "${tenant}"},
            "body": {"actionId": "${actionId}", "actionStatus": {"$one_of": ["FINISHED", "ERROR"]}}
        }))
        .expect("a pattern");
        let mut vars = Vars::default();
        vars.set("tenant", json!("DEFAULT"));
        vars.set("actionId", json!(137));
        let bound = Bound::new(&pattern, &vars).expect("variables set");
        let statuses = ["RUNNING", "DOWNLOAD", "DOWNLOADED", "FINISHED"];
        let take_in = |entry: usize, msg: Message| {
            let mut item = Item::new(entry, msg, p);
            item.problem = p
                .schema_of(Role::Device, &item.view)
                .ok()
                .flatten()
                .and_then(|s| self.schemas().validate(&s, &item.view).err())
                .map(|v| format!("{v:?}"));
            item
        };
        let mut inbox = Inbox::default();
        for i in 0..pending {
            inbox.push(take_in(i, message(i, "UPDATE_ATTRIBUTES", "")));
        }
        let arriving: Vec<Message> = (0..arrivals)
            .map(|i| message(i, "UPDATE_ACTION_STATUS", statuses[i % statuses.len()]))
            .collect();
        let scope = Scope::default();
        let mut cursor = Cursor::at(&scope);
        let mut count = Count {
            pattern: &bound,
            harness: self,
            matched: 0,
        };
        // The step's first look at what is pending is paid once, when it
        // starts; the rate is of what arrives while it waits.
        inbox.scan(&mut cursor, &scope, &mut count);
        let began = Instant::now();
        for (i, msg) in arriving.into_iter().enumerate() {
            inbox.push(take_in(pending + i, msg));
            inbox.scan(&mut cursor, &scope, &mut count);
        }
        let secs = began.elapsed().as_secs_f64();
        (arrivals as f64 / secs, count.matched)
    }
}
