//! What the reference device puts in a request for each v2 action: the
//! action's parameters, as the `perform` hook names them, placed where
//! ABB's pages put them (headers, or the body the device builds), and the
//! body a device sends of its own when the hook gives none.

use serde_json::{Map, Value, json};

use super::AbilityDeviceFault as F;

/// The model definition when none is named.
const DEVICE_MODEL: &str = "abb.ability.device";

/// A request's action headers and body, before the common headers.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Parts {
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

fn text(args: &Map<String, Value>, k: &str) -> Option<String> {
    args.get(k)
        .filter(|v| !v.is_null())
        .and_then(dmconf_harness::kit::scalar_text)
}

/// Builds `action` from the hook's arguments, with `fault`'s mistake.
pub(super) fn build(action: &str, args: &Map<String, Value>, fault: Option<F>) -> Parts {
    let arg = |k: &str| text(args, k);
    let object_id = || arg("objectId").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let model = || arg("model").unwrap_or_else(|| DEVICE_MODEL.to_owned());
    let mut p = Parts::default();
    // Headers that name the object of the action; a device with the
    // `ids-in-body` fault puts them in the body instead.
    let mut ids: Vec<(&str, String)> = Vec::new();
    match action {
        "identity.create" | "identity.delete" => {
            let identity = arg("identity").unwrap_or_else(|| "child-1".to_owned());
            if fault == Some(F::IdentityInHeader) {
                p.headers.push(("identity".into(), identity));
                p.body = json!({});
            } else {
                p.body = json!({"identity": identity});
            }
            if let Some(parent) = arg("parent") {
                p.headers.push(("parent".into(), parent));
            }
        }
        "model.create" => {
            p.body = json!({
                "model": DEVICE_MODEL,
                "type": "abb.ability.device.dmconf@1",
                "properties": {"serialNumber": {"value": "$fill"}}
            });
        }
        "model.update" => {
            let id = object_id();
            if fault != Some(F::UpdateWithoutObjectId) {
                ids.push(("objectId", id.clone()));
            }
            ids.push(("model", model()));
            p.body = json!({
                "objectId": id,
                "model": model(),
                "type": "abb.ability.device.dmconf@1",
                "properties": {"serialNumber": {"value": "S-1"}},
                "version": 1
            });
        }
        "model.patch" => {
            ids.extend([("objectId", object_id()), ("model", model())]);
            let version = args.get("version").and_then(Value::as_i64).unwrap_or(1);
            let version = if fault == Some(F::PatchVersionAsText) {
                json!(version.to_string())
            } else {
                json!(version)
            };
            p.body = json!({"version": version, "properties": {"location": {"value": "hall 2"}}});
        }
        "model.delete" | "extension.create" | "extension.get" => {
            ids.extend([("objectId", object_id()), ("model", model())]);
            if let Some(v) = arg("extensionVersion").filter(|_| action == "extension.get") {
                p.headers.push(("extensionVersion".into(), v));
            }
            p.body = match action {
                "extension.create" => json!({"properties": {"location": {"dataType": "string"}}}),
                _ => json!({}),
            };
        }
        "model.query" => {
            p.body = json!({"query": arg("query").unwrap_or_else(|| "models()".to_owned())});
        }
        "owner.remove" => {
            if let Some(owner) = arg("owner") {
                p.headers.push(("owner".into(), owner));
            }
            let entry = json!({"objectId": object_id(), "model": model()});
            p.body = if fault == Some(F::ArraysAsObjects) {
                entry
            } else {
                json!([entry])
            };
        }
        "reference.create" => {
            ids.extend([("objectId", object_id()), ("model", model())]);
            let to = arg("to").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let reference = json!({
                "name": arg("name").unwrap_or_else(|| "isMountedTo".to_owned()),
                "to": {"objectId": to, "model": DEVICE_MODEL},
                "attributes": {}
            });
            p.body = if fault == Some(F::ArraysAsObjects) {
                reference
            } else {
                json!([reference])
            };
        }
        "reference.delete" => {
            ids.extend([
                ("objectId", object_id()),
                ("model", model()),
                (
                    "name",
                    arg("name").unwrap_or_else(|| "isMountedTo".to_owned()),
                ),
            ]);
            p.body = match arg("to") {
                Some(to) => json!({"to": {"objectId": to, "model": DEVICE_MODEL}}),
                None => json!({}),
            };
        }
        "type.create" => {
            let type_id = arg("typeId").unwrap_or_else(|| "abb.ability.device.dmconf".to_owned());
            p.headers.push(("model".into(), model()));
            let mut body = json!({
                "model": model(),
                "version": "1.0.0",
                "description": "a type of the reference device",
                "properties": {"serialNumber": {"dataType": "string"}}
            });
            if fault == Some(F::TypeIdInHeader) {
                p.headers.push(("typeId".into(), type_id));
            } else {
                body["typeId"] = json!(type_id);
            }
            p.body = body;
        }
        "type.delete" => {
            let type_id = arg("typeId").unwrap_or_else(|| "abb.ability.device.dmconf".to_owned());
            ids.extend([("typeId", type_id), ("model", model())]);
            p.body = json!({});
        }
        "type.query" => {
            let key = if fault == Some(F::FilterAsQuery) {
                "query"
            } else {
                "filter"
            };
            p.body = match arg("filter") {
                Some(f) => json!({key: f}),
                None => json!({}),
            };
        }
        "batch.execute" => {
            let entries: Vec<Value> = args
                .get("entries")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|e| e.as_object())
                        .map(|e| entry(e, fault))
                        .collect()
                })
                .unwrap_or_else(|| vec![entry(&Map::new(), fault)]);
            p.body = if fault == Some(F::BatchBodyObject) {
                json!({"entries": entries})
            } else {
                Value::Array(entries)
            };
        }
        _ => p.body = json!({}),
    }
    if fault == Some(F::IdsInBody) {
        if !p.body.is_object() {
            p.body = json!({});
        }
        for (k, v) in ids {
            p.body[k] = json!(v);
        }
    } else {
        p.headers
            .extend(ids.into_iter().map(|(k, v)| (k.to_owned(), v)));
    }
    p
}

