//! Where workers answer the events a gateway handed over: one
//! subscription on `<inbox>.*` for the whole gateway, each hand-over
//! listening on a token of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sio_bus::{Message, Subscription};
use tokio::sync::mpsc;

/// Most events handed over together (see `event.rs`): a worker says at
/// most an ack and a done for each.
pub(crate) const BATCH: usize = 64;

/// Answers to the events this gateway handed over: one subscription on
/// `<inbox>.*`, each hand-over listening on a token of its own.
#[derive(Debug)]
pub(crate) struct Replies {
    inbox: String,
    next: AtomicU64,
    listening: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
}

/// One hand-over's reply subject and what arrives on it; stops listening
/// when dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    replies: Arc<Replies>,
    token: u64,
    pub(crate) subject: String,
    pub(crate) rx: mpsc::Receiver<Message>,
}

impl Replies {
    pub(crate) fn new(inbox: String) -> Self {
        Self {
            inbox,
            next: AtomicU64::new(0),
            listening: Mutex::default(),
        }
    }

    /// The subject this gateway's subscription covers.
    pub(crate) fn subject(&self) -> String {
        format!("{}.*", self.inbox)
    }

    fn listening(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Message>>> {
        self.listening.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn listen(self: &Arc<Self>) -> Listener {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        // A worker says at most an ack and a done per event handed over,
        // and a renewal now and then; past that it is dropped and the
        // lease decides. (The channel allocates as it fills.)
        let (tx, rx) = mpsc::channel(2 * BATCH + 8);
        self.listening().insert(token, tx);
        Listener {
            replies: self.clone(),
            token,
            subject: format!("{}.{token}", self.inbox),
            rx,
        }
    }

    fn route(&self, message: Message) {
        let token = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse().ok());
        let Some(tx) = token.and_then(|t| self.listening().get(&t).cloned()) else {
            return;
        };
        let _ = tx.try_send(message);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.replies.listening().remove(&self.token);
    }
}

/// Routes what arrives on the inbox until the bus closes.
pub(crate) async fn serve(replies: Arc<Replies>, mut sub: Subscription) {
    while let Some(message) = sub.next().await {
        replies.route(message);
    }
}
