//! What the watchdog of one connection knows about it: requests in progress, when it last went
//! idle, when the head being read began; and so when it must be closed, and why.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::{Closed, Limits};

/// What the watchdog of one connection knows about it, written by its I/O and its service
/// (all on the connection's task).
pub(super) struct Activity {
    opened: Instant,
    /// Requests handed to the service and not answered yet.
    pub(super) in_flight: AtomicUsize,
    /// Milliseconds since `opened`: when the connection last had nothing to do (answered its
    /// last request, or wrote a byte of a response).
    idle_since: AtomicU64,
    /// Milliseconds since `opened` of the first byte of the request head being read; [`NONE`]
    /// when no head is being read. A new connection waits for its first head from its opening.
    head_since: AtomicU64,
    /// Whether the bytes read next begin a request head that the size guard may judge (not
    /// while hyper may still be draining an unread request body).
    pub(super) heads_checked: AtomicBool,
    /// Answers so far: the I/O restarts its head scan when it changes.
    pub(super) answered: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            heads_checked: AtomicBool::new(true),
            answered: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    pub(super) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
    }

    pub(super) fn end(&self, body_read: bool) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
        self.heads_checked.store(body_read, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn read_some(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NONE
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    pub(super) fn wrote_some(&self) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
    }

    /// When the connection must be closed if nothing changes, and why; `None` while a request
    /// is in progress.
    pub(super) fn deadline(&self, limits: &Limits) -> Option<(Instant, Closed)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |ms: u64| self.opened + Duration::from_millis(ms);
        match self.head_since.load(Ordering::Relaxed) {
            NONE => Some((
                at(self.idle_since.load(Ordering::Relaxed)) + limits.idle_timeout,
                Closed::IdleTimeout,
            )),
            since => Some((at(since) + limits.header_timeout, Closed::HeaderTimeout)),
        }
    }
}
