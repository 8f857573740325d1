//! AMQP 0-9-1 on lapin: connect, declare, consume and publish
//! [`Message`]s. The only module that imports lapin.
//!
//! String headers go out as long strings: RabbitMQ closes the connection
//! on short-string header values.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

use super::TransportError;
use crate::message::Message;

type Result<T> = std::result::Result<T, TransportError>;

/// Bound on every broker operation: generous, for a RabbitMQ that shares
/// two cores with a few dozen test processes (under nextest, opening a
/// channel was seen to take more than 10 s); a case's own deadline still
/// bounds the case.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest AMQP frame the harness's connections ask for: the AMQP
/// minimum's double, well above any DMF message's headers; bodies span
/// frames.
pub const FRAME_MAX: u32 = 16_384;

/// `url` with `frame_max` set to [`FRAME_MAX`] unless it sets one.
fn with_frame_max(url: &str) -> String {
    if url.contains("frame_max=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}frame_max={FRAME_MAX}")
}

/// How a queue is declared.
#[derive(Clone, Debug, Default)]
pub struct QueueSpec {
    /// Survives a broker restart.
    pub durable: bool,
    /// Owned by this connection.
    pub exclusive: bool,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// `x-dead-letter-exchange`.
    pub dead_letter_exchange: Option<String>,
    /// `x-message-ttl` in milliseconds.
    pub message_ttl: Option<i64>,
    /// `x-max-length`, the oldest dropped past it (`x-overflow`
    /// `drop-head`).
    pub max_length: Option<i64>,
}

/// One AMQP connection with a publishing channel (publisher confirms on).
pub struct AmqpClient {
    conn: Connection,
    channel: Mutex<Channel>,
}

async fn bounded<T>(what: &str, f: impl Future<Output = lapin::Result<T>>) -> Result<T> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(what, &e)),
        Err(_) => Err(TransportError::Unavailable(format!(
            "{what}: no answer from the broker within {OP_TIMEOUT:?}"
        ))),
    }
}

/// A refusal by the broker (a channel closed with a reply code: the
/// object is missing, access is denied, or it exists with other
/// settings), or trouble reaching it.
fn classify(what: &str, e: &lapin::Error) -> TransportError {
    let text = format!("{what}: {e}");
    let refused = [
        "NOT_FOUND",
        "ACCESS_REFUSED",
        "PRECONDITION_FAILED",
        "RESOURCE_LOCKED",
        "lookup address",
        "Name or service not known",
    ]
    .iter()
    .any(|code| text.contains(code));
    if refused {
        TransportError::Refused(text)
    } else {
        TransportError::Unavailable(text)
    }
}

