#![no_main]
//! Engine.IO packets: decoding never panics and re-encodes to itself.

use libfuzzer_sys::fuzz_target;
use sio_protocol::engineio::Packet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(packet) = Packet::decode(text) {
        let again = packet.to_text();
        assert_eq!(Packet::decode(&again).as_ref(), Ok(&packet));
    }
});
