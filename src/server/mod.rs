//! [`LocalServer`]: Qt's `QLocalServer`, with one pending queue serving the pull,
//! callback and iterator styles.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::{sys, LocalSocketError, SocketOptions};

mod accept;
#[cfg(feature = "tokio")]
mod asynchronous;
mod listen;
mod queue;

pub use accept::Incoming;
#[cfg(feature = "tokio")]
pub use asynchronous::AsyncIncoming;
pub use queue::PendingConnections;
use queue::{lock, Shared};

/// Qt's default for [`LocalServer::max_pending_connections`].
pub const DEFAULT_MAX_PENDING_CONNECTIONS: usize = 30;
/// Qt's default for [`LocalServer::listen_backlog_size`].
pub const DEFAULT_LISTEN_BACKLOG_SIZE: i32 = 50;

/// A local server: Qt's `QLocalServer` with Rust names. See the crate docs'
/// [Qt-to-Rust table](crate#qt-to-rust).
///
/// Connections are accepted into a queue of at most
/// [`max_pending_connections`](Self::max_pending_connections) sockets, in three styles:
/// - **pull**: [`wait_for_new_connection`](Self::wait_for_new_connection) then
///   [`next_pending_connection`](Self::next_pending_connection), or
///   [`accept`](Self::accept) / [`try_accept`](Self::try_accept) /
///   [`incoming`](Self::incoming);
/// - **push**: [`on_new_connection`](Self::on_new_connection) registers Qt's
///   `newConnection` as a callback, run on one acceptor thread that sleeps in `poll(2)`;
/// - **hook**: [`set_incoming_connection_hook`](Self::set_incoming_connection_hook)
///   replaces Qt's virtual `incomingConnection`.
///
/// ```
/// use std::io::{Read, Write};
/// use solo_instance::{LocalServer, LocalSocket};
///
/// # let name = format!("doc-server-{}", std::process::id());
/// let mut server = LocalServer::new();
/// server.listen(&name)?;
/// let mut client = LocalSocket::connect(&name)?;
/// client.write_all(b"x")?;
/// let mut accepted = server.accept()?;
/// let mut byte = [0];
/// accepted.read_exact(&mut byte)?;
/// assert_eq!(&byte, b"x");
/// # Ok::<(), solo_instance::Error>(())
/// ```
pub struct LocalServer {
    shared: Arc<Shared>,
    listener: Option<Arc<sys::Listener>>,
    acceptor: Option<JoinHandle<()>>,
    server_name: Option<String>,
    full_server_name: Option<PathBuf>,
    options: SocketOptions,
    backlog: i32,
    /// Windows: a security descriptor (SDDL) that replaces the one `options` would give
    /// (`SingleInstance`'s shared pipe, which lets others connect but not add instances).
    #[cfg(windows)]
    pipe_sddl: Option<String>,
    /// Windows: Qt's exact security descriptors ([`Self::set_qt_windows_security`]).
    qt_windows_security: bool,
}
impl Default for LocalServer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalServer")
            .field("server_name", &self.server_name)
            .field("full_server_name", &self.full_server_name)
            .field("listening", &self.is_listening())
            .field("socket_options", &self.options)
            .field("max_pending_connections", &self.max_pending_connections())
            .field("pending", &self.shared.len())
            .finish()
    }
}

impl LocalServer {
    /// A server that does not listen yet, with Qt's defaults: no socket options, at most
    /// 30 pending connections, a listen backlog of 50.
    pub fn new() -> Self {
        LocalServer {
            shared: Arc::new(Shared::new()),
            listener: None,
            acceptor: None,
            server_name: None,
            full_server_name: None,
            options: SocketOptions::empty(),
            backlog: DEFAULT_LISTEN_BACKLOG_SIZE,
            #[cfg(windows)]
            pipe_sddl: None,
            qt_windows_security: false,
        }
    }

