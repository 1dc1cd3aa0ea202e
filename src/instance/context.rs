//! [`Context`]: what a primary shares with the threads and handles that serve it (its
//! loop or Windows' accept thread, the decoder, D-Bus, [`Stopper`](super::Stopper)s):
//! the peer check, decoding a request and handing it to the app's queue, and the
//! wake-ups.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[cfg(not(unix))]
use std::time::Instant;

#[cfg(not(unix))]
use super::pool::Pool;
#[cfg(unix)]
use super::serve;
use super::transport::send_reply;
use super::{protocol, Reply, Request, HELD_BUDGET};
use crate::{LocalSocket, PeerCredentials};

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
    pub(super) check_uid: bool,
    /// Unix: the user the primary serves, read once when it starts (the socket file is
    /// that user's, mode 0600: no other could connect through it anyway).
    #[cfg(unix)]
    pub(super) euid: u32,
    /// Tests: the user the primary takes itself for (an injected SID, where Wine has one
    /// user), so that its own launches count as another user's.
    #[cfg(all(test, windows))]
    pub(super) pretend_user: Mutex<Option<crate::Sid>>,
    /// Tests: the integrity level the primary takes itself for (Wine runs all at High).
    #[cfg(all(test, windows))]
    pub(super) pretend_integrity: Mutex<Option<u32>>,
    #[cfg(not(unix))]
    pub(super) pool: Pool,
    #[cfg(unix)]
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
    #[cfg(all(unix, feature = "dbus"))]
    pub(super) on_step_down: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Context {
    /// Windows: the `incomingConnection` hook: check the peer, then deliver a request that
    /// is there whole already, or hand the socket to a reader thread.
    #[cfg(not(unix))]
    pub(super) fn incoming(ctx: &Arc<Context>, socket: LocalSocket) {
        // The client's user SID and integrity level, as it connected (impersonated at the
        // identification level); one that cannot be read counts as a stranger's, and so does
        // a client below the primary's own level (a non-elevated process driving an elevated
        // primary: a silent elevation; or a sandboxed one).
        if ctx.check_uid && !ctx.admits(&socket) {
            return;
        }
        let peer = socket.peer_credentials().ok();
        // A launch writes its request right after connecting, so it is usually here
        // already: then it is delivered from this thread, without a reader's hop.
        // At most `limit + 1` bytes are looked at, so a line over the limit is never taken
        // here: it goes to a reader, which refuses it.
        let fast_max = FAST_PATH_BYTES.min(ctx.limit.saturating_add(1));
        if let Some(line) = crate::sys::take_ready_line(&socket, fast_max) {
            ctx.deliver(socket, peer, line);
            return;
        }
        Context::pool_add(ctx, socket, peer);
    }

    /// Whether the client at `socket` is this primary's user, at its integrity level or
    /// above.
    #[cfg(windows)]
    fn admits(&self, socket: &LocalSocket) -> bool {
        let client = crate::sys::client_identity(socket.as_stream());
        match (client, self.user(), self.integrity()) {
            (Some(c), Ok(me), Ok(level)) => c.user == me && c.integrity >= level,
            _ => false,
        }
    }

    /// The integrity level of this primary's process (the level its pipe is labelled at).
    #[cfg(windows)]
    fn integrity(&self) -> std::io::Result<u32> {
        #[cfg(test)]
        if let Some(level) = *self.pretend_integrity.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(level);
        }
        crate::sys::own_integrity()
    }

    /// The user this primary serves: its process's.
    #[cfg(windows)]
    pub(super) fn user(&self) -> std::io::Result<crate::Sid> {
        #[cfg(test)]
        if let Some(sid) = *self.pretend_user.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(sid);
        }
        crate::sys::current_user()
    }

    #[cfg(unix)]
    pub(super) fn shutdown(&self) {
        self.mux.shutdown();
    }

    /// Windows: the accept thread serves the pipe; the app's calls only wait for it.
    #[cfg(not(unix))]
    pub(super) fn drive(self: &Arc<Self>, _until: Option<Instant>) -> bool {
        false
    }

    /// Windows: the accept thread serves (started by `Primary::serving`), not a driver.
    #[cfg(not(unix))]
    pub(super) fn start_driver(self: &Arc<Self>) {}

    /// Makes a thread that waits in the primary's loop return, to look at the queue (a
    /// request queued by another thread, such as D-Bus's) or at the stop flag.
    pub(super) fn wake_loop(&self) {
        #[cfg(unix)]
        self.mux.wake();
    }

    /// Decodes a request line and hands the request to the app (or answers the error):
    /// whether it is queued for the app.
    pub(super) fn deliver(&self, socket: LocalSocket, peer: Option<PeerCredentials>, line: Vec<u8>) -> bool {
        // Everything but `data` is decoded (and checked); `data` stays text in the line.
        let head = match protocol::decode_head(&line) {
            Ok(h) => h,
            Err(e) => {
                let _ = send_reply(&socket, &Reply::error(e));
                return false;
            }
        };
        // The line's text and its decoded fields, at most about as much again.
        let weight = 2 * line.len() + 256;
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
            socket: Some(socket),
            closing: Arc::clone(&self.closing),
            origin: super::dbus::Origin::Launch,
            answer: None,
        };
        if self.closing.load(Ordering::SeqCst) {
            return false; // dropped: tells the launch to start over
        }
        if before > 0 && before + weight > HELD_BUDGET {
            // Too many bytes wait already: this launch tries again until its timeout.
            let mut r = request;
            if let Some(socket) = r.socket.take() {
                let _ = send_reply(&socket, &Reply::busy());
            }
            return false;
        }
        match self.tx.try_send(Event::Request(Box::new(request))) {
            Ok(()) => {}
            // The app is not keeping up: this launch tries again until its timeout.
            Err(mpsc::TrySendError::Full(Event::Request(mut r))) => {
                if let Some(socket) = r.socket.take() {
                    let _ = send_reply(&socket, &Reply::busy());
                }
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
        // Unix: the driver thread calls the waker after its turn (see `serve`).
        #[cfg(unix)]
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
