use serde::{Deserialize, Serialize};

/// The body of the `open` packet that starts every session:
/// `0{"sid":"…","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` over polling,
    /// `[]` once on websocket).
    pub upgrades: Vec<String>,
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// Largest payload in bytes the server accepts (maxHttpBufferSize).
    pub max_payload: u64,
}

impl Handshake {
    /// The JSON text of the handshake, as carried by the open packet.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::Packet;

    #[test]
    fn spec_open_packet() {
        let hs = Handshake {
            sid: "lv_VI97HAXpY6yYWAAAC".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        };
        let wire = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(Packet::Open(hs.to_json().into()).to_text(), wire);
        let Ok(Packet::Open(json)) = Packet::decode(wire) else {
            panic!("not an open packet")
        };
        assert_eq!(serde_json::from_str::<Handshake>(&json).ok(), Some(hs));
    }
}
