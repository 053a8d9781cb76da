#![no_main]
//! Socket.IO packets: decoding never panics, and a complete decoded packet
//! (attachments filled in) encodes to text that decodes to the same packet.

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sio_protocol::socketio::{Decoder, Packet};

fn complete(text: &str, expected: usize) -> Option<Packet<'static>> {
    let mut decoder = Decoder::new(64);
    let mut packet = decoder.decode_text(text).ok()?.map(Packet::into_owned);
    for i in 0..expected {
        packet = decoder.decode_binary(Bytes::from(vec![i as u8])).ok()?;
    }
    packet
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok((_, expected)) = Packet::decode_header(text, 64) {
        let packet = complete(text, expected).expect("a decodable header completes");
        let again = packet.to_text();
        assert_eq!(complete(&again, expected), Some(packet));
    }
});
