use std::fmt;

/// Why an Engine.IO packet or payload could not be decoded.
///
/// Every variant is a client fault: the gateway answers it with a
/// "parse error" close of that session (or HTTP 400 on a polling POST).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    #[error("payload is not valid UTF-8")]
    InvalidUtf8,
    #[error("payload holds more than {0} packets")]
    TooManyPackets(usize),
}

/// The request-level errors of the Engine.IO HTTP handshake and polling
/// endpoints, answered as `{"code":N,"message":"…"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    TransportUnknown = 0,
    SessionIdUnknown = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [Self; 6] = [
        Self::TransportUnknown,
        Self::SessionIdUnknown,
        Self::BadHandshakeMethod,
        Self::BadRequest,
        Self::Forbidden,
        Self::UnsupportedProtocolVersion,
    ];

    /// The numeric code on the wire.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The message the reference server sends with the code.
    pub const fn message(self) -> &'static str {
        match self {
            Self::TransportUnknown => "Transport unknown",
            Self::SessionIdUnknown => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::Forbidden => "Forbidden",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// HTTP status: 403 for `Forbidden`, 400 for everything else.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::Forbidden => 403,
            _ => 400,
        }
    }

    /// The JSON response body, e.g. `{"code":1,"message":"Session ID unknown"}`.
    pub fn body(self) -> String {
        format!(
            r#"{{"code":{},"message":"{}"}}"#,
            self.code(),
            self.message()
        )
    }

    /// Parses the numeric code back (for clients and tests).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_reference_server() {
        let bodies: Vec<_> = ErrorCode::ALL.iter().map(|c| c.body()).collect();
        assert_eq!(
            bodies,
            [
                r#"{"code":0,"message":"Transport unknown"}"#,
                r#"{"code":1,"message":"Session ID unknown"}"#,
                r#"{"code":2,"message":"Bad handshake method"}"#,
                r#"{"code":3,"message":"Bad request"}"#,
                r#"{"code":4,"message":"Forbidden"}"#,
                r#"{"code":5,"message":"Unsupported protocol version"}"#,
            ]
        );
    }

    #[test]
    fn statuses_and_codes() {
        for c in ErrorCode::ALL {
            let expected = if c == ErrorCode::Forbidden { 403 } else { 400 };
            assert_eq!(c.http_status(), expected);
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
        }
        assert_eq!(ErrorCode::from_code(6), None);
    }
}
