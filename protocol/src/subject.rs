//! NATS subject names of the bus contract (DESIGN.md §4).
//!
//! Namespace, event and room names are arbitrary strings; they become one
//! subject token each through [`escape`], which is reversible and keeps
//! plain names readable: ASCII letters, digits and `-_/:@` stay as they
//! are, every other byte becomes `~XX` (upper-case hex), and the empty
//! string is a lone `~`. No token can then hold `.`, `*`, `>` or
//! whitespace, so wildcards match exactly one name.

use std::fmt::Write as _;

use crate::id::GatewayId;

/// Why a subject or token could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("prefix {0:?} is not a valid subject prefix")]
    InvalidPrefix(String),
    #[error("token {0:?} is not a canonical escaped name")]
    InvalidToken(String),
    #[error("subject {0:?} is not part of the bus contract")]
    Unknown(String),
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b':' | b'@')
}

/// Appends `name` as one subject token.
pub fn escape(name: &str, out: &mut String) {
    if name.is_empty() {
        out.push('~');
        return;
    }
    for b in name.bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "~{b:02X}");
        }
    }
}

/// The name a token stands for. Rejects tokens [`escape`] would not
/// produce, so each name has exactly one token.
pub fn unescape(token: &str) -> Result<String, SubjectError> {
    let invalid = || SubjectError::InvalidToken(token.to_owned());
    if token == "~" {
        return Ok(String::new());
    }
    if token.is_empty() {
        return Err(invalid());
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if is_plain(b) {
            bytes.push(b);
            continue;
        }
        let (b'~', [hi, lo, tail @ ..]) = (b, rest) else {
            return Err(invalid());
        };
        let hex = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let byte = hex(*hi).zip(hex(*lo)).map(|(h, l)| h << 4 | l);
        match byte {
            Some(byte) if !is_plain(byte) => bytes.push(byte),
            _ => return Err(invalid()),
        }
        rest = tail;
    }
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// A parsed subject of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Connect { ns: String },
    Event { ns: String, event: String },
    Disconnect { ns: String },
    Room { ns: String, room: String },
    Namespace { ns: String },
    Gateway(GatewayId),
    Emits(GatewayId),
    Control,
    Heartbeat,
}

