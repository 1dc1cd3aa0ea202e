//! The `tokio` feature for [`LocalServer`]: [`accept_async`](LocalServer::accept_async)
//! and [`incoming_async`](LocalServer::incoming_async), on the same pending queue and
//! `incomingConnection` hook as the blocking calls.

use std::pin::pin;

use tokio::sync::Notify;

use super::{lock, LocalServer};
use crate::{sys, Error, LocalSocket, LocalSocketError, Result};

/// The async half of a server's shared state.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Notified by every push onto the queue (the acceptor thread's, a hook's,
    /// `PendingConnections::push` from any thread).
    pub(super) notify: Notify,
    /// Windows: whether a blocking wait for the pipe runs on Tokio's blocking pool.
    #[cfg(windows)]
    waiting: std::sync::atomic::AtomicBool,
    /// Windows: how many async accepts are under way; the last one to end stops the
    /// blocking wait, so none outlives its use (a runtime waits for them when dropped).
    #[cfg(windows)]
    accepts: std::sync::atomic::AtomicUsize,
}

/// Windows: counts an async accept in [`State::accepts`] while it lives.
#[cfg(windows)]
struct Accepting<'a>(&'a super::Shared, &'a sys::Listener);

#[cfg(windows)]
impl<'a> Accepting<'a> {
    fn new(shared: &'a super::Shared, listener: &'a sys::Listener) -> Self {
        shared.async_state.accepts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Accepting(shared, listener)
    }
}

#[cfg(windows)]
impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        let state = &self.0.async_state;
        if state.accepts.fetch_sub(1, Ordering::SeqCst) == 1 && state.waiting.load(Ordering::SeqCst) {
            self.1.wake();
        }
    }
}

const FUNCTION: &str = "QLocalServer::waitForNewConnection";