/// One entry of a batch: its action (model.create when none is named),
/// its action's headers as sibling keys, its body under `body`, and the
/// `id` and `dependsOn` it was given.
fn entry(spec: &Map<String, Value>, fault: Option<F>) -> Value {
    let action = text(spec, "action").unwrap_or_else(|| "model.create".to_owned());
    let parts = build(&action, spec, fault);
    let mut e = Map::new();
    e.insert("action".into(), json!(action));
    for (k, v) in parts.headers {
        e.insert(k, json!(v));
    }
    for k in ["id", "dependsOn", "correlationId", "context"] {
        if let Some(v) = spec.get(k).filter(|v| !v.is_null()) {
            e.insert(k.into(), v.clone());
        }
    }
    let mut body = parts.body;
    if body
        .get("properties")
        .and_then(|p| p.get("serialNumber"))
        .is_some_and(|s| s["value"] == "$fill")
    {
        body["properties"]["serialNumber"]["value"] = json!("S-batch");
    }
    e.insert("body".into(), body);
    Value::Object(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn object_ids_go_in_headers() {
        let p = build(
            "model.update",
            &args(json!({"objectId": "o-1", "model": "m"})),
            None,
        );
        assert!(p.headers.contains(&("objectId".into(), "o-1".into())));
        assert!(p.headers.contains(&("model".into(), "m".into())));
        let p = build(
            "model.update",
            &args(json!({"objectId": "o-1"})),
            Some(F::IdsInBody),
        );
        assert!(p.headers.is_empty());
        assert_eq!(p.body["objectId"], "o-1");
    }

    #[test]
    fn batch_entries_are_an_array_in_order() {
        let p = build(
            "batch.execute",
            &args(json!({"entries": [
                {"action": "model.update", "objectId": "o-1"},
                {"action": "model.query", "query": "q"}
            ]})),
            None,
        );
        assert_eq!(p.body[0]["action"], "model.update");
        assert_eq!(p.body[0]["objectId"], "o-1");
        assert_eq!(p.body[1]["body"], json!({"query": "q"}));
    }
}
