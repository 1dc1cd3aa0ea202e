//! The pull, push and hook styles of accepting on a [`LocalServer`]: waiting, taking
//! from the queue, the `newConnection` callback and its acceptor thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{lock, LocalServer, PendingConnections};
use crate::{Error, LocalSocket, LocalSocketError, Result};

impl LocalServer {
    /// Whether a connection is waiting in the queue.
    pub fn has_pending_connections(&self) -> bool {
        self.shared.len() > 0
    }

    /// Takes the next connection from the queue, if any. Never blocks, and accepts
    /// nothing itself: connections reach the queue through
    /// [`wait_for_new_connection`](Self::wait_for_new_connection) or the acceptor thread
    /// of a [callback](Self::on_new_connection).
    ///
    /// ```
    /// use std::time::Duration;
    /// use solo_instance::{LocalServer, LocalSocket};
    ///
    /// # let name = format!("doc-next-pending-{}", std::process::id());
    /// let mut server = LocalServer::new();
    /// server.listen(&name)?;
    /// assert!(server.next_pending_connection().is_none());
    /// let _a = LocalSocket::connect(&name)?;
    /// let _b = LocalSocket::connect(&name)?;
    /// let mut served = 0;
    /// while served < 2 {
    ///     // Accepts what is waiting (on Unix both at once; a pipe accepts one at a time).
    ///     server.wait_for_new_connection(Some(Duration::from_secs(5)))?;
    ///     while let Some(_socket) = server.next_pending_connection() {
    ///         served += 1;
    ///     }
    /// }
    /// assert_eq!(served, 2);
    /// # Ok::<(), solo_instance::Error>(())
    /// ```
    pub fn next_pending_connection(&self) -> Option<LocalSocket> {
        self.shared.pop()
    }

    /// A handle on the pending queue, for other threads.
    pub fn pending_connections(&self) -> PendingConnections {
        PendingConnections(Arc::clone(&self.shared))
    }

    /// Waits up to `timeout` (`None`: no limit) until a connection is pending, accepting
    /// what arrives into the queue. Returns `Ok(true)` as soon as one is pending (at once
    /// if one already is), `Ok(false)` when the timeout passed.
    ///
    /// It sleeps in `poll(2)` (on Windows, on a condition variable): no busy loop. With
    /// a [callback](Self::on_new_connection) registered, the acceptor thread accepts and
    /// this only waits for it.
    ///
    /// # Errors
    /// `Operation` when not listening; Qt's codes for a failing `accept`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use solo_instance::{LocalServer, LocalSocket};
    ///
    /// # let name = format!("doc-wait-{}", std::process::id());
    /// let mut server = LocalServer::new();
    /// server.listen(&name)?;
    /// // Nobody connects: the wait times out.
    /// assert!(!server.wait_for_new_connection(Some(Duration::from_millis(10)))?);
    ///
    /// let _client = LocalSocket::connect(&name)?;
    /// assert!(server.wait_for_new_connection(Some(Duration::from_secs(5)))?);
    /// assert!(server.next_pending_connection().is_some());
    /// # Ok::<(), solo_instance::Error>(())
    /// ```
    pub fn wait_for_new_connection(&self, timeout: Option<Duration>) -> Result<bool> {
        self.wait(timeout, usize::MAX)
    }

