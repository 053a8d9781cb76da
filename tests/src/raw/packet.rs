//! The Engine.IO v4 / Socket.IO v5 text a raw client sends and looks for:
//! the endpoint, the open handshake, ping and pong, the namespace connect.

#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;

/// The query of a new websocket session.
pub const WEBSOCKET: &str = "EIO=4&transport=websocket";

/// The query of a new polling session.
pub const POLLING: &str = "EIO=4&transport=polling";

/// The server's ping (a text packet).
pub const PING: &str = "2";

/// The client's answer to a ping.
pub const PONG: &str = "3";

/// Between the packets of a polling payload.
pub const SEPARATOR: &str = "\u{1e}";

/// The Engine.IO endpoint with a query.
pub fn engine(query: &str) -> String {
    format!("/socket.io/?{query}")
}

/// The websocket URL of the Engine.IO endpoint at `addr` with a query.
pub fn ws_url(addr: SocketAddr, query: &str) -> String {
    format!("ws://{addr}{}", engine(query))
}

/// The query of requests in polling session `sid`.
pub fn polling_query(sid: &str) -> String {
    format!("{POLLING}&sid={sid}")
}

/// The handshake JSON of an open packet (`0{"sid":…}`), if `text` is one.
pub fn open(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text.strip_prefix('0')?).ok()
}

/// The `sid` of a handshake.
pub fn sid(open: &serde_json::Value) -> Option<&str> {
    open.get("sid")?.as_str()
}

/// The namespace connect packet for `nsp` ("/" or "/name") with `auth`
/// JSON ("" for none): `40`, `40{"room":"r"}`, `40/chat,`.
pub fn connect(nsp: &str, auth: &str) -> String {
    match nsp {
        "/" => format!("40{auth}"),
        _ => format!("40{nsp},{auth}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets() {
        assert_eq!(connect("/", ""), "40");
        assert_eq!(connect("/", r#"{"room":"r"}"#), r#"40{"room":"r"}"#);
        assert_eq!(connect("/chat", ""), "40/chat,");
        let open = open(r#"0{"sid":"abc","pingInterval":300}"#);
        assert_eq!(open.as_ref().and_then(sid), Some("abc"));
        assert_eq!(super::open("40"), None);
        assert_eq!(polling_query("x"), "EIO=4&transport=polling&sid=x");
    }
}
