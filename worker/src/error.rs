/// What can go wrong in a worker or an emitter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus failed (NATS down, no reply in time, …).
    #[error("bus: {0}")]
    Bus(#[from] sio_bus::Error),
    /// A message on the bus could not be read or written.
    #[error("envelope: {0}")]
    Envelope(#[from] sio_protocol::envelope::Error),
    /// Arguments or data that do not (de)serialize as asked.
    #[error("data: {0}")]
    Data(#[from] sio_protocol::socketio::Error),
    /// Emit arguments must be a list: a tuple, a `Vec`, or `()`.
    #[error("arguments must serialize to a JSON array (use a tuple such as `(\"hi\",)`), got {0}")]
    NotAnArray(String),
    /// The socket left (or its gateway does not know it).
    #[error("the socket {0} is gone")]
    UnknownSocket(String),
    /// The client did not answer an emit-with-ack in time.
    #[error("the client did not acknowledge in time")]
    AckTimeout,
    /// A broadcast with acks: fewer clients answered than were asked.
    #[error("only {answered} of {expected} clients acknowledged in time")]
    PartialAcks {
        /// Clients that answered.
        answered: u64,
        /// Clients that were asked.
        expected: u64,
    },
    /// `ack` on an event whose client did not ask for one, or a second time.
    #[error("the client did not ask for an acknowledgement")]
    NoAck,
    /// A gateway answered with something else than asked.
    #[error("unexpected reply from the gateway")]
    UnexpectedReply,
    /// The subject prefix is not a valid NATS subject prefix.
    #[error("subject prefix: {0}")]
    Prefix(#[from] sio_protocol::subject::SubjectError),
    /// The system has no randomness for emit ids.
    #[error("no randomness available")]
    Random(#[from] sio_protocol::id::NoRandomness),
    /// A connect handler refused a client on a namespace the gateway does
    /// not ask about, so the client is in anyway: add the namespace to the
    /// gateway's `--authorize`.
    #[error(
        "connect refused ({0}) but the gateway does not ask about this namespace: add it to --authorize"
    )]
    RefusedUnasked(String),
    /// A handler returned an error of its own; it is the source.
    #[error("{0}")]
    Handler(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// A handler's error: this crate's own as it is, anything else as
    /// [`Error::Handler`].
    pub(crate) fn from_handler(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        match error.downcast::<Self>() {
            Ok(own) => *own,
            Err(other) => Self::Handler(other),
        }
    }
}
