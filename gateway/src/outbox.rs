//! The per-session send queue, bounded by packets and by bytes.
//!
//! Frames are shared, cheaply cloned bytes: a broadcast builds its frames
//! once and pushes clones to every recipient. A client whose queue is full
//! is cut, never allowed to grow memory. An idle session's queue holds no
//! allocation at all.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

/// One Engine.IO packet, ready for either transport; its text in the
/// websocket library's shared string, so a broadcast's frames are built
/// once and every recipient gets the same bytes.
pub(crate) type Frame = sio_protocol::engineio::Frame<Utf8Bytes>;

/// The queue is over its bound: the client does not keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

#[derive(Debug)]
pub(crate) struct Outbox {
    shared: Arc<Inner>,
    max_packets: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    queue: Mutex<Queue>,
    ready: Notify,
    /// Held by the one reader (a polling GET or the websocket).
    reading: AtomicBool,
    /// Set once: the reader returns what is left and stops waiting.
    closed: AtomicBool,
    /// Released readers wake whoever waits to read.
    released: Notify,
    /// The close wakes whoever waits for it.
    closing: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Frame>,
    bytes: usize,
}

/// Exclusive access to the receiving end: one polling GET or one websocket
/// at a time. Released on drop.
#[derive(Debug)]
pub(crate) struct Reader {
    shared: Arc<Inner>,
}

impl Inner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Outbox {
    pub(crate) fn new(max_packets: usize, max_bytes: usize) -> Self {
        Self {
            shared: Arc::default(),
            max_packets: max_packets.max(1),
            max_bytes,
        }
    }

    /// Queues frames that belong together (a packet and its attachments):
    /// all of them, or none if that would pass a bound.
    pub(crate) fn push(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), Full> {
        {
            let mut queue = self.shared.queue();
            let start = queue.frames.len();
            let mut bytes = queue.bytes;
            for frame in frames {
                bytes = bytes.saturating_add(frame.len());
                queue.frames.push_back(frame);
            }
            if queue.frames.len() > self.max_packets || bytes > self.max_bytes {
                queue.frames.truncate(start);
                return Err(Full);
            }
            queue.bytes = bytes;
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Closes the queue and wakes the reader; true for the call that
    /// closed it. A flag rather than a second future for every reader to
    /// poll: the close is checked once per delivery and per wake-up.
    pub(crate) fn close(&self) -> bool {
        let first = !self.shared.closed.swap(true, Ordering::AcqRel);
        if first {
            self.shared.ready.notify_one();
            self.shared.closing.notify_waiters();
        }
        first
    }

    /// Resolves once the queue is closed: the session's one close signal,
    /// for waits that cannot poll the queue (an upgrade probe, a websocket
    /// write in progress).
    pub(crate) async fn closed(&self) {
        let closing = self.shared.closing.notified();
        let mut closing = std::pin::pin!(closing);
        // Registered before the check, so a close in between is not missed.
        closing.as_mut().enable();
        if self.is_closed() {
            return;
        }
        closing.await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The bytes waiting to be sent.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.shared.queue().bytes
    }

    /// Whether nothing is waiting to be sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.queue().frames.is_empty()
    }

    /// The receiving end, unless someone else holds it.
    pub(crate) fn try_reader(&self) -> Option<Reader> {
        let taken = self
            .shared
            .reading
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        taken.then(|| Reader {
            shared: self.shared.clone(),
        })
    }

    /// The receiving end, once its current holder lets go.
    pub(crate) async fn reader(&self) -> Reader {
        loop {
            let released = self.shared.released.notified();
            if let Some(reader) = self.try_reader() {
                return reader;
            }
            released.await;
        }
    }
}

impl Reader {
    /// Waits until frames are queued and takes all of them; once the queue
    /// is closed, takes what is left, possibly nothing.
    pub(crate) async fn recv(&mut self) -> VecDeque<Frame> {
        loop {
            // Scoped, so the waiting future does not keep an empty queue.
            {
                let frames = self.take();
                if !frames.is_empty() {
                    return frames;
                }
            }
            if self.shared.closed.load(Ordering::Acquire) {
                // Whatever was pushed between the take and the close.
                return self.take();
            }
            self.shared.ready.notified().await;
        }
    }

