//! The `tokio` feature's platform half: how an async accept waits for a listener.
//!
//! - Unix: the listening socket is registered with Tokio's reactor (`AsyncFd`, epoll or
//!   kqueue), so a waiting accept costs no thread. Each waiter registers a duplicate of
//!   the descriptor: epoll and kqueue refuse a second registration of one descriptor, and
//!   two accept futures on one server may wait at once.
//! - Windows: a named pipe has no readiness to register; the listener's blocking
//!   [`wait`](super::Listener::wait) runs on Tokio's blocking pool instead.

#[cfg(unix)]
pub(crate) use unix::AsyncListener;
#[cfg(windows)]
pub(crate) use windows::wait_in_background;

#[cfg(unix)]
mod unix {
    use std::future::{poll_fn, Future};
    use std::io;
    use std::os::fd::OwnedFd;
    use std::pin::{pin, Pin};
    use std::task::Poll;

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    use super::super::Listener;

    /// A listener's descriptor registered with the current Tokio runtime's reactor.
    #[derive(Debug)]
    pub(crate) struct AsyncListener(AsyncFd<OwnedFd>);

    impl AsyncListener {
        /// Registers a duplicate (close-on-exec) of `listener`'s descriptor.
        ///
        /// # Panics
        /// Outside a Tokio runtime, or in one built without IO (`enable_io`).
        pub(crate) fn new(listener: &Listener) -> io::Result<Self> {
            let fd = listener.fd().try_clone_to_owned()?;
            // Tokio 1.53.3 deprecates `with_interest` for types that may hand out another
            // descriptor than the one registered; an `OwnedFd` cannot. Its replacement
            // (`unsafe register_with_interest`) is newer than the Tokio this crate accepts
            // (1.38, for older compilers).
            #[allow(deprecated)]
            let registered = AsyncFd::with_interest(fd, Interest::READABLE)?;
            Ok(AsyncListener(registered))
        }

        /// Waits until a connection may be accepted, then runs `accept`, which returns its
        /// result and whether it emptied the backlog (then the readiness is cleared: the
        /// reactor is edge-triggered and says nothing more until a new client arrives).
        /// Returns `None` without accepting when `woken` completes first.
        pub(crate) async fn accept_when_ready<T>(
            &self,
            mut woken: Pin<&mut impl Future<Output = ()>>,
            accept: impl FnOnce() -> io::Result<(T, bool)>,
        ) -> io::Result<Option<T>> {
            let mut readable = pin!(self.0.readable());
            let guard = poll_fn(|cx| {
                if let Poll::Ready(guard) = readable.as_mut().poll(cx) {
                    return Poll::Ready(Some(guard));
                }
                woken.as_mut().poll(cx).map(|()| None)
            })
            .await;
            let Some(guard) = guard else { return Ok(None) };
            let mut guard = guard?;
            let (result, drained) = accept()?;
            if drained {
                guard.clear_ready();
            }
            Ok(Some(result))
        }
    }
}

#[cfg(windows)]
mod windows {
    use std::sync::Arc;

    use super::super::Listener;

    /// Runs the listener's blocking [`wait`](Listener::wait) on `runtime`'s blocking pool,
    /// then `done`. The wait ends when a client connects or [`wake`](Listener::wake) is
    /// called (as `LocalServer::close` does). `done` runs even if the runtime shuts down
    /// before the wait starts (it then drops queued blocking work unrun).
    pub(crate) fn wait_in_background(
        runtime: &tokio::runtime::Handle,
        listener: Arc<Listener>,
        done: impl FnOnce() + Send + 'static,
    ) {
        let done = OnDrop(Some(done));
        drop(runtime.spawn_blocking(move || {
            let _done = done;
            // Windows' wait has no error of its own: a failed accept waits in the slot
            // for `try_accept` to report it.
            let _ = listener.wait(None);
            drop(listener);
        }));
    }

    /// Runs its function when dropped.
    struct OnDrop<F: FnOnce()>(Option<F>);

    impl<F: FnOnce()> Drop for OnDrop<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
}
