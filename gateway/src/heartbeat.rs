//! The Engine.IO heartbeat of every session, and connectTimeout: a ping
//! when pingInterval has passed since the last pong, a close when the pong
//! is pingTimeout late, a close for a client that joined no namespace in
//! time. Each happens at its deadline (one [`Timer`] for all sessions).

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::client::Client;
use crate::fault::Fault;
use crate::node::Node;
use crate::outbox::Frame;
use crate::session::Heartbeat;
use crate::timer::Timer;

/// Runs the deadlines until the gateway is dropped.
pub(crate) async fn run(node: Weak<Node>, timer: Arc<Timer>, epoch: tokio::time::Instant) {
    loop {
        {
            let Some(node) = node.upgrade() else { return };
            let now = node.now();
            for (at, sid) in timer.due(now) {
                let Some(client) = node.registry.client(&sid) else {
                    continue;
                };
                if client.session.is_armed(at) {
                    beat(&node, &client, now);
                }
            }
        }
        // Woken for an earlier deadline; at most a second asleep, so a
        // dropped gateway's task ends.
        let next = timer
            .next()
            .map_or(Duration::from_secs(1), |at| {
                (epoch + Duration::from_millis(at))
                    .saturating_duration_since(tokio::time::Instant::now())
            })
            .min(Duration::from_secs(1));
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = timer.earlier() => {}
        }
    }
}

/// What a session's deadline calls for at `now`; then its next deadline.
fn beat(node: &Arc<Node>, client: &Client, now: u64) {
    let session = &client.session;
    if !client.joined() && now >= session.opened.saturating_add(node.config.connect_timeout) {
        return node.close(session, Fault::ConnectTimeout);
    }
    match session.heartbeat(now, node.config.ping_timeout) {
        Heartbeat::Wait(_) => {}
        Heartbeat::Ping(_) => {
            if session.send([Frame::ping()]).is_err() {
                return node.close(session, Fault::SlowConsumer);
            }
        }
        Heartbeat::TimedOut => return node.close(session, Fault::PingTimeout),
    }
    node.schedule(client);
}
