#![no_main]
//! Socket.IO packet headers: decoding never panics, and a decoded packet
//! encodes to text that decodes to the same packet.

use libfuzzer_sys::fuzz_target;
use sio_protocol::socketio::Packet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok((packet, expected)) = Packet::decode_header(text, 64) {
        let again = packet.to_text();
        let (decoded, expected_again) = Packet::decode_header(&again, 64).expect("re-encoded packet decodes");
        assert_eq!(decoded, packet);
        assert_eq!(expected_again, expected);
    }
});