    /// [`wait_for_new_connection`](Self::wait_for_new_connection), accepting at most
    /// `batch` connections per wake-up (one for `accept`, so it costs `poll` + `accept`).
    fn wait(&self, timeout: Option<Duration>, batch: usize) -> Result<bool> {
        const FUNCTION: &str = "QLocalServer::waitForNewConnection";
        let Some(listener) = &self.listener else {
            // Qt returns false without timing out and keeps its last error: not recorded.
            return Err(Error::socket(
                LocalSocketError::Operation,
                format!("{FUNCTION}: Not listening"),
                None,
            ));
        };
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut q = lock(&self.shared.queue);
        if !q.sockets.is_empty() {
            // Qt accepts what is waiting even when connections are pending already: top
            // the queue up to its limit, without waiting.
            if q.acceptor.is_none() && q.sockets.len() < q.max {
                drop(q);
                self.shared.accept_batch(listener, usize::MAX).map_err(|e| self.fail_io(FUNCTION, e))?;
            }
            return Ok(true);
        }
        // The acceptor thread accepts (with a callback registered), or the queue takes
        // nothing (a limit of 0): wait for the queue, on the condition variable.
        if q.acceptor.is_some() || q.max == 0 {
            let seen = q.generation;
            loop {
                if !q.sockets.is_empty() {
                    return Ok(true);
                }
                // Announced, but the callback took it already (as a Qt slot would).
                if q.generation != seen || q.closed {
                    return Ok(false);
                }
                if q.acceptor.is_none() && q.max > 0 {
                    break;
                }
                let left = left();
                if left.is_some_and(|l| l.is_zero()) {
                    return Ok(false);
                }
                q = self.shared.wait(q, left);
            }
        }
        loop {
            // Counted while in poll, so a push from another thread wakes us.
            q.pollers += 1;
            drop(q);
            let ready = listener.wait(left());
            q = lock(&self.shared.queue);
            q.pollers -= 1;
            let ready = ready.map_err(|e| self.fail_io(FUNCTION, e))?;
            if ready.acceptable {
                drop(q);
                let accepted =
                    self.shared.accept_batch(listener, batch).map_err(|e| self.fail_io(FUNCTION, e))?;
                q = lock(&self.shared.queue);
                // As Qt: after accepting, report whether a connection is pending (a hook
                // may have kept what it accepted).
                if accepted > 0 {
                    return Ok(!q.sockets.is_empty());
                }
            }
            if !q.sockets.is_empty() {
                return Ok(true);
            }
            if left().is_some_and(|l| l.is_zero()) {
                return Ok(false);
            }
        }
    }

    /// Blocks until a connection is pending and takes it (std's `accept`): a connection
    /// already queued is taken first, otherwise it waits for one and accepts it.
    ///
    /// # Errors
    /// `Operation` when not listening; Qt's codes for a failing `accept`.
    ///
    /// ```
    /// use std::io::{BufRead, BufReader, Write};
    /// use solo_instance::{LocalServer, LocalSocket};
    ///
    /// # let name = format!("doc-accept-{}", std::process::id());
    /// let mut server = LocalServer::new();
    /// server.listen(&name)?;
    /// let client = std::thread::spawn({
    ///     let name = name.clone();
    ///     move || -> solo_instance::Result<()> {
    ///         let mut socket = LocalSocket::connect(&name)?;
    ///         socket.write_all(b"ping\n")?;
    ///         Ok(())
    ///     }
    /// });
    /// let socket = server.accept()?;
    /// let mut line = String::new();
    /// BufReader::new(&socket).read_line(&mut line)?;
    /// assert_eq!(line, "ping\n");
    /// client.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept(&self) -> Result<LocalSocket> {
        loop {
            if let Some(s) = self.next_pending_connection() {
                return Ok(s);
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            match self.accept_blocking()? {
                Blocked::Accepted(s) => return Ok(s),
                Blocked::Again => continue,
                Blocked::Cannot => {}
            }
            self.wait(None, 1)?;
        }
    }

