//! The pending queue a [`LocalServer`](super::LocalServer) shares with its acceptor
//! thread, its callback and hook, and [`PendingConnections`] handles: accepting into
//! it, announcing what was queued, and the acceptor thread's loop.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::ThreadId;
use std::time::Duration;

#[cfg(feature = "tokio")]
use super::asynchronous;
use super::listen::qt_server_error;
use super::DEFAULT_MAX_PENDING_CONNECTIONS;
use crate::{sys, LocalSocket, LocalSocketError};

type Callback = dyn FnMut(&PendingConnections) + Send;
type Hook = dyn Fn(LocalSocket, &PendingConnections) + Send + Sync;

/// A handle on a server's pending queue, given to the `newConnection` callback and the
/// `incomingConnection` hook; cheap to clone and usable from any thread.
#[derive(Clone)]
pub struct PendingConnections(pub(super) Arc<Shared>);

pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    pub(super) cond: Condvar,
    pub(super) hook: RwLock<Option<Arc<Hook>>>,
    pub(super) callback: Mutex<Option<Box<Callback>>>,
    pub(super) error: Mutex<Option<(LocalSocketError, String)>>,
    /// What async accepts wait on: pushes notify it.
    #[cfg(feature = "tokio")]
    pub(super) async_state: asynchronous::State,
}

pub(super) struct Queue {
    pub(super) sockets: VecDeque<LocalSocket>,
    pub(super) max: usize,
    /// Counts sockets ever queued: the acceptor thread compares it to announce them.
    pub(super) generation: u64,
    pub(super) closed: bool,
    /// Threads blocked on `cond`: without any, notifying costs a needless system call.
    pub(super) waiters: usize,
    /// Threads blocked in the listener's `wait` in pull mode, and that listener: a push
    /// from another thread wakes them.
    pub(super) pollers: usize,
    pub(super) listener: Option<Arc<sys::Listener>>,
    /// The running acceptor thread (woken through `listener` by pushes from others).
    pub(super) acceptor: Option<ThreadId>,
    /// The names accepted sockets get (Qt 6 on Unix): (server name, full server name).
    pub(super) accepted_names: Option<crate::socket::SocketNames>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl fmt::Debug for PendingConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingConnections").field("len", &self.0.len()).finish()
    }
}

impl Shared {
    /// An empty, closed queue with Qt's default limit.
    pub(super) fn new() -> Self {
        Shared {
            queue: Mutex::new(Queue {
                sockets: VecDeque::new(),
                max: DEFAULT_MAX_PENDING_CONNECTIONS,
                generation: 0,
                closed: true,
                waiters: 0,
                pollers: 0,
                listener: None,
                acceptor: None,
                accepted_names: None,
            }),
            cond: Condvar::new(),
            hook: RwLock::new(None),
            callback: Mutex::new(None),
            error: Mutex::new(None),
            #[cfg(feature = "tokio")]
            async_state: Default::default(),
        }
    }