impl AmqpClient {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost`).
    ///
    /// Unless the URL says otherwise, frames are at most [`FRAME_MAX`]
    /// bytes: lapin keeps buffers of a few dozen frames per connection,
    /// and a run holds a hundred connections and more.
    pub async fn connect(url: &str) -> Result<Self> {
        let url = with_frame_max(url);
        let conn = bounded(
            "connect",
            Connection::connect(&url, ConnectionProperties::default()),
        )
        .await?;
        let channel = Self::open_channel(&conn).await?;
        Ok(AmqpClient {
            conn,
            channel: Mutex::new(channel),
        })
    }

    async fn open_channel(conn: &Connection) -> Result<Channel> {
        let channel = bounded("open channel", conn.create_channel()).await?;
        bounded(
            "confirm.select",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        Ok(channel)
    }

    async fn channel(&self) -> Result<Channel> {
        let mut guard = self.channel.lock().await;
        if !guard.status().connected() {
            *guard = Self::open_channel(&self.conn).await?;
        }
        Ok(guard.clone())
    }

    /// Declares a fanout exchange.
    pub async fn declare_fanout(&self, name: &str, durable: bool, auto_delete: bool) -> Result<()> {
        self.declare_exchange(name, "fanout", durable, auto_delete)
            .await
    }

    /// Declares an exchange of `kind` (`fanout`, `topic`, `direct`, ...).
    pub async fn declare_exchange(
        &self,
        name: &str,
        kind: &str,
        durable: bool,
        auto_delete: bool,
    ) -> Result<()> {
        let ch = self.channel().await?;
        let opts = ExchangeDeclareOptions {
            durable,
            auto_delete,
            ..Default::default()
        };
        bounded(
            &format!("declare exchange {name}"),
            ch.exchange_declare(
                name.into(),
                exchange_kind(kind),
                opts,
                FieldTable::default(),
            ),
        )
        .await
    }

    /// Whether the existing exchange `name` is of `kind` and durability
    /// `durable`: a redeclaration with those settings succeeds only if
    /// they are the exchange's own (RabbitMQ answers PRECONDITION_FAILED
    /// otherwise). Call it only for an exchange known to exist, or it
    /// would create one.
    pub async fn exchange_is(&self, name: &str, kind: &str, durable: bool) -> Result<()> {
        let opts = ExchangeDeclareOptions {
            durable,
            ..Default::default()
        };
        self.probe_exchange(name, exchange_kind(kind), opts)
            .await?
            .map_err(|e| {
                TransportError::Refused(format!(
                    "the broker refused to see `{name}` as a {} {kind} exchange: {e}",
                    if durable { "durable" } else { "transient" }
                ))
            })
    }

    /// Declares an exchange on a channel of its own, since a refused
    /// declaration closes its channel; the broker's answer, or `Err` when
    /// none comes.
    async fn probe_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        opts: ExchangeDeclareOptions,
    ) -> Result<lapin::Result<()>> {
        let ch = bounded("open channel", self.conn.create_channel()).await?;
        let declare = ch.exchange_declare(name.into(), kind, opts, FieldTable::default());
        let res = tokio::time::timeout(OP_TIMEOUT, declare)
            .await
            .map_err(|_| {
                TransportError::Unavailable(format!(
                    "declare of `{name}`: no answer within {OP_TIMEOUT:?}"
                ))
            })?;
        if res.is_ok() {
            let _ = ch.close(200, "done".into()).await;
        }
        Ok(res)
    }

    /// Deletes an exchange; best effort, for cleaning up.
    pub async fn delete_exchange(&self, name: &str) {
        if let Ok(ch) = self.channel().await {
            let del = ch.exchange_delete(name.into(), ExchangeDeleteOptions::default());
            let _ = tokio::time::timeout(OP_TIMEOUT, del).await;
        }
    }

    /// Deletes a queue; best effort, for cleaning up.
    pub async fn delete_queue(&self, name: &str) {
        if let Ok(ch) = self.channel().await {
            let del = ch.queue_delete(name.into(), QueueDeleteOptions::default());
            let _ = tokio::time::timeout(OP_TIMEOUT, del).await;
        }
    }

    /// Declares a queue; an empty name lets the broker choose one. Returns
    /// the queue's name.
    pub async fn declare_queue(&self, name: &str, spec: &QueueSpec) -> Result<String> {
        let ch = self.channel().await?;
        let mut args = FieldTable::default();
        if let Some(dlx) = &spec.dead_letter_exchange {
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(dlx.as_str().into()),
            );
        }
        if let Some(ttl) = spec.message_ttl {
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        }
        if let Some(n) = spec.max_length {
            args.insert("x-max-length".into(), AMQPValue::LongLongInt(n));
            args.insert(
                "x-overflow".into(),
                AMQPValue::LongString("drop-head".into()),
            );
        }
        let opts = QueueDeclareOptions {
            durable: spec.durable,
            exclusive: spec.exclusive,
            auto_delete: spec.auto_delete,
            ..Default::default()
        };
        let q = bounded(
            &format!("declare queue {name}"),
            ch.queue_declare(name.into(), opts, args),
        )
        .await?;
        Ok(q.name().as_str().to_owned())
    }

    /// Binds a queue to an exchange with routing key "".
    pub async fn bind(&self, queue: &str, exchange: &str) -> Result<()> {
        self.bind_key(queue, exchange, "").await
    }

    /// Binds `queue` to `exchange` under the routing key `key`.
    pub async fn bind_key(&self, queue: &str, exchange: &str, key: &str) -> Result<()> {
        let ch = self.channel().await?;
        bounded(
            &format!("bind {queue} to {exchange}"),
            ch.queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
    }

    /// Consumes a queue (automatic acknowledgement); messages arrive on the
    /// returned receiver until the connection closes.
    pub async fn consume(&self, queue: &str) -> Result<mpsc::UnboundedReceiver<Message>> {
        let opts = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        self.deliveries(queue, opts, None, |m, _| m).await
    }

    /// Consumes a queue with manual acknowledgement: each message comes
    /// with a [`Delivery`] that accepts or rejects it. At most `prefetch`
    /// messages are unacknowledged at once.
    pub async fn consume_manual(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<mpsc::UnboundedReceiver<(Message, Delivery)>> {
        let opts = BasicConsumeOptions::default();
        self.deliveries(queue, opts, Some(prefetch), |m, a| (m, Delivery(a)))
            .await
    }

    /// Consumes `queue` on a channel of its own and hands each message,
    /// as `wrap` makes it, to the returned receiver.
    async fn deliveries<T: Send + 'static>(
        &self,
        queue: &str,
        opts: BasicConsumeOptions,
        prefetch: Option<u16>,
        wrap: fn(Message, Acker) -> T,
    ) -> Result<mpsc::UnboundedReceiver<T>> {
        let ch = bounded("open channel", self.conn.create_channel()).await?;
        if let Some(n) = prefetch {
            bounded(
                "basic.qos",
                ch.basic_qos(n, lapin::options::BasicQosOptions::default()),
            )
            .await?;
        }
        let mut consumer = bounded(
            &format!("consume {queue}"),
            ch.basic_consume(queue.into(), "".into(), opts, FieldTable::default()),
        )
        .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let _channel = ch;
            while let Some(Ok(delivery)) = consumer.next().await {
                let msg = decode(
                    delivery.exchange.as_str(),
                    &delivery.properties,
                    delivery.data,
                );
                if tx.send(wrap(msg, delivery.acker)).is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }

    /// Publishes `msg` to the exchange `msg.channel`, routing key "", and
    /// waits for the broker's confirm. Publishing to an exchange that does
    /// not exist fails here.
    pub async fn publish(&self, msg: &Message) -> Result<()> {
        let ch = self.channel().await?;
        let props = encode_properties(msg);
        let what = format!("publish to exchange `{}`", msg.channel);
        let confirm = bounded(
            &what,
            ch.basic_publish(
                msg.channel.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                &msg.body,
                props,
            ),
        )
        .await?;
        let outcome = bounded(&what, confirm).await?;
        if outcome.is_nack() {
            return Err(TransportError::Refused(format!(
                "{what}: the broker refused the message"
            )));
        }
        if !ch.status().connected() {
            return Err(TransportError::Refused(format!(
                "{what}: the broker closed the channel (does the exchange exist?)"
            )));
        }
        Ok(())
    }

    /// Whether an exchange exists (a passive declare).
    pub async fn exchange_exists(&self, name: &str) -> Result<bool> {
        let opts = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match self
            .probe_exchange(name, ExchangeKind::Fanout, opts)
            .await?
        {
            Ok(()) => Ok(true),
            Err(e) if e.to_string().contains("NOT_FOUND") || e.to_string().contains("404") => {
                Ok(false)
            }
            Err(e) => Err(classify(&format!("passive declare of `{name}`"), &e)),
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(OP_TIMEOUT, self.conn.close(200, "bye".into())).await;
    }
}

/// The answer still owed to the broker for one delivery.
pub struct Delivery(Acker);

impl Delivery {
    /// Acknowledges the message: it is consumed.
    pub async fn accept(self) {
        let _ = tokio::time::timeout(OP_TIMEOUT, self.0.ack(BasicAckOptions::default())).await;
    }

    /// Rejects the message without requeueing it: the broker dead-letters
    /// it when its queue has a dead-letter exchange.
    pub async fn reject(self) {
        self.reject_with(false).await;
    }

    /// Rejects the message and puts it back in its queue: the broker
    /// delivers it again.
    pub async fn requeue(self) {
        self.reject_with(true).await;
    }

    async fn reject_with(self, requeue: bool) {
        let opts = BasicRejectOptions { requeue };
        let _ = tokio::time::timeout(OP_TIMEOUT, self.0.reject(opts)).await;
    }
}

fn exchange_kind(kind: &str) -> ExchangeKind {
    match kind {
        "fanout" => ExchangeKind::Fanout,
        "direct" => ExchangeKind::Direct,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_owned()),
    }
}

fn encode_properties(msg: &Message) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in &msg.headers {
        headers.insert(k.as_str().into(), to_amqp(v));
    }
    let mut props = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(2);
    let text = |k: &str| msg.property(k).map(ShortString::from);
    if let Some(v) = text("content_type") {
        props = props.with_content_type(v);
    }
    if let Some(v) = text("content_encoding") {
        props = props.with_content_encoding(v);
    }
    if let Some(v) = text("reply_to") {
        props = props.with_reply_to(v);
    }
    if let Some(v) = text("correlation_id") {
        props = props.with_correlation_id(v);
    }
    if let Some(v) = text("message_id") {
        props = props.with_message_id(v);
    }
    if let Some(v) = text("type") {
        props = props.with_type(v);
    }
    if let Some(v) = text("app_id") {
        props = props.with_app_id(v);
    }
    props
}

fn to_amqp(v: &Value) -> AMQPValue {
    match v {
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) if n.is_i64() => AMQPValue::LongLongInt(n.as_i64().unwrap_or_default()),
        Value::Number(n) => AMQPValue::Double(n.as_f64().unwrap_or_default()),
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        // A header present with no value, as Java clients send a null.
        Value::Null => AMQPValue::Void,
        other => AMQPValue::LongString(LongString::from(other.to_string())),
    }
}

fn from_amqp(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => Value::from(*i),
        AMQPValue::ShortShortUInt(i) => Value::from(*i),
        AMQPValue::ShortInt(i) => Value::from(*i),
        AMQPValue::ShortUInt(i) => Value::from(*i),
        AMQPValue::LongInt(i) => Value::from(*i),
        AMQPValue::LongUInt(i) => Value::from(*i),
        AMQPValue::LongLongInt(i) => Value::from(*i),
        AMQPValue::Float(f) => Value::from(*f),
        AMQPValue::Double(f) => Value::from(*f),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::Void => Value::Null,
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(from_amqp).collect()),
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), from_amqp(v)))
                .collect(),
        ),
        AMQPValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b.as_slice()).into_owned())
        }
        AMQPValue::Timestamp(t) => Value::from(*t),
        other => Value::String(format!("{other:?}")),
    }
}

/// Turns a delivery's parts into a [`Message`].
fn decode(exchange: &str, props: &BasicProperties, body: Vec<u8>) -> Message {
    let mut headers = serde_json::Map::new();
    if let Some(table) = props.headers() {
        for (k, v) in table.inner() {
            headers.insert(k.as_str().to_owned(), from_amqp(v));
        }
    }
    let mut properties = serde_json::Map::new();
    let mut put = |k: &str, v: Option<&ShortString>| {
        if let Some(v) = v {
            properties.insert(k.to_owned(), Value::String(v.as_str().to_owned()));
        }
    };
    put("content_type", props.content_type().as_ref());
    put("content_encoding", props.content_encoding().as_ref());
    put("reply_to", props.reply_to().as_ref());
    put("correlation_id", props.correlation_id().as_ref());
    put("message_id", props.message_id().as_ref());
    put("type", props.kind().as_ref());
    put("app_id", props.app_id().as_ref());
    Message {
        channel: exchange.to_owned(),
        headers,
        properties,
        body,
        raw: false,
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Any AMQP field value, nested a few levels.
    fn value() -> impl Strategy<Value = AMQPValue> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<f64>().prop_map(AMQPValue::Double),
            any::<i8>().prop_map(AMQPValue::ShortShortInt),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| AMQPValue::LongString(LongString::from(b))),
            any::<u64>().prop_map(AMQPValue::Timestamp),
            Just(AMQPValue::Void),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| AMQPValue::FieldArray(v.into())),
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(|m| {
                    let mut t = FieldTable::default();
                    for (k, v) in m {
                        t.insert(k.as_str().into(), v);
                    }
                    AMQPValue::FieldTable(t)
                }),
            ]
        })
    }

    proptest! {
        /// Whatever a delivery carries, it becomes a message, and its view
        /// and correlation are read without a panic.
        #[test]
        fn any_delivery_becomes_a_message(
            headers in proptest::collection::btree_map("\\PC{1,10}", value(), 0..6),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut table = FieldTable::default();
            for (k, v) in headers {
                table.insert(k.as_str().into(), v);
            }
            let props = BasicProperties::default().with_headers(table);
            let msg = decode("x", &props, body);
            let (view, _) = msg.view();
            let _ = crate::protocol::Protocol::Dmf.correlation(&view);
            let _ = crate::protocol::Protocol::Dmf.schema_of(crate::suite::Role::Device, &view);
            let _ = msg.render("");
        }
    }
}
