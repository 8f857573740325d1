//! A YAML document read into JSON values, with the line and column of every
//! node kept in a side table keyed by JSON pointer. The table is what lets a
//! schema violation found on the JSON value point back into the YAML text.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// A YAML node with its position; children carry their own.
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(Spanned<String>, Spanned<Node>)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            if entries.iter().any(|(k, _)| k.value == key.value) {
                return Err(de::Error::custom(format!("duplicate key `{}`", key.value)));
            }
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A parsed YAML document: its JSON value and the position of each node.
pub struct Tree {
    /// The document as JSON.
    pub value: Value,
    positions: HashMap<String, (u32, u32)>,
    keys: HashMap<String, (u32, u32)>,
}

impl Tree {
    /// The 1-based line and column of the node at `pointer`, or of its
    /// nearest ancestor that has one.
    pub fn position(&self, pointer: &str) -> (u32, u32) {
        let mut p = pointer.to_owned();
        loop {
            if let Some(pos) = self.positions.get(&p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p.truncate(i),
                None => return (1, 1),
            }
        }
    }

    /// The position of the key of the node at `pointer`, falling back to
    /// the node's own position.
    pub fn key_position(&self, pointer: &str) -> (u32, u32) {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.position(pointer))
    }
}

/// A YAML syntax error with its position.
pub struct SyntaxError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What went wrong.
    pub message: String,
}

/// Reads YAML text into a [`Tree`].
pub fn read(text: &str) -> Result<Tree, SyntaxError> {
    let root: Spanned<Node> = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as u32, l.column() as u32))
            .unwrap_or((1, 1));
        let message = e.to_string();
        let message = message.lines().next().unwrap_or("invalid YAML").to_owned();
        SyntaxError {
            line,
            column,
            message,
        }
    })?;
    let mut positions = HashMap::new();
    let mut keys = HashMap::new();
    let value = convert(root, String::new(), &mut positions, &mut keys);
    Ok(Tree {
        value,
        positions,
        keys,
    })
}

type Positions = HashMap<String, (u32, u32)>;

fn convert(
    node: Spanned<Node>,
    pointer: String,
    positions: &mut Positions,
    keys: &mut Positions,
) -> Value {
    let loc = node.referenced;
    positions.insert(pointer.clone(), (loc.line() as u32, loc.column() as u32));
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::from(i),
        Node::UInt(u) => Value::from(u),
        Node::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, format!("{pointer}/{i}"), positions, keys))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let child = format!(
                    "{pointer}/{}",
                    k.value.replace('~', "~0").replace('/', "~1")
                );
                keys.insert(
                    child.clone(),
                    (k.referenced.line() as u32, k.referenced.column() as u32),
                );
                let value = convert(v, child, positions, keys);
                map.insert(k.value, value);
            }
            Value::Object(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_yaml_text() {
        let tree = read("a: 1\nb:\n  - x\n  - y: 2\n").ok().unwrap();
        assert_eq!(tree.value["b"][1]["y"], 2);
        assert_eq!(tree.position("/b/1/y"), (4, 8));
        assert_eq!(tree.position("/b/0"), (3, 5));
        assert_eq!(tree.position("/b/1/missing"), tree.position("/b/1"));
        assert_eq!(tree.key_position("/b/1/y"), (4, 5));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let Err(e) = read("a: [1, 2\nb: 3\n") else {
            panic!("should fail")
        };
        assert!(e.line >= 1 && !e.message.is_empty());
    }
}
