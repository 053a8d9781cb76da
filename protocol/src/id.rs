//! Identifiers that route: gateway ids, Engine.IO sids, Socket.IO socket
//! ids and recovery pids.
//!
//! A sid, socket id or pid is 8 bytes of gateway id followed by 16 random bytes
//! (128 bits, unguessable), written as 32 characters of unpadded base64url.
//! Whoever holds one can address the owning gateway on `P.gw.<gateway-id>`
//! without a lookup. Gateway ids are 11 base64url characters, which are
//! valid subject tokens as they are.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// An id string that is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed identifier")]
pub struct InvalidId;

/// The operating system's random source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no randomness available from the operating system")]
pub struct NoRandomness;

fn random<const N: usize>() -> Result<[u8; N], NoRandomness> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).map_err(|_| NoRandomness)?;
    Ok(bytes)
}

pub(crate) fn decode<const N: usize>(s: &str) -> Result<[u8; N], InvalidId> {
    let mut out = [0; N];
    // Exact length first: base64 of N bytes without padding.
    if s.len() != (N * 4).div_ceil(3) {
        return Err(InvalidId);
    }
    match B64.decode_slice(s, &mut out) {
        Ok(n) if n == N => Ok(out),
        _ => Err(InvalidId),
    }
}

/// A gateway's identity for one run, random at start.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GatewayId([u8; 8]);

impl GatewayId {
    pub fn random() -> Result<Self, NoRandomness> {
        random().map(Self)
    }

    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

macro_rules! routed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name([u8; 24]);

        impl $name {
            /// A fresh id owned by `gateway`.
            pub fn random(gateway: GatewayId) -> Result<Self, NoRandomness> {
                random::<16>().map(|r| Self::from_parts(gateway, r))
            }

            /// An id from its gateway and its 16 random bytes.
            pub fn from_parts(gateway: GatewayId, random: [u8; 16]) -> Self {
                let mut bytes = [0; 24];
                let (g, r) = bytes.split_at_mut(8);
                g.copy_from_slice(&gateway.0);
                r.copy_from_slice(&random);
                Self(bytes)
            }

            /// The gateway that owns this id.
            pub fn gateway(&self) -> GatewayId {
                let mut g = [0; 8];
                g.copy_from_slice(self.0.split_at(8).0);
                GatewayId(g)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, InvalidId> {
                decode(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&B64.encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

routed_id!(
    /// An Engine.IO session id: one per client connection.
    Sid
);
routed_id!(
    /// A Socket.IO socket id: one per namespace a client joined. Every
    /// socket is also in the room named by its id.
    SocketId
);
routed_id!(
    /// A socket's private id for connection state recovery: whoever shows
    /// it may take the socket's state over, so it is unguessable and only
    /// ever sent to the socket's client; it names the gateway that keeps
    /// the socket, which a client back at another gateway is recovered
    /// from.
    Pid
);

impl FromStr for GatewayId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, InvalidId> {
        decode(s).map(Self)
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl fmt::Debug for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatewayId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_embed_their_gateway() {
        let gw = GatewayId::random().unwrap();
        let sid = Sid::random(gw).unwrap();
        let text = sid.to_string();
        assert_eq!(text.len(), 32);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let parsed: Sid = text.parse().unwrap();
        assert_eq!(parsed, sid);
        assert_eq!(parsed.gateway(), gw);
        let socket = SocketId::random(gw).unwrap();
        assert_ne!(socket.to_string(), text);
        assert_eq!(
            socket.to_string().parse::<SocketId>().unwrap().gateway(),
            gw
        );
        assert_eq!(gw.to_string().len(), 11);
        assert_eq!(gw.to_string().parse::<GatewayId>(), Ok(gw));
    }

    #[test]
    fn fixed_parts() {
        let gw = GatewayId::from_bytes([0; 8]);
        let sid = Sid::from_parts(gw, [0xff; 16]);
        assert_eq!(sid.to_string(), "AAAAAAAAAAD_____________________");
        assert_eq!(gw.to_string(), "AAAAAAAAAAA");
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "short",
            "AAAAAAAAAAD____________________",   // 31
            "AAAAAAAAAAD______________________", // 33
            "AAAAAAAAAAD____________________=",  // padding
            "AAAAAAAAAAD___________________+/",  // standard alphabet
            "AAAAAAAAAAD____________________é",
        ] {
            assert_eq!(bad.parse::<Sid>(), Err(InvalidId), "{bad:?}");
        }
        assert_eq!("AAAAAAAAAA".parse::<GatewayId>(), Err(InvalidId));
    }

    #[test]
    fn randomness_differs() {
        let gw = GatewayId::random().unwrap();
        assert_ne!(Sid::random(gw).unwrap(), Sid::random(gw).unwrap());
    }
}
