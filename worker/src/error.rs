/// What can go wrong in a worker or an emitter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bus: {0}")]
    Bus(#[from] sio_bus::Error),
    #[error("envelope: {0}")]
    Envelope(#[from] sio_protocol::envelope::Error),
    /// Arguments or data that do not (de)serialize as asked.
    #[error("data: {0}")]
    Data(#[from] sio_protocol::socketio::Error),
    #[error("arguments must serialize to a JSON array (use a tuple such as `(\"hi\",)`), got {0}")]
    NotAnArray(String),
    #[error("the socket {0} is gone")]
    UnknownSocket(String),
    #[error("the client did not acknowledge in time")]
    AckTimeout,
    #[error("only {answered} of {expected} clients acknowledged in time")]
    PartialAcks { answered: u64, expected: u64 },
    #[error("the client did not ask for an acknowledgement")]
    NoAck,
    #[error("unexpected reply from the gateway")]
    UnexpectedReply,
    #[error("subject prefix: {0}")]
    Prefix(#[from] sio_protocol::subject::SubjectError),
    #[error("no randomness available")]
    Random(#[from] sio_protocol::id::NoRandomness),
}
