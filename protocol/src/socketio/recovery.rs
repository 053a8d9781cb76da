//! Connection state recovery on the wire (socket.io ≥ 4.6): the private
//! id (`pid`) a CONNECT reply gives a socket, the offset appended as the
//! last argument of every event the socket may get again, and the two
//! fields a returning client merges into its CONNECT auth.
//!
//! The stock client keeps the last string argument of each event as its
//! offset and, when it reconnects, sends `{"pid": …, "offset": …}` merged
//! into its auth; [`Recovery::take`] splits them off again, so the auth the
//! application sees is its own.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::id::InvalidId;
pub use crate::id::Pid;

/// Where a client stands in what was emitted to it: the last emit it got,
/// by 64 bits of its id (unique enough within what one socket keeps, and
/// 11 characters on the wire where the whole id would take 22).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Offset(pub [u8; 8]);

impl FromStr for Offset {
    type Err = InvalidId;

    /// 11 characters of unpadded base64url.
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        crate::id::decode(s).map(Self)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl fmt::Debug for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offset({self})")
    }
}

/// What a returning client asks for: the socket `pid` names, from after
/// `offset` (`None`: it got no event with an offset yet, so everything
/// since the socket connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub pid: Pid,
    pub offset: Option<Offset>,
}

impl Recovery {
    /// Splits the recovery fields off a CONNECT packet's auth (JSON text):
    /// the request, if the auth named a well-formed pid, and the auth
    /// without them (`None` when nothing else was in it). An auth without
    /// a `pid` member comes back as it was.
    pub fn take(auth: Option<String>) -> (Option<Self>, Option<String>) {
        let Some(text) = auth else {
            return (None, None);
        };
        // Parsed only when the member may be there: most connects are new.
        if !text.contains("\"pid\"") {
            return (None, Some(text));
        }
        let Ok(mut object) =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
        else {
            return (None, Some(text));
        };
        let pid = object.remove("pid");
        let offset = object.remove("offset");
        fn token<T: FromStr>(v: Option<serde_json::Value>) -> Option<T> {
            v?.as_str()?.parse().ok()
        }
        let recovery = token(pid).map(|pid| Self {
            pid,
            offset: token(offset),
        });
        let rest = (!object.is_empty()).then(|| serde_json::Value::Object(object).to_string());
        (recovery, rest)
    }
}

/// `message` (an Engine.IO message: `4` and an EVENT or BINARY_EVENT
/// packet) with `offset` appended as its last argument; `None` for any
/// other packet and for an event with an ack id, which a client never
/// gets twice.
pub fn with_offset(message: &[u8], offset: &Offset) -> Option<Vec<u8>> {
    let rest = message.strip_prefix(b"4")?;
    let rest = match rest.split_first()? {
        (b'2', rest) => rest,
        (b'5', rest) => {
            let dash = rest.iter().position(|b| !b.is_ascii_digit())?;
            rest.get(dash..)?.strip_prefix(b"-")?
        }
        _ => return None,
    };
    let rest = match rest.first() {
        Some(b'/') => rest.get(rest.iter().position(|&b| b == b',')? + 1..)?,
        _ => rest,
    };
    // An ack id comes before the array; an event has at least its name.
    if rest.first() != Some(&b'[') || !rest.ends_with(b"]") || rest.ends_with(b"[]") {
        return None;
    }
    let body = message.get(..message.len() - 1)?;
    let mut out = Vec::with_capacity(message.len() + 15);
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(offset.to_string().as_bytes());
    out.extend_from_slice(b"\"]");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFSET: Offset = Offset([0xfb; 8]);

    fn appended(message: &str) -> Option<String> {
        with_offset(message.as_bytes(), &OFFSET).map(|m| String::from_utf8(m).unwrap_or_default())
    }

    #[test]
    fn offsets_go_last_in_events_without_acks() {
        let o = OFFSET.to_string();
        assert_eq!(o.len(), 11);
        assert_eq!(o.parse(), Ok(OFFSET));
        assert_eq!(
            appended("42[\"chat\",\"hi\"]"),
            Some(format!("42[\"chat\",\"hi\",\"{o}\"]"))
        );
        assert_eq!(
            appended("42/chat,[\"chat\"]"),
            Some(format!("42/chat,[\"chat\",\"{o}\"]"))
        );
        assert_eq!(
            appended("451-/up,[\"file\",{\"_placeholder\":true,\"num\":0}]"),
            Some(format!(
                "451-/up,[\"file\",{{\"_placeholder\":true,\"num\":0}},\"{o}\"]"
            ))
        );
        for other in [
            "421[\"ask\"]",
            "42/chat,7[\"ask\"]",
            "43[\"ack\"]",
            "40{\"sid\":\"x\"}",
            "41",
            "42[]",
            "2",
            "45[\"no dash\"]",
        ] {
            assert_eq!(appended(other), None, "{other}");
        }
    }

    #[test]
    fn recovery_fields_are_split_off_the_auth() {
        let pid = Pid::from_parts(crate::id::GatewayId::from_bytes([1; 8]), [7; 16]);
        let auth = format!("{{\"pid\":\"{pid}\",\"offset\":\"{OFFSET}\",\"token\":\"t\"}}");
        assert_eq!(
            Recovery::take(Some(auth)),
            (
                Some(Recovery {
                    pid,
                    offset: Some(OFFSET)
                }),
                Some("{\"token\":\"t\"}".to_owned())
            )
        );
        // Before its first event the client has no offset.
        let auth = format!("{{\"pid\":\"{pid}\"}}");
        assert_eq!(
            Recovery::take(Some(auth)),
            (Some(Recovery { pid, offset: None }), None)
        );
        // Not ours: a new connect, the fields still kept from the app.
        assert_eq!(
            Recovery::take(Some("{\"pid\":\"nope\",\"offset\":3}".into())),
            (None, None)
        );
        let plain = Some("{\"token\":\"t\"}".to_owned());
        assert_eq!(Recovery::take(plain.clone()), (None, plain));
        assert_eq!(Recovery::take(None), (None, None));
        let odd = Some("[\"pid\"]".to_owned());
        assert_eq!(Recovery::take(odd.clone()), (None, odd));
        assert_eq!("short".parse::<Offset>(), Err(InvalidId));
    }
}
