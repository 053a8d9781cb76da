//! Scenario 11, recover: a client that missed `missed` packets while its
//! connection was down comes back with connection state recovery on; the
//! time from opening its new connection to the last packet it missed.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{Bench, Row, source};
use crate::client::{Control, Ws, open_websocket};
use crate::server::Target;

const ROOM: &str = "recover";

impl Bench {
    pub(crate) async fn recover(&self, target: &Target, missed: u32) -> Result<Row, String> {
        let running = self.launcher.start(target)?;
        let server = running.addrs[0];
        let control = Control::connect(server).await?;
        let query = sio_tests::raw::packet::WEBSOCKET;
        let mut ws = open_websocket(server, source(1), query).await?;
        let auth = serde_json::json!({ "room": ROOM });
        let pid = join(&mut ws, &auth).await?;
        // One packet, so that the client has an offset.
        control.fanout(ROOM, 1, "x");
        let (_, offset) = next_event(&mut ws).await?;
        let offset = offset.ok_or("the event carried no offset")?;
        drop(ws);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stored = || {
            running
                .nats
                .as_ref()
                .map_or(0, sio_tests::NatsServer::store_bytes)
        };
        let before = stored();
        control.fanout(ROOM, missed, "x");
        // Emitted and kept by now (the fan-out of 1,000 takes milliseconds).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // What JetStream took for them (the stream of emits, on disk).
        let per_thousand = stored().saturating_sub(before) as f64 * 1000.0 / f64::from(missed);
        let started = Instant::now();
        let mut ws = open_websocket(server, source(2), query).await?;
        let auth = serde_json::json!({ "room": ROOM, "pid": pid, "offset": offset });
        let mut got = 0;
        let again = tokio::time::timeout(Duration::from_secs(20), async {
            let again = join_counting(&mut ws, &auth, &mut got).await?;
            while got < missed {
                next_event(&mut ws).await?;
                got += 1;
            }
            Ok::<_, String>(again)
        })
        .await
        .map_err(|_| format!("{got} of {missed} missed packets in 20 s"))??;
        let elapsed = started.elapsed();
        if again != pid {
            return Err("not recovered: another pid".into());
        }
        let mut row = self.row("recover", target, format!("{missed} missed"));
        row.metrics = vec![
            ("recover_ms".into(), elapsed.as_secs_f64() * 1e3),
            ("recovered_packets".into(), f64::from(got)),
            ("jetstream_bytes_per_1000_emits".into(), per_thousand),
        ];
        Ok(row)
    }
}

/// Opens the namespace with `auth`; the CONNECT reply's pid.
async fn join(ws: &mut Ws, auth: &serde_json::Value) -> Result<String, String> {
    let mut events = 0;
    let pid = join_counting(ws, auth, &mut events).await?;
    match events {
        0 => Ok(pid),
        n => Err(format!("{n} events before the CONNECT reply")),
    }
}

/// [`join`], counting the events that come before the reply (a server
/// may send what a recovered client missed first).
async fn join_counting(
    ws: &mut Ws,
    auth: &serde_json::Value,
    events: &mut u32,
) -> Result<String, String> {
    let mut asked = false;
    loop {
        let text = next_text(ws).await?;
        if text.starts_with('0') && !asked {
            asked = true;
            send(ws, format!("40{auth}")).await?;
        } else if let Some(reply) = text.strip_prefix("40") {
            let reply: serde_json::Value =
                serde_json::from_str(reply).map_err(|e| e.to_string())?;
            return reply["pid"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no pid in {reply}"));
        } else if text.starts_with("42") {
            *events += 1;
        }
    }
}

/// The next event's arguments' last string (its offset, with recovery).
async fn next_event(ws: &mut Ws) -> Result<(String, Option<String>), String> {
    loop {
        let text = next_text(ws).await?;
        if let Some(array) = text.strip_prefix("42") {
            let args: Vec<serde_json::Value> =
                serde_json::from_str(array).map_err(|e| e.to_string())?;
            let last = args.last().and_then(|v| v.as_str()).map(str::to_owned);
            return Ok((text, last));
        }
    }
}

/// The next text message, answering pings on the way.
async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.as_str() == "2" => send(ws, "3".into()).await?,
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(_)) => {}
            other => return Err(format!("connection ended: {other:?}")),
        }
    }
}

async fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| e.to_string())
}
