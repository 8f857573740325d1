//! IoT Hub's MQTT property bag: the `k=v&k=v` that follows
//! `messages/events/` or `messages/devicebound/` in a topic. Encoding
//! follows Azure's Python device SDK byte for byte: system properties
//! first, as `%24.xx`, in the SDK's order, then application properties
//! sorted by name; everything outside `A-Z a-z 0-9 - . _ ~` is
//! percent-encoded, a space as `%20`, never `+`. Decoding is tolerant of
//! the other SDKs: split on `&`, then on the first `=`; `key` alone is a
//! null value, `key=` an empty one; `+` stays `+`.

/// The order in which the Python SDK writes system properties.
pub const SYSTEM_ORDER: [&str; 9] = [
    "$.on", "$.mid", "$.cid", "$.uid", "$.to", "$.ct", "$.ce", "$.ifid", "$.exp",
];

/// Percent-encodes everything outside RFC 3986's unreserved characters.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decodes; `Err` on a malformed escape or text that is not UTF-8.
pub fn decode_component(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{s}` has a malformed percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` does not decode to UTF-8"))
}

/// One property: a name and a value, or none (`key` alone).
pub type Property = (String, Option<String>);

/// Encodes system properties (names with `$.`) and application
/// properties into a bag.
pub fn encode(system: &[Property], application: &[Property]) -> String {
    let mut sys: Vec<&Property> = system.iter().collect();
    let rank = |k: &str| {
        SYSTEM_ORDER
            .iter()
            .position(|s| *s == k)
            .unwrap_or(SYSTEM_ORDER.len())
    };
    sys.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then(a.0.cmp(&b.0)));
    let mut app: Vec<&Property> = application.iter().collect();
    app.sort_by(|a, b| a.0.cmp(&b.0));
    sys.into_iter()
        .chain(app)
        .map(|(k, v)| match v {
            Some(v) => format!("{}={}", encode_component(k), encode_component(v)),
            None => encode_component(k),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes a bag into properties, in order; `Err` on a malformed escape
/// or a name given twice.
pub fn decode(bag: &str) -> Result<Vec<Property>, String> {
    let mut out: Vec<Property> = Vec::new();
    for part in bag.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (decode_component(k)?, Some(decode_component(v)?)),
            None => (decode_component(part)?, None),
        };
        if out.iter().any(|(n, _)| *n == k) {
            return Err(format!("property `{k}` appears twice in the property bag"));
        }
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> Property {
        (k.to_owned(), Some(v.to_owned()))
    }

    #[test]
    fn the_python_sdk_test_vector() {
        // TestEncodeMessagePropertiesInTopic in azure-iot-sdk-python.
        let system = [
            p("$.on", "output"),
            p("$.mid", "1234"),
            p("$.cid", "5678"),
            p("$.uid", "userid"),
            p("$.ct", "type"),
            p("$.ce", "utf-8"),
            p("$.ifid", "urn:azureiot:Security:SecurityAgent:1"),
            p("$.exp", "2019-02-02T00:00:00"),
        ];
        let app = [
            p("custom3", "value3"),
            p("custom1", "value1"),
            p("custom2", "value2"),
        ];
        assert_eq!(
            encode(&system, &app),
            "%24.on=output&%24.mid=1234&%24.cid=5678&%24.uid=userid&%24.ct=type&%24.ce=utf-8&%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1&%24.exp=2019-02-02T00%3A00%3A00&custom1=value1&custom2=value2&custom3=value3"
        );
    }

    #[test]
    fn ability_properties_and_decoding() {
        let app = [
            p("msgType", "action"),
            p("action", "model.create"),
            p("version", "2"),
            p("target", "a/b c"),
        ];
        assert_eq!(
            encode(&[], &app),
            "action=model.create&msgType=action&target=a%2Fb%20c&version=2"
        );
        let got =
            decode("%24.ct=application%2Fjson&type=abb.ability.device%401&a+b=c+d&flag&empty=")
                .unwrap();
        assert_eq!(got[0], p("$.ct", "application/json"));
        assert_eq!(got[1], p("type", "abb.ability.device@1"));
        assert_eq!(got[2], p("a+b", "c+d"), "+ is not a space");
        assert_eq!(got[3], ("flag".to_owned(), None));
        assert_eq!(got[4], p("empty", ""));
        assert!(decode("a=%zz").is_err());
        assert!(decode("a=1&a=2").is_err());
        let odd = "é&=%/+ :@";
        assert_eq!(
            decode(&encode(&[], &[p("context", odd)])).unwrap()[0],
            p("context", odd)
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a topic carries, decoding it answers, and never panics.
        #[test]
        fn any_bag_decodes_or_says_why(bag in "\\PC{0,200}") {
            let _ = decode(&bag);
        }

        /// Whatever the properties, they come back as they were sent (in
        /// any order: a bag's order means nothing).
        #[test]
        fn properties_round_trip(
            app in proptest::collection::btree_map("[a-zA-Z][\\PC]{0,12}", proptest::option::of("\\PC{0,24}"), 0..6)
        ) {
            let app: Vec<Property> = app.into_iter().collect();
            let bag = encode(&[], &app);
            let mut back = decode(&bag).expect("a bag dmconf wrote decodes");
            back.sort();
            prop_assert_eq!(back, app);
        }
    }
}