    /// Linux: [`accept`](Self::accept) as std's, sleeping in `accept4` itself (one system
    /// call, not `poll` and then `accept4`), when nothing else needs a say in accepting:
    /// the queue is empty and may hold sockets, no acceptor thread (callback) and no hook
    /// runs, and the listening socket is still blocking (nothing made it non-blocking:
    /// `try_accept`, `wait_for_new_connection`, the async accepts, an adopted socket).
    /// A push onto the queue from another thread kicks it awake
    /// ([`sys::Listener::wake_blocked`](crate::sys::Listener::wake_blocked)), as it
    /// wakes a `poll`; counted in `blocked` under the queue's lock, so no push is missed.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn accept_blocking(&self) -> Result<Blocked> {
        let Some(listener) = &self.listener else { return Ok(Blocked::Cannot) };
        let q = lock(&self.shared.queue);
        if !q.sockets.is_empty() {
            return Ok(Blocked::Again);
        }
        if q.closed
            || q.max == 0
            || q.acceptor.is_some()
            || self.shared.hook.read().unwrap_or_else(|p| p.into_inner()).is_some()
        {
            return Ok(Blocked::Cannot);
        }
        let Some(blocking) = listener.blocking() else { return Ok(Blocked::Cannot) };
        let names = q.accepted_names.clone();
        drop(q);
        match blocking.accept() {
            Ok(Some(stream)) => {
                let mut socket = LocalSocket::from_stream(stream);
                if let Some(names) = names {
                    socket.set_names(names);
                }
                Ok(Blocked::Accepted(socket))
            }
            Ok(None) => Ok(Blocked::Again),
            Err(e) => Err(self.fail_io("QLocalServer::waitForNewConnection", e)),
        }
    }

    /// Takes a pending connection, accepting one first if one is waiting; `Ok(None)` if
    /// none is. Never blocks.
    pub fn try_accept(&self) -> Result<Option<LocalSocket>> {
        if let Some(s) = self.next_pending_connection() {
            return Ok(Some(s));
        }
        self.wait_for_new_connection(Some(Duration::ZERO))?;
        Ok(self.next_pending_connection())
    }

    /// The iterator of accepted connections, while the server listens: each `next` is
    /// `Some` of an [`accept`](Self::accept)'s result, and `None` once the server does not
    /// listen.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { server: self }
    }

    /// Registers Qt's `newConnection` signal as a callback and starts the acceptor
    /// thread (now, or at the next `listen`; on Unix it starts with the app's asynchronous
    /// signals blocked, as every thread of the crate's). It runs on that thread after
    /// sockets were queued, and usually drains the queue through the handle it gets:
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use solo_instance::{LocalServer, LocalSocket};
    ///
    /// # let name = format!("doc-callback-{}", std::process::id());
    /// let (tx, rx) = mpsc::channel();
    /// let mut server = LocalServer::new();
    /// server.on_new_connection(move |pending| {
    ///     while let Some(socket) = pending.next_pending_connection() {
    ///         tx.send(socket).unwrap();
    ///     }
    /// });
    /// server.listen(&name)?;
    /// let _client = LocalSocket::connect(&name)?;
    /// let _accepted = rx.recv().unwrap();
    /// server.close(); // wakes and joins the acceptor thread at once
    /// # Ok::<(), solo_instance::Error>(())
    /// ```
    pub fn on_new_connection<F>(&mut self, callback: F)
    where
        F: FnMut(&PendingConnections) + Send + 'static,
    {
        *lock(&self.shared.callback) = Some(Box::new(callback));
        if self.is_listening() && self.acceptor.is_none() {
            self.spawn_acceptor();
        }
    }

    /// Replaces Qt's virtual `incomingConnection`: `hook` receives every accepted socket
    /// and decides what becomes of it. The default queues it and announces it
    /// ([`PendingConnections::push`]); a hook may instead hand the socket to a worker, or
    /// drop it to refuse the client.
    pub fn set_incoming_connection_hook<F>(&mut self, hook: F)
    where
        F: Fn(LocalSocket, &PendingConnections) + Send + Sync + 'static,
    {
        *self.shared.hook.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(hook));
    }

    /// Puts back Qt's default `incomingConnection`: queue and announce.
    pub fn reset_incoming_connection_hook(&mut self) {
        *self.shared.hook.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(super) fn spawn_acceptor(&mut self) {
        let Some(listener) = self.listener.clone() else { return };
        let shared = Arc::clone(&self.shared);
        let mut q = lock(&self.shared.queue);
        let start_generation = q.generation;
        // It runs the app's callback, but takes none of the app's signals (Unix): like
        // the crate's other threads it starts with them blocked.
        let thread = std::thread::Builder::new().name("solo-instance accept".into());
        let spawned = crate::sys::with_signals_blocked(|| {
            thread.spawn(move || shared.acceptor_loop(&listener, start_generation))
        });
        match spawned {
            Ok(handle) => {
                q.acceptor = Some(handle.thread().id());
                self.acceptor = Some(handle);
            }
            Err(e) => {
                drop(q);
                let _ = self.fail_io("QLocalServer::newConnection", e);
            }
        }
    }
}

/// What [`LocalServer::accept_blocking`] did.
#[cfg(any(target_os = "linux", target_os = "android"))]
enum Blocked {
    Accepted(LocalSocket),
    /// Woken without a client (a push, a kick): look at the queue again.
    Again,
    /// Not now: accept the other way.
    Cannot,
}

/// The iterator [`LocalServer::incoming`] returns.
#[derive(Debug)]
pub struct Incoming<'a> {
    server: &'a LocalServer,
}

impl Iterator for Incoming<'_> {
    type Item = Result<LocalSocket>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.server.is_listening() {
            return None;
        }
        Some(self.server.accept())
    }
}
