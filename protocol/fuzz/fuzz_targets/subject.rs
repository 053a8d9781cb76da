#![no_main]
//! Subject tokens and subjects: parsing never panics; a token that
//! parses is the escape of what it parses to.

use libfuzzer_sys::fuzz_target;
use sio_protocol::subject::{Subjects, escape, unescape};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(name) = unescape(text) {
        let mut token = String::new();
        escape(&name, &mut token);
        assert_eq!(token, text);
    }
    let _ = Subjects::default().parse(text);
});
