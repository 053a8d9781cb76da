//! A socket's events on their way to the workers: first in, first out,
//! one handed over at a time, bounded in count and bytes.
//!
//! The core of per-socket order without I/O: the gateway's event loop
//! (`event.rs`) takes the next job once a worker said the one before is
//! done, so one socket's handlers run one after another, whichever worker
//! takes each. Its disconnect waits here behind its events, so the
//! workers hear of it after the last one was handled.

use std::collections::VecDeque;

use bytes::Bytes;
use sio_protocol::socketio::Event;

/// One thing to hand to the workers for a socket.
#[derive(Debug)]
pub(crate) enum Job {
    /// A client event: its envelope is made when it is handed over, so
    /// the handler sees what the handlers before it made of the socket.
    Event(Event<'static>),
    /// A notice for the workers (the socket's disconnect), published when
    /// its turn comes.
    Notice { subject: String, payload: Bytes },
}

impl Job {
    fn size(&self) -> usize {
        match self {
            Self::Event(event) => size(event),
            Self::Notice { payload, .. } => payload.len(),
        }
    }
}

/// The bytes an event holds.
pub(crate) fn size(event: &Event<'_>) -> usize {
    let attachments = event.attachments.as_deref().unwrap_or_default();
    event.data().len() + attachments.iter().map(Bytes::len).sum::<usize>()
}

/// How much may wait behind the job being handled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) jobs: usize,
    pub(crate) bytes: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    waiting: VecDeque<Job>,
    bytes: usize,
    /// A job is being handled: whoever handles it takes the next.
    busy: bool,
}

/// What became of a pushed job.
#[derive(Debug)]
pub(crate) enum Push {
    /// Nothing was being handled: the caller starts, with this job.
    Start(Job),
    /// Waits its turn.
    Queued,
    /// Past the bounds: refused (a notice never is).
    Full(Job),
}

impl Queue {
    pub(crate) fn push(&mut self, job: Job, bounds: Bounds) -> Push {
        if !self.busy {
            self.busy = true;
            return Push::Start(job);
        }
        let size = job.size();
        let full = self.waiting.len() >= bounds.jobs || self.bytes + size > bounds.bytes;
        if full && matches!(job, Job::Event(_)) {
            return Push::Full(job);
        }
        self.bytes += size;
        self.waiting.push_back(job);
        Push::Queued
    }

    /// Moves the events waiting right behind `batch` that have the name
    /// of its first into it, while it holds at most `bounds`: a socket's
    /// run of one event is handed over at once, and handled in order.
    pub(crate) fn take_like(&mut self, batch: &mut Vec<Event<'static>>, bounds: Bounds) {
        let Some(name) = batch.first().map(|e| e.name().to_owned()) else {
            return;
        };
        let mut bytes: usize = batch.iter().map(size).sum();
        while batch.len() < bounds.jobs {
            let Some(Job::Event(next)) = self.waiting.front() else {
                return;
            };
            if next.name() != name || bytes + size(next) > bounds.bytes {
                return;
            }
            let Some(Job::Event(next)) = self.waiting.pop_front() else {
                return;
            };
            bytes += size(&next);
            self.bytes -= size(&next);
            batch.push(next);
        }
    }

    /// Something is being handled elsewhere (by the gateway a socket was
    /// handed over by): jobs wait until [`Queue::next`] is called.
    pub(crate) fn hold(&mut self) {
        self.busy = true;
    }

    /// Nothing is being handled and nothing waits.
    pub(crate) fn is_idle(&self) -> bool {
        !self.busy && self.waiting.is_empty()
    }

    /// The job after the one just handled; `None` (and idle) when there is
    /// none.
    pub(crate) fn next(&mut self) -> Option<Job> {
        let job = self.waiting.pop_front();
        match &job {
            Some(job) => self.bytes -= job.size(),
            None => self.busy = false,
        }
        job
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn event(n: usize) -> Job {
        let data = format!("[\"n\",{n}]");
        match Event::from_data(Cow::Owned(data), None) {
            Ok(event) => Job::Event(event),
            Err(e) => panic!("{e}"),
        }
    }

    fn number(job: Option<Job>) -> Option<String> {
        match job? {
            Job::Event(e) => Some(e.data().to_owned()),
            Job::Notice { subject, .. } => Some(subject),
        }
    }

    #[test]
    fn one_at_a_time_in_order_within_bounds() {
        let bounds = Bounds {
            jobs: 2,
            bytes: 1 << 10,
        };
        let mut queue = Queue::default();
        assert!(matches!(queue.push(event(0), bounds), Push::Start(_)));
        assert!(matches!(queue.push(event(1), bounds), Push::Queued));
        assert!(matches!(queue.push(event(2), bounds), Push::Queued));
        assert!(matches!(queue.push(event(3), bounds), Push::Full(_)));
        let notice = Job::Notice {
            subject: "disc".into(),
            payload: Bytes::new(),
        };
        assert!(
            matches!(queue.push(notice, bounds), Push::Queued),
            "a disconnect is never refused"
        );
        assert_eq!(number(queue.next()).as_deref(), Some("[\"n\",1]"));
        assert_eq!(number(queue.next()).as_deref(), Some("[\"n\",2]"));
        assert_eq!(number(queue.next()).as_deref(), Some("disc"));
        assert!(queue.next().is_none());
        assert!(
            matches!(queue.push(event(4), bounds), Push::Start(_)),
            "idle again: the pusher starts"
        );
    }

    #[test]
    fn a_run_of_one_name_is_taken_together() {
        let bounds = Bounds {
            jobs: 10,
            bytes: 1 << 10,
        };
        let mut queue = Queue::default();
        let mut batch = match queue.push(event(0), bounds) {
            Push::Start(Job::Event(e)) => vec![e],
            other => panic!("{other:?}"),
        };
        for n in 1..4 {
            queue.push(event(n), bounds);
        }
        let other = Event::from_data(Cow::Borrowed("[\"m\"]"), None).map(Event::into_owned);
        queue.push(Job::Event(other.unwrap_or_else(|e| panic!("{e}"))), bounds);
        queue.push(event(5), bounds);
        let three = Bounds {
            jobs: 3,
            bytes: 1 << 10,
        };
        queue.take_like(&mut batch, three);
        let data: Vec<&str> = batch.iter().map(Event::data).collect();
        assert_eq!(
            data,
            ["[\"n\",0]", "[\"n\",1]", "[\"n\",2]"],
            "at most three"
        );
        let mut rest = vec![];
        let Some(Job::Event(next)) = queue.next() else {
            panic!("the fourth");
        };
        rest.push(next);
        queue.take_like(&mut rest, bounds);
        assert_eq!(rest.len(), 1, "another name ends the run");
        assert_eq!(number(queue.next()).as_deref(), Some("[\"m\"]"));
        assert_eq!(number(queue.next()).as_deref(), Some("[\"n\",5]"));
        assert!(queue.next().is_none());
    }

    #[test]
    fn bytes_are_bounded_too() {
        let bounds = Bounds {
            jobs: 10,
            bytes: 16,
        };
        let mut queue = Queue::default();
        assert!(matches!(queue.push(event(0), bounds), Push::Start(_)));
        assert!(matches!(queue.push(event(1), bounds), Push::Queued));
        assert!(matches!(queue.push(event(2), bounds), Push::Queued));
        assert!(matches!(queue.push(event(3), bounds), Push::Full(_)));
        assert!(queue.next().is_some());
        assert!(matches!(queue.push(event(3), bounds), Push::Queued));
    }
}
