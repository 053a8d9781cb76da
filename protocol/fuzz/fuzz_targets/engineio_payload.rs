#![no_main]
//! Polling payloads: any body decodes to packets or a typed error, and the
//! frames a server would send for those packets encode back to a body that
//! decodes to the same packets.

use libfuzzer_sys::fuzz_target;
use sio_protocol::engineio::{Frame, payload};

fuzz_target!(|data: &[u8]| {
    if let Ok(packets) = payload::decode(data, 64) {
        assert!(packets.len() <= 64);
        let frames: Vec<Frame> = packets.iter().map(Frame::packet).collect();
        let mut body = String::new();
        payload::encode(&frames, &mut body);
        assert_eq!(payload::decode(body.as_bytes(), 64).as_ref(), Ok(&packets));
    }
});