    /// Waits on `cond`, counted in `waiters`.
    pub(super) fn wait<'a>(
        &self,
        mut q: MutexGuard<'a, Queue>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Queue> {
        q.waiters += 1;
        let mut q = match timeout {
            None => self.cond.wait(q).unwrap_or_else(|p| p.into_inner()),
            Some(t) => self.cond.wait_timeout(q, t).unwrap_or_else(|p| p.into_inner()).0,
        };
        q.waiters -= 1;
        q
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.queue).sockets.len()
    }

    pub(super) fn pop(&self) -> Option<LocalSocket> {
        let mut q = lock(&self.queue);
        let was_full = q.sockets.len() >= q.max;
        let s = q.sockets.pop_front();
        let waiters = q.waiters > 0;
        drop(q);
        if waiters && was_full && s.is_some() {
            self.cond.notify_all();
        }
        s
    }

    pub(super) fn push(&self, socket: LocalSocket) {
        let mut q = lock(&self.queue);
        if q.closed {
            return;
        }
        q.sockets.push_back(socket);
        q.generation += 1;
        let acceptor_elsewhere = q.acceptor.is_some_and(|id| id != std::thread::current().id());
        let wake = (acceptor_elsewhere || q.pollers > 0).then(|| q.listener.clone()).flatten();
        // A thread in a blocking accept4 (`LocalServer::accept` on Linux) registered
        // under this lock: it must see the socket, as a poller does.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let kick = q.listener.as_ref().filter(|l| l.blocked() > 0).cloned();
        let waiters = q.waiters > 0;
        drop(q);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(listener) = kick {
            listener.wake_blocked();
        }
        if waiters {
            self.cond.notify_all();
        }
        #[cfg(feature = "tokio")]
        self.async_state.notify.notify_waiters();
        if let Some(listener) = wake {
            listener.wake();
        }
    }

    /// Accepts what is waiting, up to the queue's limit, through the hook.
    pub(super) fn accept_batch(
        self: &Arc<Self>,
        listener: &sys::Listener,
        limit: usize,
    ) -> io::Result<usize> {
        self.accept_some(listener, limit).map(|(accepted, _)| accepted)
    }

    /// [`accept_batch`](Self::accept_batch), also telling whether it stopped because no
    /// connection was left to accept (what an edge-triggered waiter must know).
    pub(super) fn accept_some(
        self: &Arc<Self>,
        listener: &sys::Listener,
        limit: usize,
    ) -> io::Result<(usize, bool)> {
        let mut accepted = 0;
        while accepted < limit {
            let names = {
                let q = lock(&self.queue);
                if q.closed || q.sockets.len() >= q.max {
                    return Ok((accepted, false));
                }
                q.accepted_names.clone()
            };
            let Some(stream) = listener.try_accept()? else { return Ok((accepted, true)) };
            accepted += 1;
            let mut socket = LocalSocket::from_stream(stream);
            if let Some(names) = names {
                socket.set_names(names);
            }
            let hook = self.hook.read().unwrap_or_else(|p| p.into_inner()).clone();
            match hook {
                Some(hook) => hook(socket, &PendingConnections(Arc::clone(self))),
                None => self.push(socket),
            }
        }
        Ok((accepted, false))
    }

    /// Keeps a panic on the acceptor thread as the server's error, so it is not silent.
    fn record_panic(&self, what: &str) {
        let message = format!("QLocalServer: the {what} panicked; the server goes on");
        *lock(&self.error) = Some((LocalSocketError::Unknown, message));
    }

    pub(super) fn acceptor_loop(self: Arc<Self>, listener: &sys::Listener, mut announced: u64) {
        loop {
            let q = lock(&self.queue);
            if q.closed {
                return;
            }
            if q.generation != announced {
                announced = q.generation;
                drop(q);
                let announced_ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if let Some(cb) = lock(&self.callback).as_mut() {
                        cb(&PendingConnections(Arc::clone(&self)));
                    }
                }));
                if announced_ok.is_err() {
                    self.record_panic("newConnection callback");
                }
                continue;
            }
            if q.sockets.len() >= q.max {
                // Full: accept nothing until a socket is taken, as Qt does.
                drop(self.wait(q, None));
                continue;
            }
            drop(q);
            let result = listener.wait(None).and_then(|r| match r.acceptable {
                // A panicking hook loses the one socket it held, not the server.
                true => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.accept_batch(listener, usize::MAX).map(drop)
                }))
                .unwrap_or_else(|_| {
                    self.record_panic("incomingConnection hook");
                    Ok(())
                }),
                false => Ok(()),
            });
            if let Err(e) = result {
                *lock(&self.error) = Some(qt_server_error("QLocalSocket::activated", &e));
                // Out of descriptors and the like: the listener stays readable, so back
                // off rather than spin.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl PendingConnections {
    /// Takes the next queued connection, if any. Never blocks.
    pub fn next_pending_connection(&self) -> Option<LocalSocket> {
        self.0.pop()
    }

    /// Whether a connection is queued.
    pub fn has_pending_connections(&self) -> bool {
        self.0.len() > 0
    }

    /// How many connections are queued.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Queues `socket` and announces it: waiters wake and the `newConnection` callback
    /// runs (Qt's `addPendingConnection` followed by `newConnection`). This is what the
    /// default `incomingConnection` hook does. Dropped if the server has closed.
    pub fn push(&self, socket: LocalSocket) {
        self.0.push(socket)
    }
}