/// Builds and parses the subjects under one prefix (`sio` by default), so
/// several applications can share a NATS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Subjects {
    pub const DEFAULT_PREFIX: &'static str = "sio";

    /// `prefix` is one or more plain tokens joined by `.` (e.g. `app.sio`).
    pub fn new(prefix: &str) -> Result<Self, SubjectError> {
        let valid = prefix
            .split('.')
            .all(|t| !t.is_empty() && t.bytes().all(is_plain));
        if !valid {
            return Err(SubjectError::InvalidPrefix(prefix.to_owned()));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn build(&self, kind: &str, names: &[&str]) -> String {
        let len = names.iter().map(|n| n.len() + 1).sum::<usize>();
        let mut s = String::with_capacity(self.prefix.len() + kind.len() + len + 2);
        s.push_str(&self.prefix);
        s.push('.');
        s.push_str(kind);
        for name in names {
            s.push('.');
            escape(name, &mut s);
        }
        s
    }

    fn wildcard(&self, kind: &str, tail: &str) -> String {
        format!("{}.{kind}.{tail}", self.prefix)
    }

    /// `P.conn.<ns>`: connect requests for one namespace.
    pub fn connect(&self, ns: &str) -> String {
        self.build("conn", &[ns])
    }

    /// `P.ev.<ns>.<event>`: one kind of client event.
    pub fn event(&self, ns: &str, event: &str) -> String {
        self.build("ev", &[ns, event])
    }

    /// `P.ev.<ns>.*`: every event of one namespace.
    pub fn events(&self, ns: &str) -> String {
        let mut s = self.build("ev", &[ns]);
        s.push_str(".*");
        s
    }

    /// `P.disc.<ns>`: disconnects in one namespace.
    pub fn disconnect(&self, ns: &str) -> String {
        self.build("disc", &[ns])
    }

    /// `P.room.<ns>.<room>`: emits to one room.
    pub fn room(&self, ns: &str, room: &str) -> String {
        self.build("room", &[ns, room])
    }

    /// `P.ns.<ns>`: emits to a whole namespace.
    pub fn namespace(&self, ns: &str) -> String {
        self.build("ns", &[ns])
    }

    /// What a recovery may read back: every room, namespace and socket-id
    /// emit. Not `P.gw.*`: a stream there would stand in for a gateway
    /// that is gone, and requests to it would wait instead of failing at
    /// once.
    pub fn emits(&self) -> Vec<String> {
        vec![
            self.wildcard("room", ">"),
            self.wildcard("ns", ">"),
            self.wildcard("to", "*"),
        ]
    }

    /// The JetStream stream that keeps [`Subjects::emits`]:
    /// `<prefix>_emits`, a `.` of the prefix as `_`.
    pub fn emits_stream(&self) -> String {
        format!("{}_emits", self.prefix.replace('.', "_"))
    }

    /// What one gateway may have missed: every room and namespace emit,
    /// and the emits to its sockets by id.
    pub fn emits_for(&self, id: GatewayId) -> Vec<String> {
        vec![
            self.wildcard("room", ">"),
            self.wildcard("ns", ">"),
            self.emits_to(id),
        ]
    }

    /// `P.to.<gateway-id>`: emits for sockets of one gateway by id (a
    /// broadcast to socket ids, `socket.emit`): plain publishes, never
    /// requests, so JetStream may keep them.
    pub fn emits_to(&self, id: GatewayId) -> String {
        format!("{}.to.{id}", self.prefix)
    }

    /// What a gateway reads in one ordered loop: `P.gw.<id>` and
    /// `P.to.<id>` (see [`Subjects::serves`]).
    pub fn served(&self, id: GatewayId) -> String {
        format!("{}.*.{id}", self.prefix)
    }

    /// Whether a subject [`Subjects::served`] matched is a gateway's
    /// commands or emits (not, say, a namespace spelled like an id).
    pub fn serves(&self, subject: &str) -> bool {
        // Three tokens (the wildcard's), so `P.gw.<x>` or `P.to.<x>`.
        let rest = subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('.'));
        rest.is_some_and(|r| r.starts_with("gw.") || r.starts_with("to."))
    }

    /// `P.gw.<gateway-id>`: commands for one gateway.
    pub fn gateway(&self, id: GatewayId) -> String {
        format!("{}.gw.{id}", self.prefix)
    }

    /// `P.ctl`: cluster-wide operations.
    pub fn control(&self) -> String {
        format!("{}.ctl", self.prefix)
    }

    /// `P.hb`: gateway presence.
    pub fn heartbeat(&self) -> String {
        format!("{}.hb", self.prefix)
    }

    /// `P.conn.*`: connect requests of every namespace.
    pub fn all_connects(&self) -> String {
        self.wildcard("conn", "*")
    }

    /// `P.ev.*.*`: every client event.
    pub fn all_events(&self) -> String {
        self.wildcard("ev", "*.*")
    }

    /// `P.disc.*`: every disconnect.
    pub fn all_disconnects(&self) -> String {
        self.wildcard("disc", "*")
    }

    /// Parses a subject received from the bus.
    pub fn parse(&self, subject: &str) -> Result<Subject, SubjectError> {
        let unknown = || SubjectError::Unknown(subject.to_owned());
        let rest = subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(unknown)?;
        let tokens: Vec<&str> = rest.split('.').collect();
        Ok(match tokens.as_slice() {
            ["conn", ns] => Subject::Connect { ns: unescape(ns)? },
            ["ev", ns, event] => Subject::Event {
                ns: unescape(ns)?,
                event: unescape(event)?,
            },
            ["disc", ns] => Subject::Disconnect { ns: unescape(ns)? },
            ["room", ns, room] => Subject::Room {
                ns: unescape(ns)?,
                room: unescape(room)?,
            },
            ["ns", ns] => Subject::Namespace { ns: unescape(ns)? },
            ["gw", id] => Subject::Gateway(id.parse().map_err(|_| unknown())?),
            ["to", id] => Subject::Emits(id.parse().map_err(|_| unknown())?),
            ["ctl"] => Subject::Control,
            ["hb"] => Subject::Heartbeat,
            _ => return Err(unknown()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str) -> String {
        let mut s = String::new();
        escape(name, &mut s);
        s
    }

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(token("/"), "/");
        assert_eq!(token("/chat"), "/chat");
        assert_eq!(token("room-1_a:b@c"), "room-1_a:b@c");
    }

    #[test]
    fn unsafe_names_are_escaped() {
        assert_eq!(token(""), "~");
        assert_eq!(token("a.b"), "a~2Eb");
        assert_eq!(token("*"), "~2A");
        assert_eq!(token(">"), "~3E");
        assert_eq!(token("a b"), "a~20b");
        assert_eq!(token("~"), "~7E");
        assert_eq!(token("é"), "~C3~A9");
        assert_eq!(token("\t\n"), "~09~0A");
    }

    #[test]
    fn unescape_reverses_and_rejects_non_canonical() {
        for name in [
            "",
            "/",
            "a.b",
            "*",
            ">",
            " ",
            "~",
            "~7E",
            "日本語",
            "a~b.c*d>e f",
            "$SYS",
        ] {
            let t = token(name);
            assert!(!t.contains(['.', '*', '>', ' ']), "{t}");
            assert_eq!(unescape(&t).as_deref(), Ok(name), "{t}");
        }
        for bad in [
            "", "~~", "~7", "~7e", "~41", "a.b", "a b", "~C3", "~zz", "é",
        ] {
            assert!(unescape(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subjects_round_trip() {
        let s = Subjects::default();
        let gw = GatewayId::from_bytes([1; 8]);
        let cases = [
            (s.connect("/"), Subject::Connect { ns: "/".into() }),
            (
                s.event("/chat", "new message"),
                Subject::Event {
                    ns: "/chat".into(),
                    event: "new message".into(),
                },
            ),
            (s.disconnect("/"), Subject::Disconnect { ns: "/".into() }),
            (
                s.room("/", "a.b"),
                Subject::Room {
                    ns: "/".into(),
                    room: "a.b".into(),
                },
            ),
            (s.namespace(""), Subject::Namespace { ns: "".into() }),
            (s.gateway(gw), Subject::Gateway(gw)),
            (s.control(), Subject::Control),
            (s.heartbeat(), Subject::Heartbeat),
        ];
        for (subject, parsed) in cases {
            assert_eq!(s.parse(&subject), Ok(parsed), "{subject}");
        }
        assert_eq!(
            s.event("/chat", "new message"),
            "sio.ev./chat.new~20message"
        );
        assert_eq!(s.room("/", "a.b"), "sio.room./.a~2Eb");
        assert_eq!(s.gateway(gw), "sio.gw.AQEBAQEBAQE");
        assert_eq!(s.all_events(), "sio.ev.*.*");
        assert_eq!(s.events("/a.b"), "sio.ev./a~2Eb.*");
        assert_eq!(s.all_connects(), "sio.conn.*");
        assert_eq!(s.all_disconnects(), "sio.disc.*");
    }

    #[test]
    fn parse_rejects_foreign_subjects() {
        let s = Subjects::new("app.sio").unwrap();
        assert_eq!(s.connect("/"), "app.sio.conn./");
        for bad in [
            "sio.conn./",
            "app.sio",
            "app.sio.conn",
            "app.sio.ev./",
            "app.sio.x./",
            "app.sio.gw.nope",
            "app.sioconn./",
            "app.sio.conn.~zz",
        ] {
            assert!(s.parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "a..b", "a.*", "a b", ">"] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
    }
}