    /// Stops listening: wakes and joins the acceptor thread, drops the pending sockets
    /// (as Qt does), and removes the socket file, but only if it is still the one this
    /// server bound (Qt removes whatever is at the path, even another server's socket).
    /// Does nothing when not listening. Dropping the server closes it too.
    ///
    /// ```
    /// use solo_instance::{LocalServer, LocalSocket};
    ///
    /// # let name = format!("doc-close-{}", std::process::id());
    /// let mut server = LocalServer::new();
    /// server.listen(&name)?;
    /// let _client = LocalSocket::connect(&name)?;
    /// server.close();
    /// assert!(!server.is_listening());
    /// assert!(LocalSocket::connect(&name).is_err()); // the socket file is gone
    /// server.listen(&name)?; // and the name is free again
    /// # Ok::<(), solo_instance::Error>(())
    /// ```
    pub fn close(&mut self) {
        let Some(listener) = self.listener.take() else { return };
        let waiters = {
            let mut q = lock(&self.shared.queue);
            q.closed = true;
            q.sockets.clear();
            q.acceptor = None;
            q.listener = None;
            q.accepted_names = None;
            q.waiters > 0
        };
        // Nobody waiting: no wake-up to send (a needless system call).
        if waiters {
            self.shared.cond.notify_all();
        }
        listener.wake();
        // A blocking accept4 on this socket (`&self` calls cannot run while `close` has
        // `&mut self`, but a clone of the listener in another thread can).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        listener.shut_blocked();
        if let Some(t) = self.acceptor.take() {
            // Closed from the callback itself: that thread ends when the callback returns.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        listener.remove_own_file();
        self.server_name = None;
        self.full_server_name = None;
        *lock(&self.shared.error) = None;
    }

    /// The listening socket, shared: `SingleInstance` accepts on it from its own loop.
    /// On Linux a clone may block in `accept4` ([`sys::Listener::blocking`]); `close`
    /// wakes it.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn sys_listener(&self) -> Option<&Arc<sys::Listener>> {
        self.listener.as_ref()
    }

    /// Whether the server is listening.
    pub fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    /// The listening socket (Qt's `socketDescriptor()`); `None` when not listening. Use it
    /// to register the server with another event loop, or for `getsockopt`; accepting or
    /// closing through it would break the server.
    #[cfg(unix)]
    pub fn socket_descriptor(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.listener.as_deref().map(sys::Listener::fd)
    }

