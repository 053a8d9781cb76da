#![no_main]
//! Polling payloads: any body decodes to packets or a typed error.

use libfuzzer_sys::fuzz_target;
use sio_protocol::engineio::payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(packets) = payload::decode(data, 64) {
        assert!(packets.len() <= 64);
    }
});