    /// Puts back frames taken but not sent, ahead of anything queued since.
    pub(crate) fn unsend(&mut self, mut frames: VecDeque<Frame>) {
        let mut queue = self.shared.queue();
        queue.bytes = frames
            .iter()
            .map(Frame::len)
            .fold(queue.bytes, usize::saturating_add);
        frames.append(&mut queue.frames);
        queue.frames = frames;
    }

    /// Takes whatever is queued, possibly nothing.
    pub(crate) fn take(&mut self) -> VecDeque<Frame> {
        let mut queue = self.shared.queue();
        queue.bytes = 0;
        std::mem::take(&mut queue.frames)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shared.reading.store(false, Ordering::Release);
        self.shared.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn text(s: &'static str) -> Frame {
        Frame::Text(s.into())
    }

    #[tokio::test]
    async fn bounded_by_packets_and_bytes() {
        let outbox = Outbox::new(2, 10);
        assert!(outbox.is_empty());
        assert_eq!(outbox.push([text("4a"), text("4b")]), Ok(()));
        assert_eq!(outbox.push([text("4c")]), Err(Full), "packet bound");
        let mut reader = outbox.try_reader().unwrap();
        assert!(outbox.try_reader().is_none(), "one reader at a time");
        assert_eq!(reader.recv().await, [text("4a"), text("4b")]);
        assert!(reader.take().is_empty());
        assert!(outbox.is_empty());
        assert_eq!(
            outbox.push([Frame::Binary(Bytes::from(vec![0; 11]))]),
            Err(Full),
            "byte bound"
        );
        assert_eq!(
            outbox.push([text("4"), Frame::Binary(Bytes::from(vec![0; 10]))]),
            Err(Full),
            "all or nothing"
        );
        assert!(outbox.is_empty());
        assert_eq!(
            outbox.push([Frame::Binary(Bytes::from(vec![0; 10]))]),
            Ok(())
        );
        drop(reader);
        assert!(outbox.try_reader().is_some());
    }

    #[test]
    fn unsent_frames_go_back_ahead_and_count() {
        let outbox = Outbox::new(8, 10);
        let mut reader = outbox.try_reader().unwrap();
        outbox.push([text("4a")]).unwrap();
        let taken = reader.take();
        outbox.push([text("4b")]).unwrap();
        reader.unsend(taken);
        assert_eq!(outbox.push([text("4cdefgh")]), Err(Full), "both count");
        assert_eq!(reader.take(), [text("4a"), text("4b")]);
    }

    #[tokio::test]
    async fn closing_wakes_whoever_waits_for_it() {
        let outbox = Arc::new(Outbox::new(8, 100));
        let waiting = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.closed().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        outbox.close();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
        // Once closed, at once.
        outbox.closed().await;
    }

    #[tokio::test]
    async fn closing_wakes_the_reader_once() {
        let outbox = Arc::new(Outbox::new(8, 100));
        let mut reader = outbox.try_reader().unwrap();
        let waiting = tokio::spawn(async move { reader.recv().await });
        tokio::task::yield_now().await;
        assert!(!outbox.is_closed());
        assert!(outbox.close(), "the first close");
        assert!(!outbox.close(), "only the first");
        assert!(outbox.is_closed());
        assert!(waiting.await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_waiting_reader_gets_the_queue_when_released() {
        let outbox = Arc::new(Outbox::new(8, 100));
        let first = outbox.try_reader().unwrap();
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.reader().await.take().len() })
        };
        outbox.push([text("4x")]).unwrap();
        tokio::task::yield_now().await;
        drop(first);
        assert_eq!(waiter.await.unwrap(), 1);
    }
}
