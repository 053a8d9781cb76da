//! Decodes Engine.IO polling payloads or websocket text frames given on the
//! command line (or one per line on stdin) and prints what they carry:
//!
//! ```text
//! cargo run -p sio-protocol --example inspect -- '42["chat",{"text":"hi"}]'
//! ```

use std::io::BufRead as _;

use sio_protocol::engineio::{self, Packet};
use sio_protocol::socketio::{Decoder, Kind};

fn inspect(wire: &str) {
    println!("{wire:?}");
    let packets = match engineio::payload::decode(wire.as_bytes(), 1024) {
        Ok(packets) => packets,
        Err(e) => return println!("  engine.io error: {e}"),
    };
    let mut decoder = Decoder::default();
    for packet in packets {
        let decoded = match &packet {
            Packet::Message(text) => decoder.decode_text(text).map(|p| p.map(|p| p.into_owned())),
            Packet::Binary(data) => decoder.decode_binary(data.to_vec().into()),
            other => {
                println!("  engine.io {other:?}");
                continue;
            }
        };
        match decoded {
            Ok(None) => println!("  socket.io binary header; waiting for attachments"),
            Ok(Some(p)) => {
                let what = match &p.kind {
                    Kind::Event(e) => {
                        format!("event {:?} data {} ack {:?}", e.name(), e.data(), e.id)
                    }
                    other => format!("{other:?}"),
                };
                println!("  socket.io {:?} nsp {:?}: {what}", p.packet_type(), p.nsp);
                for (i, a) in p.attachments().iter().enumerate() {
                    println!("    attachment {i}: {} bytes", a.len());
                }
            }
            Err(e) => println!("  socket.io error: {e}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            inspect(&line);
        }
    } else {
        args.iter().for_each(|a| inspect(a));
    }
}
