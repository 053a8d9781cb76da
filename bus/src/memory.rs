//! The in-process bus: NATS semantics inside one process, no server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::{Bus, Error, Message, State, Subscription};

/// An in-process bus. Clones share the same subscriptions.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    registry: Mutex<Registry>,
    capacity: usize,
    /// Messages dropped because a subscriber was full.
    dropped: AtomicU64,
    /// Round-robin position for queue groups.
    turn: AtomicU64,
    inboxes: AtomicU64,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    subs: HashMap<u64, Sub>,
    /// Subscriptions without wildcards, by subject: the common case (rooms).
    exact: HashMap<String, Vec<u64>>,
    /// Subscriptions with `*` or `>`.
    wildcard: Vec<u64>,
}

#[derive(Debug)]
struct Sub {
    pattern: String,
    group: Option<String>,
    tx: mpsc::Sender<Message>,
}

/// The receiving end of an in-process subscription.
#[derive(Debug)]
pub(crate) struct Receiver {
    rx: mpsc::Receiver<Message>,
    _guard: Unsubscribe,
}

impl Receiver {
    pub(crate) async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

/// Removes the subscription when the receiver is dropped.
#[derive(Debug)]
struct Unsubscribe {
    shared: Weak<Shared>,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.lock().remove(self.id);
        }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl MemoryBus {
    /// Messages a subscriber may have queued before new ones are dropped.
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A bus whose subscribers each queue at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry: Mutex::default(),
                capacity: capacity.max(1),
                dropped: AtomicU64::new(0),
                turn: AtomicU64::new(0),
                inboxes: AtomicU64::new(0),
            }),
        }
    }

    /// Messages dropped so far because a subscriber did not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn add(&self, pattern: String, group: Option<String>) -> Result<Subscription, Error> {
        if !valid_subject(&pattern, true) {
            return Err(Error::InvalidSubject(pattern));
        }
        let (tx, rx) = mpsc::channel(self.shared.capacity);
        let id = self.shared.lock().add(Sub { pattern, group, tx });
        Ok(Subscription::memory(Receiver {
            rx,
            _guard: Unsubscribe {
                shared: Arc::downgrade(&self.shared),
                id,
            },
        }))
    }

    /// Tells `reply` that nobody took the message sent with it.
    fn no_responders(&self, reply: String) -> Result<(), Error> {
        let registry = self.shared.lock();
        for sub in registry.matching(&reply).filter(|s| s.group.is_none()) {
            let message = Message {
                subject: reply.clone(),
                reply: None,
                payload: Bytes::new(),
                no_responders: true,
            };
            if sub.tx.try_send(message).is_err() {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Delivers to every matching subscription (one member per queue
    /// group); returns how many subscriptions matched.
    fn deliver(
        &self,
        subject: String,
        reply: Option<String>,
        payload: Bytes,
    ) -> Result<usize, Error> {
        if !valid_subject(&subject, false) {
            return Err(Error::InvalidSubject(subject));
        }
        let registry = self.shared.lock();
        let mut plain = Vec::new();
        let mut groups: HashMap<(&str, &str), Vec<&Sub>> = HashMap::new();
        for sub in registry.matching(&subject) {
            match &sub.group {
                Some(g) => groups.entry((&sub.pattern, g)).or_default().push(sub),
                None => plain.push(sub),
            }
        }
        let turn = self.shared.turn.fetch_add(1, Ordering::Relaxed);
        let chosen = groups.values().filter_map(|members| {
            let len = u64::try_from(members.len()).ok()?;
            members.get(usize::try_from(turn % len).ok()?).copied()
        });
        let mut matched = 0;
        for sub in plain.into_iter().chain(chosen) {
            matched += 1;
            let message = Message {
                subject: subject.clone(),
                reply: reply.clone(),
                payload: payload.clone(),
                no_responders: false,
            };
            if sub.tx.try_send(message).is_err() {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(matched)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere while holding the lock leaves the map usable.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Registry {
    /// The subscriptions whose pattern matches `subject`.
    fn matching<'a>(&'a self, subject: &'a str) -> impl Iterator<Item = &'a Sub> {
        let exact = self.exact.get(subject).into_iter().flatten();
        let wildcard = self.wildcard.iter().filter(move |id| {
            self.subs
                .get(id)
                .is_some_and(|s| matches(&s.pattern, subject))
        });
        exact.chain(wildcard).filter_map(|id| self.subs.get(id))
    }

    fn add(&mut self, sub: Sub) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if is_wildcard(&sub.pattern) {
            self.wildcard.push(id);
        } else {
            self.exact.entry(sub.pattern.clone()).or_default().push(id);
        }
        self.subs.insert(id, sub);
        id
    }

    fn remove(&mut self, id: u64) {
        let Some(sub) = self.subs.remove(&id) else {
            return;
        };
        if is_wildcard(&sub.pattern) {
            self.wildcard.retain(|&w| w != id);
        } else if let Some(ids) = self.exact.get_mut(&sub.pattern) {
            ids.retain(|&e| e != id);
            if ids.is_empty() {
                self.exact.remove(&sub.pattern);
            }
        }
    }
}

fn is_wildcard(pattern: &str) -> bool {
    pattern.split('.').any(|t| t == "*" || t == ">")
}

/// Non-empty tokens without whitespace; wildcards only where allowed and
/// `>` only last.
fn valid_subject(subject: &str, wildcards: bool) -> bool {
    let count = subject.split('.').count();
    subject.split('.').enumerate().all(|(i, t)| {
        !t.is_empty()
            && !t.contains(char::is_whitespace)
            && match t {
                "*" => wildcards,
                ">" => wildcards && i + 1 == count,
                _ => true,
            }
    })
}

/// NATS subject matching: `*` is one token, a final `>` one or more.
pub(crate) fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

impl Bus for MemoryBus {
    fn publish(&self, subject: String, payload: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        let result = self.deliver(subject, None, payload).map(drop);
        Box::pin(async move { result })
    }

    fn publish_with_reply(
        &self,
        subject: String,
        reply: String,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), Error>> {
        let result = match self.deliver(subject, Some(reply.clone()), payload) {
            Ok(0) => self.no_responders(reply),
            other => other.map(drop),
        };
        Box::pin(async move { result })
    }

    fn subscribe(&self, subject: String) -> BoxFuture<'_, Result<Subscription, Error>> {
        let result = self.add(subject, None);
        Box::pin(async move { result })
    }

    fn queue_subscribe(
        &self,
        subject: String,
        group: String,
    ) -> BoxFuture<'_, Result<Subscription, Error>> {
        let result = self.add(subject, Some(group));
        Box::pin(async move { result })
    }

    fn request(
        &self,
        subject: String,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Bytes, Error>> {
        Box::pin(async move {
            let inbox = self.new_inbox();
            let mut replies = self.add(inbox.clone(), None)?;
            if self.deliver(subject.clone(), Some(inbox), payload)? == 0 {
                return Err(Error::NoResponders(subject));
            }
            replies.next_within(timeout).await.map(|m| m.payload)
        })
    }

    fn new_inbox(&self) -> String {
        let n = self.shared.inboxes.fetch_add(1, Ordering::Relaxed);
        format!("_INBOX.mem.{n}")
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), Error>> {
        // Delivery is synchronous: nothing is ever in flight.
        Box::pin(async { Ok(()) })
    }

    fn state(&self) -> State {
        State::Connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_matching() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches("*.*", "x.y"));
    }

    #[test]
    fn subject_validation() {
        assert!(valid_subject("a.b", false));
        assert!(!valid_subject("a.*", false));
        assert!(valid_subject("a.*.>", true));
        assert!(!valid_subject("a.>.b", true));
        assert!(!valid_subject("a..b", true));
        assert!(!valid_subject("", true));
        assert!(!valid_subject("a b", true));
    }
}