#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl LocalServer {
    /// Waits for a connection without blocking the thread, and takes it: the async
    /// [`accept`](Self::accept) (Qt's `newConnection` for an async program). Available
    /// with the `tokio` feature.
    ///
    /// It shares everything with the blocking calls: the pending queue (a connection
    /// already queued is returned at once), the
    /// [`incomingConnection` hook](Self::set_incoming_connection_hook) (every socket it
    /// accepts goes through it, so a hook that keeps a socket for itself makes this wait
    /// for the next one), and the [maximum](Self::max_pending_connections) of queued
    /// connections. Like [`wait_for_new_connection`](Self::wait_for_new_connection) it
    /// accepts everything waiting up to that maximum and queues what it does not return.
    ///
    /// How it waits:
    /// - Unix: the listening socket is registered with the runtime's reactor (epoll,
    ///   kqueue), so a waiting accept uses no thread;
    /// - with a [callback](Self::on_new_connection) registered, the acceptor thread
    ///   accepts, and this waits to be told of what it queued (a callback that takes
    ///   every socket itself leaves none for it);
    /// - Windows: a named pipe has no readiness to register, so one blocking wait per
    ///   server runs on Tokio's blocking pool (`spawn_blocking`), however many accepts
    ///   wait. It ends when a client connects, the server closes, or the last accept
    ///   waiting returns or is dropped.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future (in `select!`, on a timeout) loses no
    /// connection. One it accepted but did not return stays in the queue, for the next
    /// accept of any kind; one not yet accepted stays in the OS backlog.
    ///
    /// # Errors
    /// `Operation` when not listening; Qt's codes for a failing `accept`.
    ///
    /// # Panics
    /// When polled outside a Tokio runtime, or in one without IO
    /// ([`enable_io`](tokio::runtime::Builder::enable_io)) on Unix.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use solo_instance::{LocalServer, LocalSocket};
    ///
    /// # let name = format!("doc-accept-async-{}", std::process::id());
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    /// runtime.block_on(async {
    ///     let mut server = LocalServer::new();
    ///     server.listen(&name)?;
    ///     // A client in another thread (or another process).
    ///     let client = std::thread::spawn(move || -> solo_instance::Result<()> {
    ///         LocalSocket::connect(&name)?.write_all(b"hi")?;
    ///         Ok(())
    ///     });
    ///     let mut socket = server.accept_async().await?;
    ///     client.join().unwrap()?;
    ///     let mut got = Vec::new();
    ///     socket.read_to_end(&mut got)?; // a LocalSocket reads and writes blocking
    ///     assert_eq!(got, b"hi");
    ///     Ok::<(), solo_instance::Error>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn accept_async(&self) -> Result<LocalSocket> {
        self.accept_with(&mut None).await
    }

    /// The async sequence of accepted connections, while the server listens: each
    /// [`next`](AsyncIncoming::next) is an [`accept_async`](Self::accept_async) (`Some` of
    /// its result) that keeps its registration with the reactor from one connection to the
    /// next, and `None` once the server does not listen.
    /// Available with the `tokio` feature.
    ///
    /// ```
    /// # use solo_instance::{LocalServer, LocalSocket};
    /// # let name = format!("doc-incoming-async-{}", std::process::id());
    /// # let mut server = LocalServer::new();
    /// # server.listen(&name)?;
    /// # let clients = std::thread::spawn(move || {
    /// #     (0..3).map(|_| LocalSocket::connect(&name)).collect::<Result<Vec<_>, _>>()
    /// # });
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    /// # runtime.block_on(async {
    /// let mut incoming = server.incoming_async();
    /// let mut served = Vec::new();
    /// while let Some(socket) = incoming.next().await {
    ///     served.push(socket?); // or hand it to a task or a thread
    ///     if served.len() == 3 { break }
    /// }
    /// # drop(clients.join().unwrap()?);
    /// # Ok::<(), solo_instance::Error>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn incoming_async(&self) -> AsyncIncoming<'_> {
        AsyncIncoming { server: self, readiness: None }
    }

    async fn accept_with(&self, readiness: &mut Option<Readiness>) -> Result<LocalSocket> {
        #[cfg(windows)]
        let _accepting = self.listener.as_deref().map(|l| Accepting::new(&self.shared, l));
        loop {
            let Some(listener) = &self.listener else {
                // As the blocking wait (and Qt 6): refused for the state, not recorded.
                return Err(Error::socket(
                    LocalSocketError::Operation,
                    format!("{FUNCTION}: Not listening"),
                    None,
                ));
            };
            let state = &self.shared.async_state;
            // Listen for pushes before looking at the queue, so none falls in between.
            let mut pushed = pin!(state.notify.notified());
            pushed.as_mut().enable();
            if let Some(socket) = self.shared.pop() {
                return Ok(socket);
            }
            let (acceptor, full) = {
                let q = lock(&self.shared.queue);
                (q.acceptor.is_some(), q.sockets.len() >= q.max)
            };
            if acceptor || full {
                // The acceptor thread accepts; or nothing may be accepted until a
                // socket is taken (a limit of 0): wait to be told.
                pushed.await;
                continue;
            }
            #[cfg(unix)]
            {
                let ready = match readiness {
                    Some(ready) => ready,
                    None => readiness
                        .insert(sys::AsyncListener::new(listener).map_err(|e| self.fail_io(FUNCTION, e))?),
                };
                ready
                    .accept_when_ready(pushed, || self.shared.accept_some(listener, usize::MAX))
                    .await
                    .map_err(|e| self.fail_io(FUNCTION, e))?;
            }
            #[cfg(windows)]
            {
                use std::sync::atomic::Ordering;
                use std::sync::Arc;
                let _: &mut Option<Readiness> = readiness;
                // Outside a runtime this panics here, before the flag is set.
                let runtime = tokio::runtime::Handle::current();
                if !state.waiting.swap(true, Ordering::SeqCst) {
                    let shared = Arc::clone(&self.shared);
                    sys::wait_in_background(&runtime, Arc::clone(listener), move || {
                        shared.async_state.waiting.store(false, Ordering::SeqCst);
                        shared.async_state.notify.notify_waiters();
                    });
                }
                pushed.await;
                self.shared.accept_some(listener, usize::MAX).map_err(|e| self.fail_io(FUNCTION, e))?;
            }
        }
    }
}

/// What an [`AsyncIncoming`] keeps between connections: the reactor registration (Unix).
#[cfg(unix)]
type Readiness = sys::AsyncListener;
#[cfg(windows)]
type Readiness = ();

/// The async sequence [`LocalServer::incoming_async`] returns (the `tokio` feature).
#[derive(Debug)]
pub struct AsyncIncoming<'a> {
    server: &'a LocalServer,
    readiness: Option<Readiness>,
}

impl AsyncIncoming<'_> {
    /// The next connection, as [`LocalServer::accept_async`] (and as cancel safe);
    /// `None` when the server is not listening.
    pub async fn next(&mut self) -> Option<Result<LocalSocket>> {
        if !self.server.is_listening() {
            return None;
        }
        Some(self.server.accept_with(&mut self.readiness).await)
    }
}
