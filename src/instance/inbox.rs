//! [`Inbox`]: how a request reaches the app, whichever way it came (a launch over the
//! socket, a D-Bus call): admission (the primary shutting down, the bytes requests hold,
//! room in the app's queue) and notification (the app's waker, `recv_async`, a thread
//! waiting in the primary's loop). One policy for both ways in.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use super::{Request, HELD_BUDGET};

/// What the app's queue carries.
pub(super) enum Event {
    Request(Box<Request>),
    Stop,
}

pub(super) type Waker = Arc<dyn Fn() + Send + Sync>;

/// Why a request was not let in: it comes back, for its way in to answer.
pub(super) enum Refused {
    /// The primary is shutting down (or gone): the launch starts over, the D-Bus call goes
    /// to the successor.
    Closing(Box<Request>),
    /// Too many bytes of requests wait already ([`HELD_BUDGET`]): busy.
    OverBudget(Box<Request>),
    /// The app's queue is full (it is not keeping up): busy.
    Full(Box<Request>),
}

pub(super) struct Inbox {
    /// Set when the primary starts to shut down (or steps down): requests are refused, and
    /// those dropped unanswered tell their launches to start over.
    pub(super) closing: Arc<AtomicBool>,
    /// A [`Stopper`](super::Stopper) stopped the receive calls.
    pub(super) stopped: AtomicBool,
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
    /// Makes a thread waiting in the primary's loop return.
    loop_waker: Arc<crate::sys::PollWaker>,
    /// The thread that runs the loop for an app that sleeps elsewhere (the driver), once
    /// it runs: requests it delivers are announced after its turn, not inside it.
    pub(super) driver_id: OnceLock<ThreadId>,
    /// Waker calls owed for requests the driver delivered in its current turn.
    pub(super) unannounced: AtomicUsize,
    /// The launches waiting for a request the app took: cut off at a release.
    pub(super) streams: super::stream::Registry,
}

impl Inbox {
    pub(super) fn new(tx: SyncSender<Event>, loop_waker: Arc<crate::sys::PollWaker>) -> Inbox {
        Inbox {
            closing: Arc::new(AtomicBool::new(false)),
            stopped: AtomicBool::new(false),
            held: Arc::new(AtomicUsize::new(0)),
            waker: Mutex::new(None),
            #[cfg(feature = "tokio")]
            notify: tokio::sync::Notify::new(),
            tx,
            #[cfg(all(feature = "dbus", target_os = "linux"))]
            dbus_waiting: Mutex::new(Default::default()),
            loop_waker,
            driver_id: OnceLock::new(),
            unannounced: AtomicUsize::new(0),
            streams: Default::default(),
        }
    }

    /// Counts `weight` bytes of a new request against the budget; its drop gives them back.
    pub(super) fn hold(&self, weight: usize) -> Arc<AtomicUsize> {
        self.held.fetch_add(weight, Ordering::SeqCst);
        Arc::clone(&self.held)
    }

    /// Whether `request` (counted by [`hold`](Self::hold)) may go to the app: not while
    /// the primary shuts down, nor past the budget (one request alone may always exceed
    /// it).
    pub(super) fn check(&self, request: Box<Request>) -> Result<Box<Request>, Refused> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(Refused::Closing(request));
        }
        let before = self.held.load(Ordering::SeqCst).saturating_sub(request.weight);
        if before > 0 && before + request.weight > HELD_BUDGET {
            return Err(Refused::OverBudget(request));
        }
        Ok(request)
    }

    /// Puts a checked request in the app's queue, without waiting, and tells the app.
    pub(super) fn queue(&self, request: Box<Request>) -> Result<(), Refused> {
        match self.tx.try_send(Event::Request(request)) {
            Ok(()) => {}
            Err(TrySendError::Full(Event::Request(r))) => return Err(Refused::Full(r)),
            Err(TrySendError::Disconnected(Event::Request(r))) => return Err(Refused::Closing(r)),
            Err(_) => return Ok(()),
        }
        self.announce();
        Ok(())
    }

    /// [`check`](Self::check), then [`queue`](Self::queue).
    pub(super) fn admit(&self, request: Box<Request>) -> Result<(), Refused> {
        self.queue(self.check(request)?)
    }

    /// Tells the app that a request is ready: wakes `recv_async` and calls the waker (the
    /// driver thread calls it after its turn: see `serve`).
    pub(super) fn announce(&self) {
        #[cfg(feature = "tokio")]
        self.notify.notify_waiters();
        if self.driver_id.get().is_some_and(|&id| id == std::thread::current().id()) {
            self.unannounced.fetch_add(1, Ordering::SeqCst);
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

    /// Makes a thread that waits in the primary's loop return, to look at the queue (a
    /// request queued by another thread, such as D-Bus's) or at the stop flag.
    pub(super) fn wake_loop(&self) {
        self.loop_waker.wake();
    }

    /// Ends the receive calls (see [`Stopper`](super::Stopper)).
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // A full queue needs no wake-up: the receiver is busy and sees the flag next.
        let _ = self.tx.try_send(Event::Stop);
        self.wake_loop();
        #[cfg(feature = "tokio")]
        self.notify.notify_waiters();
    }
}
