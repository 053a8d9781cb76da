#![no_main]
//! The incremental decoder fed a sequence of text and binary messages:
//! chunks separated by 0xff, the first byte of each choosing its kind.

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sio_protocol::socketio::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(8);
    for chunk in data.split(|b| *b == 0xff) {
        let Some((kind, body)) = chunk.split_first() else { continue };
        let result = if kind % 2 == 0 {
            match std::str::from_utf8(body) {
                Ok(text) => decoder.decode_text(text).map(|p| p.is_some()),
                Err(_) => continue,
            }
        } else {
            decoder.decode_binary(Bytes::copy_from_slice(body)).map(|p| p.is_some())
        };
        if result.is_err() {
            // A connection is closed on the first error.
            return;
        }
    }
});
