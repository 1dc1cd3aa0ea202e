//! [`Context`]: what a primary shares with the threads and handles that serve it (its
//! loop, the decoder, D-Bus, [`Stopper`](super::Stopper)s): the peer check, decoding a
//! request and handing it to the app's queue, and the wake-ups.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::request::respond;
use super::serve;
use super::{protocol, Reply, Request, HELD_BUDGET};
use crate::sys::Connection;
use crate::PeerCredentials;

/// What the app's queue carries.
pub(super) enum Event {
    Request(Box<Request>),
    Stop,
}

/// The largest request taken at once from a fresh connection, when it is all there on
/// arrival (larger ones are read and decoded as held connections).
pub(super) const FAST_PATH_BYTES: usize = 16 * 1024;

pub(super) type Waker = Arc<dyn Fn() + Send + Sync>;

pub(super) struct Context {
    pub(super) closing: Arc<AtomicBool>,
    pub(super) stopped: AtomicBool,
    pub(super) timeout: Duration,
    pub(super) limit: usize,
    /// Only the primary's user (on Windows, at its integrity level or above) is served;
    /// off in the System scope.
    pub(super) check_uid: bool,
    /// Who the primary serves, read once when it starts (`None`: it could not be told,
    /// and every client counts as a stranger). Behind a lock for the tests, which make a
    /// primary take itself for another user or level.
    pub(super) owner: Mutex<Option<crate::sys::Owner>>,
    pub(super) mux: serve::Mux,
    /// Bytes of the requests received and not yet dropped by the app (see [`HELD_BUDGET`]).
    pub(super) held: Arc<AtomicUsize>,
    pub(super) waker: Mutex<Option<Waker>>,
    /// What `recv_async` waits on: notified with each request queued and on stop.
    #[cfg(feature = "tokio")]
    pub(super) notify: tokio::sync::Notify,
    pub(super) tx: SyncSender<Event>,
    /// D-Bus calls that found the queue full: they wait here in order (up to a cap), and
    /// move into the queue as the app takes requests (`dbus::linux`).
    #[cfg(all(feature = "dbus", target_os = "linux"))]
    pub(super) dbus_waiting: Mutex<std::collections::VecDeque<Box<Request>>>,
    /// Linux, with `dbus`: gives the bus name back, run once by the loop when the primary
    /// steps down (the name belongs to the lock holder, as at a release).
    #[cfg(feature = "dbus")]
    #[allow(dead_code)] // read by the removal watch (none on Windows)
    pub(super) on_step_down: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The version-2 launches waiting for a request the app took: cut off at a release.
    pub(super) streams: super::stream::Registry,
}

impl Context {
    /// Whether the client at `conn` may be served: the primary's user (on Windows at its
    /// integrity level or above: a non-elevated process driving an elevated primary would
    /// be a silent elevation), unless anyone may (the System scope).
    pub(super) fn admits(&self, conn: &Connection, peer: Option<&PeerCredentials>) -> bool {
        if !self.check_uid {
            return true;
        }
        let owner = *self.owner.lock().unwrap_or_else(|p| p.into_inner());
        owner.is_some_and(|o| o.admits(conn, peer))
    }

    pub(super) fn shutdown(&self) {
        self.mux.shutdown();
    }

    /// Makes a thread that waits in the primary's loop return, to look at the queue (a
    /// request queued by another thread, such as D-Bus's) or at the stop flag.
    pub(super) fn wake_loop(&self) {
        self.mux.wake();
    }

    /// Decodes a request line and hands the request to the app (or answers the error):
    /// whether it is queued for the app.
    pub(super) fn deliver(&self, socket: Connection, peer: Option<PeerCredentials>, line: Vec<u8>) -> bool {
        // What followed the line is a version-2 launch's stdin.
        let (line, rest) = super::stream::split_line(line);
        // Everything but `data` is decoded (and checked); `data` stays text in the line.
        let head = match protocol::decode_head(&line) {
            Ok(h) => h,
            Err(e) => {
                respond(&socket, &Reply::error(e));
                return false;
            }
        };
        let (socket, remote) = match super::stream::Remote::of(socket, &line, &rest) {
            Ok(s) => s,
            Err(()) => return false,
        };
        // The line's text and its decoded fields, at most about as much again.
        let weight = 2 * line.len() + rest.len() + 256;
        let before = self.held.fetch_add(weight, Ordering::SeqCst);
        // Held for as long as the app keeps the request: no spare capacity from reading.
        let mut line = line;
        line.shrink_to_fit();
        let raw =
            String::from_utf8(line).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let request = Request {
            head,
            data: std::sync::OnceLock::new(),
            message: std::sync::OnceLock::new(),
            raw,
            weight,
            held: Arc::clone(&self.held),
            peer,
            socket,
            closing: Arc::clone(&self.closing),
            origin: super::dbus::Origin::Launch,
            answer: None,
            remote,
        };
        if self.closing.load(Ordering::SeqCst) {
            return false; // dropped: tells the launch to start over
        }
        if before > 0 && before + weight > HELD_BUDGET {
            // Too many bytes wait already: this launch tries again until its timeout.
            let mut r = request;
            r.refuse_busy();
            return false;
        }
        match self.tx.try_send(Event::Request(Box::new(request))) {
            Ok(()) => {}
            // The app is not keeping up: this launch tries again until its timeout.
            Err(mpsc::TrySendError::Full(Event::Request(mut r))) => {
                r.refuse_busy();
                return false;
            }
            Err(_) => return false,
        }
        self.announce();
        true
    }

    /// Tells the app that a request is ready: wakes `recv_async` and calls the waker.
    pub(super) fn announce(&self) {
        #[cfg(feature = "tokio")]
        self.notify.notify_waiters();
        // The driver thread calls the waker after its turn (see `serve`).
        if self.mux.defer_announce() {
            return;
        }
        self.call_waker();
    }

    /// Calls the waker, if one is set.
    pub(super) fn call_waker(&self) {
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(w) = waker {
            w();
        }
    }
}
