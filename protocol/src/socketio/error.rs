/// Why a Socket.IO packet was rejected. Every variant is a client fault
/// that the gateway answers by closing that client's connection with the
/// "parse error" reason, as the reference server does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("illegal attachment count")]
    InvalidAttachmentCount,
    #[error("{count} attachments exceed the limit of {max}")]
    TooManyAttachments { count: usize, max: usize },
    #[error("ack id is not a 64-bit integer")]
    InvalidAckId,
    #[error("ack packet without an id")]
    MissingAckId,
    #[error("payload is not valid JSON")]
    InvalidJson,
    #[error("invalid payload for a {0:?} packet")]
    InvalidPayload(super::PacketType),
    #[error("placeholder refers to a missing attachment")]
    IllegalAttachment,
    #[error("binary data received while no binary packet was announced")]
    UnexpectedBinary,
    #[error("text packet received while attachments were expected")]
    UnexpectedText,
    /// A value could not be written as packet data (e.g. a map with
    /// non-string keys).
    #[error("cannot serialize packet data: {0}")]
    Serialize(String),
    /// Valid packet data that does not fit the requested type.
    #[error("packet data does not fit the expected type: {0}")]
    Deserialize(String),
}
