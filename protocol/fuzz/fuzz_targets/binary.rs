#![no_main]
//! Reading packet data with attachments: any JSON and attachment count
//! gives a value or a typed error.

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sio_protocol::socketio::binary::from_parts;

fuzz_target!(|data: &[u8]| {
    let Some((count, json)) = data.split_first() else { return };
    let Ok(json) = std::str::from_utf8(json) else { return };
    let attachments: Vec<Bytes> = (0..count % 4).map(|i| Bytes::from(vec![i; 3])).collect();
    let _ = from_parts::<serde_json::Value>(json, &attachments);
    let _ = from_parts::<(String, Bytes, Option<Vec<Bytes>>)>(json, &attachments);
});
