//! Building blocks for a SUT written in Rust, as the project's reference
//! implementations are: the neutral message, the two transports, and each
//! protocol's names and wire rules. A SUT built on them shares the
//! harness's reading of the protocol, so an independent implementation
//! should not: it is here for the references, whose faults are the
//! harness's proof that its cases can fail.

pub use crate::env::{
    AMQP_URL, ARTIFACT_CA, C2D_BYTES, D2C_BYTES, DEVICE_ID, DMF_EXCHANGE, DMF_RECEIVER_QUEUE,
    HEADER_BYTES, MQTT_CA, MQTT_URL, TENANT, THING_ID,
};
pub use crate::message::{Message, scalar_text};
pub use crate::transport::TransportError;
pub use crate::transport::amqp::{AmqpClient, Delivery, QueueSpec};
pub use crate::transport::mqtt::{Endpoint, Login, MqttClient, Received};

/// hawkBit DMF: broker objects, PING, an artifact's hashes.
pub mod dmf {
    pub use crate::message::sha256;
    pub use crate::protocol::dmf::artifacts::{md5_hex, sha1_hex};
    pub use crate::protocol::dmf::{
        ACTION_STATUSES, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, DEAD_LETTER_TTL_MS, DMF_EXCHANGE,
        RECEIVER_QUEUE, declare_topology, now_ms, ping_response,
    };
}

/// The Device API v2 over IoT Hub: topics, property bags, compression,
/// sizes and limits.
pub mod ability {
    pub use crate::protocol::ability::{
        ACK_LEVELS, ACTIONS, DEVICE_ID_PROPERTY, Decoded, ERROR_CODES, HEADER_LIMIT_DETAILS,
        HUB_NAME, Limits, PAD_BODY, PAD_HEADER, bag, compress, content_encoding, decompress,
        device_login, devicebound_topic, events_topic, fill, from_wire, header_size, iothub_size,
        split_topic, to_wire,
    };
}
