//! `sio-gateway`: the gateway binary.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("sio-gateway: the server is not built yet; see README.md for what runs today");
    ExitCode::FAILURE
}
