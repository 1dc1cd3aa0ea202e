//! The receive calls of a [`Primary`]: the app takes requests from its queue, and while
//! it waits (without a waker) its thread runs the primary's loop.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::inbox::Event;
use super::launch::far_deadline;
use super::serve::Context;
use super::{Primary, Request};
use crate::{RecvError, RecvTimeoutError as Timeout, TryRecvError as Try};

/// What a receive call found in the queue.
pub(super) enum Taken {
    Request(Box<Request>),
    /// An abandoned request, dropped: look again.
    Again,
    /// Stopped, or the queue is gone.
    End,
    Empty,
}

impl Primary {
    /// A blocking iterator over requests; it ends when a [`Stopper`](crate::Stopper) stops it, or when
    /// the primary [steps down](crate::Health::SteppedDown).
    pub fn requests(&self) -> impl Iterator<Item = Request> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// Waits for the next request; [`RecvError`] once a [`Stopper`](crate::Stopper) stopped
    /// the primary, or once it [stepped down](crate::Health::SteppedDown) (see
    /// [`health`](Self::health)).
    ///
    /// Unless a [waker](Self::set_waker) is set, the waiting thread serves the
    /// socket itself meanwhile (it accepts, checks and reads the launches), as an event
    /// loop would: no thread of the crate's runs.
    ///
    /// Requests whose launch gave up while they waited (it timed out, or was killed) are
    /// dropped here, unseen; see [`Request::is_abandoned`].
    pub fn recv(&self) -> std::result::Result<Request, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// Waits up to `timeout` for the next request (abandoned ones dropped, as by
    /// [`recv`](Self::recv)): [`Timeout`](crate::RecvTimeoutError::Timeout) when none came,
    /// [`Stopped`](crate::RecvTimeoutError::Stopped) as `recv`'s [`RecvError`].
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<Request, Timeout> {
        self.recv_until(Some(far_deadline(timeout)))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> std::result::Result<Request, Timeout> {
        // One turn of the loop at least, even with a deadline passed already: a
        // `recv_timeout(Duration::ZERO)` serves what is ready, as `try_recv` does.
        let mut turned = false;
        loop {
            if self.ctx.inbox.stopped.load(Ordering::SeqCst) {
                return Err(Timeout::Stopped);
            }
            match self.try_take() {
                Taken::Request(r) => return Ok(*r),
                Taken::Again => continue,
                Taken::End => return Err(Timeout::Stopped),
                Taken::Empty => {}
            }
            if turned && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Timeout::Timeout);
            }
            turned = true;
            // Serve on this thread until something happens; where a thread serves, wait
            // for what it queues.
            if Context::drive(&self.ctx, deadline) {
                continue;
            }
            let event = match deadline {
                None => self.rx.recv().map_err(|_| true),
                Some(d) => self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                    .map_err(|e| e == RecvTimeoutError::Disconnected),
            };
            match self.take(event) {
                Taken::Request(r) => return Ok(*r),
                Taken::Again | Taken::Empty => continue,
                Taken::End => return Err(Timeout::Stopped),
            }
        }
    }

    /// The app sleeps elsewhere from now on (its event loop, an async runtime): a thread
    /// serves the socket (the serve thread).
    pub(super) fn serving_from_a_thread(&self) {
        Context::start_driver(&self.ctx);
    }

    /// What the queue holds now, without waiting.
    pub(super) fn try_take(&self) -> Taken {
        self.take(self.rx.try_recv().map_err(|e| e == TryRecvError::Disconnected))
    }

    /// What a receive took from the queue (`Err(true)`: disconnected, `Err(false)`: empty).
    fn take(&self, event: std::result::Result<Event, bool>) -> Taken {
        if self.ctx.mux.stepped_down() {
            // Not the primary any more: what waits is handed over (each request dropped
            // tells its launch to start over, and it reaches the new primary; a D-Bus call
            // is handed to the name's next owner), the D-Bus calls waiting for room too.
            drop(event);
            #[cfg(all(feature = "dbus", target_os = "linux"))]
            self.ctx.inbox.dbus_waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
            while let Ok(event) = self.rx.try_recv() {
                drop(event);
            }
            return Taken::End;
        }
        // A slot is free: D-Bus calls waiting for one move in.
        #[cfg(all(feature = "dbus", target_os = "linux"))]
        if let Ok(Event::Request(_)) = &event {
            self.ctx.inbox.dbus_refill();
        }
        match event {
            Ok(Event::Request(r)) if r.is_abandoned() => Taken::Again,
            Ok(Event::Request(r)) => {
                // A version-2 launch learns that its request is taken. Either version's
                // connection is listed, for a release to end.
                if let Some(remote) = &r.remote {
                    remote.taken(&self.ctx.inbox.streams);
                }
                if let Some(socket) = &r.socket {
                    self.ctx.inbox.streams.add_plain(socket);
                }
                Taken::Request(r)
            }
            Ok(Event::Stop) | Err(true) => Taken::End,
            Err(false) => Taken::Empty,
        }
    }

    /// The next request if one is waiting; never blocks. For GUI loops that poll on
    /// each frame or after a [waker](Self::set_waker) call. Abandoned requests are
    /// dropped, as by [`recv`](Self::recv). Without a waker, it first serves
    /// what is ready on the socket (one turn that does not wait).
    pub fn try_recv(&self) -> std::result::Result<Request, Try> {
        let mut served = false;
        loop {
            // Stopped stays stopped: the one `Stop` event may have been taken already.
            if self.ctx.inbox.stopped.load(Ordering::SeqCst) {
                return Err(Try::Stopped);
            }
            match self.try_take() {
                Taken::Request(r) => return Ok(*r),
                Taken::Again => continue,
                Taken::End => return Err(Try::Stopped),
                Taken::Empty if served => return Err(Try::Empty),
                Taken::Empty => {}
            }
            served = true;
            if self.ctx.inbox.waker.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                // The waker's thread failed to start: try again.
                Context::start_driver(&self.ctx);
            }
            if !Context::drive(&self.ctx, Some(Instant::now())) {
                return Err(Try::Empty);
            }
        }
    }

    /// Calls `waker` (from one of the primary's threads) each time a request is ready to
    /// be received: hand it a GUI event loop's wake-up (such as winit's
    /// `EventLoopProxy::send_event`) and call [`try_recv`](Self::try_recv) when woken.
    /// Drain with `try_recv` once after setting it, too: a request queued before (a D-Bus
    /// activation that started the app, with the `dbus` feature) is not announced again.
    ///
    /// The waker must not block: in particular it must not wait for a lock that the
    /// thread dropping the `Primary` holds, since dropping waits for the thread that calls
    /// the waker (the serve thread that `set_waker` starts). The waker itself may drop the primary (one it owns, say behind a mutex).
    ///
    /// The waker runs on the thread that runs the primary's loop, between its turns: while
    /// it runs, no launch is accepted or read. It may take the requests and answer them,
    /// and even wait there, in [`recv`](Self::recv) or a read of a request's
    /// [stdin](crate::Request::stdin): the wait runs the loop's turns itself on that
    /// thread, as no other thread would, and what they deliver is announced once the
    /// waker returns. But a wait for a slow launch holds up every other launch meanwhile:
    /// hand such work to a thread.
    pub fn set_waker(&self, waker: impl Fn() + Send + Sync + 'static) {
        *self.ctx.inbox.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(waker));
        // The app sleeps in its own event loop from now on.
        self.serving_from_a_thread();
    }
}
