//! The inbox fed by hand: scopes, watches, and what each arrival costs.

use super::*;
use serde_json::json;

fn item(entry: usize, kind: &str, corr: Option<&str>) -> Item {
    let mut msg = Message::default();
    msg.headers.insert("kind".into(), json!(kind));
    if let Some(c) = corr {
        msg.headers.insert("correlationId".into(), json!(c));
    }
    Item::new(entry, msg, Protocol::Ability)
}

fn with(entry: usize, headers: Value) -> Item {
    let msg = Message {
        headers: serde_json::from_value(headers).unwrap(),
        ..Default::default()
    };
    Item::new(entry, msg, Protocol::Ability)
}

/// Takes the first item whose `kind` header is `want`.
struct First {
    want: &'static str,
    offered: Vec<usize>,
    took: Vec<usize>,
}

impl Watch for First {
    fn offer(&mut self, i: &Item) -> Offer {
        self.offered.push(i.entry);
        if i.view["headers"]["kind"] == self.want {
            Offer::TakeAndStop
        } else {
            Offer::Skip
        }
    }
    fn take(&mut self, i: Item) {
        self.took.push(i.entry);
    }
}

fn first(want: &'static str) -> First {
    First {
        want,
        offered: vec![],
        took: vec![],
    }
}

#[test]
fn a_step_judges_the_answer_to_its_stimulus_not_what_came_first() {
    let mut inbox = Inbox::default();
    // The device's own request at boot, before the stimulus (entry 2).
    inbox.push(item(1, "model.create", Some("boot")));
    // After it: requests of its own, one without any correlation.
    inbox.push(item(3, "model.create", None));
    inbox.push(item(4, "identity.create", Some("periodic")));
    inbox.push(item(5, "model.create", Some("asked")));
    let scope = Scope {
        from: 2,
        narrow: vec!["asked".into()],
        strict: true,
        ..Default::default()
    };
    let mut w = first("model.create");
    let mut cursor = Cursor::at(&scope);
    assert_eq!(inbox.scan(&mut cursor, &scope, &mut w), Scanned::Stopped(5));
    assert_eq!(w.took, vec![5]);
    assert_eq!(w.offered, vec![5], "the SUT's own requests are not offered");
    assert_eq!(inbox.left().len(), 3, "the SUT's own traffic stays");
}

#[test]
fn each_item_is_offered_once_however_many_wait() {
    let mut inbox = Inbox::default();
    for e in 0..10_000 {
        inbox.push(item(e, "noise", None));
    }
    let scope = Scope::default();
    let mut w = first("answer");
    let mut cursor = Cursor::at(&scope);
    assert_eq!(inbox.scan(&mut cursor, &scope, &mut w), Scanned::Open);
    assert_eq!(w.offered.len(), 10_000);
    inbox.push(item(10_000, "answer", None));
    assert_eq!(
        inbox.scan(&mut cursor, &scope, &mut w),
        Scanned::Stopped(10_000)
    );
    assert_eq!(w.offered.len(), 10_001, "only the new arrival was offered");
    assert_eq!(inbox.arrived(), 10_001);
}

#[test]
fn refusals_and_malformed_messages_are_kept_apart() {
    let mut inbox = Inbox::default();
    let mut refused = item(0, "answer", None);
    refused.refused = true;
    inbox.push(refused);
    let mut bad = item(1, "answer", None);
    bad.problem = Some("no type header".into());
    inbox.push(bad);
    let scope = Scope::default();
    let mut w = first("answer");
    assert_eq!(
        inbox.scan(&mut Cursor::at(&scope), &scope, &mut w),
        Scanned::Open
    );
    assert_eq!(inbox.malformed().map(|i| i.entry), Some(1));
    let refusals = Scope {
        refusals: true,
        ..Default::default()
    };
    let mut w = first("answer");
    assert_eq!(
        inbox.scan(&mut Cursor::at(&refusals), &refusals, &mut w),
        Scanned::Stopped(0)
    );
    assert_eq!(
        inbox.arrived(),
        1,
        "a refusal is not a message the SUT sent"
    );
}

#[test]
fn own_traffic_is_left_out_when_the_scope_says_so() {
    let mut inbox = Inbox::default();
    inbox.push(with(0, json!({"msgType": "variable"})));
    inbox.push(with(
        1,
        json!({"msgType": "action", "correlationId": "theirs"}),
    ));
    inbox.push(with(
        2,
        json!({"msgType": "action", "correlationId": "ours"}),
    ));
    let scope = Scope {
        own: Some(Own {
            protocol: Protocol::Ability,
            role: Role::Device,
            known: vec!["ours".into()],
        }),
        ..Default::default()
    };
    let seen: Vec<usize> = inbox.in_scope(&scope).map(|i| i.entry).collect();
    assert_eq!(seen, vec![2]);
}