    /// Always `None` on Windows: a named-pipe server has no one handle to give. Each
    /// client connects to a pipe instance of its own; the server's accept thread holds
    /// the instance waiting for the next client and hands it over with the connection,
    /// so the handle changes with every accept. (Qt's `socketDescriptor()` there gives an
    /// event handle of its own, not a pipe.) For the same reason `LocalServer`
    /// implements neither `AsFd` nor `AsHandle`; on Unix this method gives the
    /// listening socket.
    #[cfg(windows)]
    pub fn socket_descriptor(&self) -> Option<std::os::windows::io::BorrowedHandle<'_>> {
        None
    }

    /// The name passed to [`listen`](Self::listen) (for a socket adopted with `listen_fd`,
    /// the last part of its path); `None` when not listening.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The socket path (or pipe name) the server listens on; `None` when not listening.
    pub fn full_server_name(&self) -> Option<&Path> {
        self.full_server_name.as_deref()
    }

    /// The last error, as Qt's `serverError()`: [`LocalSocketError::Unknown`] when there
    /// has been none (then [`error_string`](Self::error_string) is empty). As in Qt 6, it
    /// is the last failure of `listen` (or of accepting): a later successful `listen`
    /// keeps it, [`close`](Self::close) of a listening server clears it, and calls that
    /// fail only because of the server's state (`listen` while listening,
    /// `wait_for_new_connection` while not) return their error without recording it.
    pub fn server_error(&self) -> LocalSocketError {
        lock(&self.shared.error).as_ref().map_or(LocalSocketError::Unknown, |e| e.0)
    }

    /// The last error's text, as Qt's `errorString()`; empty when there has been none.
    pub fn error_string(&self) -> String {
        lock(&self.shared.error).as_ref().map(|e| e.1.clone()).unwrap_or_default()
    }

    /// The socket options the next [`listen`](Self::listen) applies.
    pub fn socket_options(&self) -> SocketOptions {
        self.options
    }

    /// Sets the socket options for the next [`listen`](Self::listen). Default: empty.
    pub fn set_socket_options(&mut self, options: SocketOptions) {
        self.options = options;
    }

    /// Windows: gives the next [`listen`](Self::listen)'s pipe exactly the security
    /// descriptor Qt's `QLocalServer` gives it (default: off). Has no effect elsewhere.
    ///
    /// Off, the crate differs from Qt in two ways, both to keep other users out: with no
    /// access option the pipe allows only this user, SYSTEM and Administrators (Qt leaves
    /// Windows' default descriptor, which lets Everyone and Anonymous read: take instances
    /// of the pipe and receive what the server writes first); and
    /// [`GROUP_ACCESS`](SocketOptions::GROUP_ACCESS) and
    /// [`OTHER_ACCESS`](SocketOptions::OTHER_ACCESS) grant only what a client needs, not
    /// Qt's `FILE_ALL_ACCESS` (which lets them serve instances of the pipe themselves and
    /// change its owner and DACL). On, both are Qt's, for a Qt peer that relies on them.
    pub fn set_qt_windows_security(&mut self, on: bool) {
        self.qt_windows_security = on;
    }

    /// Whether [`set_qt_windows_security`](Self::set_qt_windows_security) is on.
    pub fn qt_windows_security(&self) -> bool {
        self.qt_windows_security
    }

    /// Windows tests: the security descriptor, as SDDL, for the next `listen`, in place of
    /// the one the socket options give.
    #[cfg(all(windows, test))]
    pub(crate) fn set_pipe_sddl(&mut self, sddl: Option<String>) {
        self.pipe_sddl = sddl;
    }

    /// The most accepted connections held in the queue; default 30, as Qt.
    pub fn max_pending_connections(&self) -> usize {
        lock(&self.shared.queue).max
    }

    /// Sets the queue's limit. While the queue is full the server accepts nothing more;
    /// further clients wait in the OS backlog until a socket is taken.
    pub fn set_max_pending_connections(&mut self, n: usize) {
        let mut q = lock(&self.shared.queue);
        q.max = n;
        let waiters = q.waiters > 0;
        drop(q);
        if waiters {
            self.shared.cond.notify_all();
        }
    }

    /// The backlog the next [`listen`](Self::listen) passes to `listen(2)`; default 50,
    /// as Qt. Qt 6's `listenBacklogSize`.
    pub fn listen_backlog_size(&self) -> i32 {
        self.backlog
    }

    /// Sets the backlog for the next [`listen`](Self::listen). No effect on Windows.
    pub fn set_listen_backlog_size(&mut self, n: i32) {
        self.backlog = n;
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use super::LocalServer;

    /// Returns once thread `tid` sleeps in the kernel (`S` in its stat): polled, no timed
    /// sleep; the caller's own timeout catches a thread that never sleeps.
    fn wait_until_asleep(tid: &str) {
        loop {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            if stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]) == Some(b'S') {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// `close` wakes a blocking accept4 of another thread on the same listening socket.
    /// `LocalServer::accept` itself cannot run while `close` has `&mut self`; a shared
    /// listener (`sys_listener`) can.
    #[test]
    fn close_wakes_a_blocking_accept_of_another_thread() {
        let name = format!("solo-close-wakes-{}", std::process::id());
        let mut server = LocalServer::new();
        server.listen(&name).unwrap();
        let listener = Arc::clone(server.sys_listener().unwrap());
        let (tid_tx, tid_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let accepting = std::thread::spawn(move || {
            let link = std::fs::read_link("/proc/thread-self").unwrap();
            tid_tx.send(link.file_name().unwrap().to_str().unwrap().to_owned()).unwrap();
            let blocking = listener.blocking().expect("a socket bound here blocks");
            // Woken without a client: `Ok(None)`.
            done_tx.send(blocking.accept().map(|s| s.is_none()).ok()).unwrap();
        });
        wait_until_asleep(&tid_rx.recv().unwrap());
        server.close();
        let woke = done_rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(woke, Ok(Some(true)), "the blocking accept did not return after close");
        accepting.join().unwrap();
    }
}
