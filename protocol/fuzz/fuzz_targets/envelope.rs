#![no_main]
//! Every bus envelope: arbitrary bytes decode to a body or a typed error.

use libfuzzer_sys::fuzz_target;
use sio_protocol::envelope::*;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<Events<'_>>(data);
    let _ = decode_owned::<EventReply>(data);
    let _ = decode_owned::<ConnectRequest>(data);
    let _ = decode_owned::<ConnectReply>(data);
    let _ = decode_owned::<AckReply>(data);
    let _ = decode_owned::<Disconnect>(data);
    let _ = decode_owned::<Emit>(data);
    let _ = decode_owned::<Command>(data);
    let _ = decode_owned::<CommandReply>(data);
    let _ = decode_owned::<ControlRequest>(data);
    let _ = decode_owned::<ControlReply>(data);
    if let Ok(presence) = decode_owned::<Presence>(data) {
        assert_eq!(decode_owned::<Presence>(&encode(&presence).expect("encodes")).ok(), Some(presence));
    }
});
