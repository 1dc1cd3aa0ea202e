//! [`LocalServer`]: Qt's `QLocalServer`, with one pending queue serving the pull,
//! callback and iterator styles.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crate::{name, sys, Error, LocalSocket, LocalSocketError, Result, SocketOptions};

#[cfg(feature = "tokio")]
mod asynchronous;
#[cfg(feature = "tokio")]
pub use asynchronous::AsyncIncoming;

/// `.XXXXXX/s`: what binding in a private directory adds after the socket's directory.
const PRIVATE_DIR_NAME_LEN: usize = 9;

/// Qt's default for [`LocalServer::max_pending_connections`].
pub const DEFAULT_MAX_PENDING_CONNECTIONS: usize = 30;
/// Qt's default for [`LocalServer::listen_backlog_size`].
pub const DEFAULT_LISTEN_BACKLOG_SIZE: i32 = 50;

type Callback = dyn FnMut(&PendingConnections) + Send;
type Hook = dyn Fn(LocalSocket, &PendingConnections) + Send + Sync;

/// A local server: Qt's `QLocalServer` with Rust names. See the [crate docs](crate) for
/// the Qt-to-Rust table.
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
}

/// A handle on a server's pending queue, given to the `newConnection` callback and the
/// `incomingConnection` hook; cheap to clone and usable from any thread.
#[derive(Clone)]
pub struct PendingConnections(Arc<Shared>);

struct Shared {
    queue: Mutex<Queue>,
    cond: Condvar,
    hook: RwLock<Option<Arc<Hook>>>,
    callback: Mutex<Option<Box<Callback>>>,
    error: Mutex<Option<(LocalSocketError, String)>>,
    /// What async accepts wait on: pushes notify it.
    #[cfg(feature = "tokio")]
    async_state: asynchronous::State,
}

struct Queue {
    sockets: VecDeque<LocalSocket>,
    max: usize,
    /// Counts sockets ever queued: the acceptor thread compares it to announce them.
    generation: u64,
    closed: bool,
    /// Threads blocked on `cond`: without any, notifying costs a needless system call.
    waiters: usize,
    /// Threads blocked in the listener's `wait` in pull mode, and that listener: a push
    /// from another thread wakes them.
    pollers: usize,
    listener: Option<Arc<sys::Listener>>,
    /// The running acceptor thread (woken through `listener` by pushes from others).
    acceptor: Option<ThreadId>,
    /// The names accepted sockets get (Qt 6 on Unix): (server name, full server name).
    accepted_names: Option<(String, PathBuf)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

impl fmt::Debug for PendingConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingConnections").field("len", &self.0.len()).finish()
    }
}

impl LocalServer {
    /// A server that does not listen yet, with Qt's defaults: no socket options, at most
    /// 30 pending connections, a listen backlog of 50.
    pub fn new() -> Self {
        LocalServer {
            shared: Arc::new(Shared {
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
            }),
            listener: None,
            acceptor: None,
            server_name: None,
            full_server_name: None,
            options: SocketOptions::empty(),
            backlog: DEFAULT_LISTEN_BACKLOG_SIZE,
            #[cfg(windows)]
            pipe_sddl: None,
        }
    }

    /// Listens on `name`, resolved by Qt's rules: a name starting with `/` is the socket
    /// path; any other name is put in [`temp_dir()`](crate::temp_dir) (`$TMPDIR`, else
    /// `/tmp`). On Windows the name becomes the pipe `\\.\pipe\name`.
    ///
    /// # Errors
    /// [`Error::Socket`] with Qt's code and text (also kept for
    /// [`server_error`](Self::server_error) and [`error_string`](Self::error_string)):
    /// - `AddressInUse` ("QLocalServer::listen: Address in use"): something is at that
    ///   path, a live server or a stale socket file. Unlike Qt, this holds with access
    ///   options too: a running server's socket is never replaced. Remove a stale file
    ///   with [`remove_server`](Self::remove_server) first, as Qt programs do.
    /// - `ServerNotFound` (Qt's `HostNotFoundError`, "Name error"): an empty name, a
    ///   missing directory, or a path longer than the platform allows (the message
    ///   states the limit, where Qt reports "Unknown error 0").
    /// - `SocketAccess` ("Permission denied"): the directory is not writable.
    /// - `Operation`: the server is listening already.
    pub fn listen(&mut self, name: &str) -> Result<()> {
        const FUNCTION: &str = "QLocalServer::listen";
        self.check_not_listening(FUNCTION)?;
        if name.is_empty() || name.contains('\0') && !name::nul_allowed(self.options) {
            return Err(self.fail(LocalSocketError::ServerNotFound, format!("{FUNCTION}: Name error"), None));
        }
        let full = name::full_name(name, self.options);
        let len = full.as_os_str().len();
        // With access options the socket is first bound as `<dir>/.XXXXXX/s`: 9 bytes more
        // than `<dir>/`, so short names need room for that too.
        let file_name_len = full.file_name().map_or(0, |f| f.len());
        let private_len = len - file_name_len + PRIVATE_DIR_NAME_LEN;
        let needs_private_dir =
            self.options.file_mode().is_some() && !self.options.contains(SocketOptions::ABSTRACT_NAMESPACE);
        if cfg!(unix)
            && (len > name::MAX_SOCKET_PATH || needs_private_dir && private_len > name::MAX_SOCKET_PATH)
        {
            let msg = if len > name::MAX_SOCKET_PATH {
                format!(
                    "{FUNCTION}: Name error: the socket path is {len} bytes, longer than the {} this platform allows",
                    name::MAX_SOCKET_PATH
                )
            } else {
                format!(
                    "{FUNCTION}: Name error: with access options the socket is first bound in a private \
                     directory beside it, a path of {private_len} bytes, longer than the {} this platform allows",
                    name::MAX_SOCKET_PATH
                )
            };
            return Err(self.fail(LocalSocketError::ServerNotFound, msg, None));
        }
        #[cfg(windows)]
        let bound = sys::Listener::bind_with_sddl(&full, self.options, self.pipe_sddl.as_deref());
        #[cfg(not(windows))]
        let bound = sys::Listener::bind(&full, self.options, self.backlog);
        match bound {
            Ok(listener) => {
                self.start(listener, Some(name.to_owned()), Some(full));
                Ok(())
            }
            Err(e) => Err(self.fail_io(FUNCTION, e)),
        }
    }

    /// Listens on a socket that is already bound and listening (Qt's
    /// `listen(qintptr socketDescriptor)`), such as one passed by systemd socket
    /// activation. The socket becomes close-on-exec and non-blocking; its file is never
    /// unlinked. Its name is read with `getsockname`, as Qt 6 reads it: a path gives
    /// [`full_server_name`](Self::full_server_name) the path and
    /// [`server_name`](Self::server_name) its last part; an abstract name (Linux) gives
    /// both the name itself, without a leading `@` (Qt 5 wrote `@name`), and adds
    /// [`ABSTRACT_NAMESPACE`](SocketOptions::ABSTRACT_NAMESPACE) to the
    /// [`socket_options`](Self::socket_options) (a path removes it).
    ///
    /// # Errors
    /// A socket that cannot accept (not a listening stream socket, such as one end of a
    /// `socketpair`) is refused with `UnsupportedSocketOperation`, where Qt takes it and
    /// then never accepts anything; `Operation` when listening already.
    #[cfg(unix)]
    pub fn listen_fd(&mut self, fd: std::os::fd::OwnedFd) -> Result<()> {
        const FUNCTION: &str = "QLocalServer::listen";
        self.check_not_listening(FUNCTION)?;
        match sys::Listener::adopt(fd) {
            Ok((listener, full, is_abstract)) => {
                if let Some(is_abstract) = is_abstract {
                    self.options.set(SocketOptions::ABSTRACT_NAMESPACE, is_abstract);
                }
                let name = full.as_ref().map(|f| {
                    let s = f.to_string_lossy();
                    match s.rsplit_once('/') {
                        Some((_, last)) if !last.is_empty() && is_abstract != Some(true) => last.to_owned(),
                        _ => s.into_owned(),
                    }
                });
                self.start(listener, name, full);
                Ok(())
            }
            Err(e) => Err(self.fail_io(FUNCTION, e)),
        }
    }

    /// Starts serving on `listener`. The last error stays, as in Qt 6: only `close` clears it.
    fn start(&mut self, listener: sys::Listener, name: Option<String>, full: Option<PathBuf>) {
        let accepted_names = full.as_ref().filter(|_| cfg!(unix)).map(|full| {
            // Qt 6 names an accepted socket by its local address: the full name, and as
            // the server name its last part (the whole name, for an abstract one).
            let text = full.to_string_lossy();
            let short = match text.rsplit_once('/') {
                Some((_, last))
                    if !last.is_empty() && !self.options.contains(SocketOptions::ABSTRACT_NAMESPACE) =>
                {
                    last.to_owned()
                }
                _ => text.into_owned(),
            };
            (short, full.clone())
        });
        self.server_name = name;
        self.full_server_name = full;
        let listener = Arc::new(listener);
        self.listener = Some(Arc::clone(&listener));
        {
            let mut q = lock(&self.shared.queue);
            q.closed = false;
            q.listener = Some(listener);
            q.accepted_names = accepted_names;
        }
        if lock(&self.shared.callback).is_some() {
            self.spawn_acceptor();
        }
    }

    /// `listen` on a listening server is an `Operation` error. Qt warns and returns false,
    /// and keeps its last error, so this is not recorded as the server's error either.
    fn check_not_listening(&self, function: &str) -> Result<()> {
        match self.is_listening() {
            true => Err(Error::socket(
                LocalSocketError::Operation,
                format!("{function}: Already listening"),
                None,
            )),
            false => Ok(()),
        }
    }

    fn fail(&self, kind: LocalSocketError, message: String, source: Option<io::Error>) -> Error {
        *lock(&self.shared.error) = Some((kind, message.clone()));
        Error::socket(kind, message, source)
    }

    fn fail_io(&self, function: &str, e: io::Error) -> Error {
        let (kind, message) = qt_server_error(function, &e);
        self.fail(kind, message, Some(e))
    }

    /// Stops listening: wakes and joins the acceptor thread, drops the pending sockets
    /// (as Qt does), and removes the socket file, but only if it is still the one this
    /// server bound (Qt removes whatever is at the path, even another server's socket).
    /// Does nothing when not listening.
    pub fn close(&mut self) {
        let Some(listener) = self.listener.take() else { return };
        {
            let mut q = lock(&self.shared.queue);
            q.closed = true;
            q.sockets.clear();
            q.acceptor = None;
            q.listener = None;
            q.accepted_names = None;
        }
        self.shared.cond.notify_all();
        listener.wake();
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

    /// Qt's `socketDescriptor()` on Windows gives an event handle of its own, not a pipe:
    /// nothing to hand out here, so always `None`.
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

    /// Windows: the security descriptor, as SDDL, for the next `listen`, in place of the one
    /// the socket options give.
    #[cfg(windows)]
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
        lock(&self.shared.queue).max = n;
        self.shared.cond.notify_all();
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

    /// Whether a connection is waiting in the queue.
    pub fn has_pending_connections(&self) -> bool {
        self.shared.len() > 0
    }

    /// Takes the next connection from the queue, if any. Never blocks.
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

    /// Blocks until a connection is pending and takes it (std's `accept`).
    pub fn accept(&self) -> Result<LocalSocket> {
        loop {
            if let Some(s) = self.next_pending_connection() {
                return Ok(s);
            }
            self.wait(None, 1)?;
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

    /// An endless iterator of accepted connections (each `next` is an
    /// [`accept`](Self::accept)); it ends when the server is not listening.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { server: self }
    }

    /// Registers Qt's `newConnection` signal as a callback and starts the acceptor
    /// thread (now, or at the next `listen`). It runs on that thread after sockets were
    /// queued, and usually drains the queue through the handle it gets:
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

    /// Removes the socket file of server `name` (Qt's static `removeServer`), whether or
    /// not a server still listens on it: use it to clear a stale socket left by a crash,
    /// and only when you know none runs ([`SingleInstance`](crate::SingleInstance)
    /// proves that with a lock first). A missing file is not an error. No-op on Windows.
    pub fn remove_server(name: &str) -> io::Result<()> {
        if name.is_empty() {
            return Ok(());
        }
        sys::remove_server(&name::full_name(name, SocketOptions::empty()))
    }

    fn spawn_acceptor(&mut self) {
        let Some(listener) = self.listener.clone() else { return };
        let shared = Arc::clone(&self.shared);
        let mut q = lock(&self.shared.queue);
        let start_generation = q.generation;
        let spawned = std::thread::Builder::new()
            .name("solo-instance accept".into())
            .spawn(move || shared.acceptor_loop(&listener, start_generation));
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

/// Qt's code and text for a failed server call (`QLocalServerPrivate::setError`).
fn qt_server_error(function: &str, e: &io::Error) -> (LocalSocketError, String) {
    let (kind, text) = sys::server_error(e);
    let message = if kind == LocalSocketError::Unknown {
        format!("{function}: Unknown error {}", e.raw_os_error().unwrap_or(0))
    } else {
        format!("{function}: {text}")
    };
    (kind, message)
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    /// Waits on `cond`, counted in `waiters`.
    fn wait<'a>(&self, mut q: MutexGuard<'a, Queue>, timeout: Option<Duration>) -> MutexGuard<'a, Queue> {
        q.waiters += 1;
        let mut q = match timeout {
            None => self.cond.wait(q).unwrap_or_else(|p| p.into_inner()),
            Some(t) => self.cond.wait_timeout(q, t).unwrap_or_else(|p| p.into_inner()).0,
        };
        q.waiters -= 1;
        q
    }

    fn len(&self) -> usize {
        lock(&self.queue).sockets.len()
    }

    fn pop(&self) -> Option<LocalSocket> {
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

    fn push(&self, socket: LocalSocket) {
        let mut q = lock(&self.queue);
        if q.closed {
            return;
        }
        q.sockets.push_back(socket);
        q.generation += 1;
        let acceptor_elsewhere = q.acceptor.is_some_and(|id| id != std::thread::current().id());
        let wake = (acceptor_elsewhere || q.pollers > 0).then(|| q.listener.clone()).flatten();
        let waiters = q.waiters > 0;
        drop(q);
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
    fn accept_batch(self: &Arc<Self>, listener: &sys::Listener, limit: usize) -> io::Result<usize> {
        self.accept_some(listener, limit).map(|(accepted, _)| accepted)
    }

    /// [`accept_batch`](Self::accept_batch), also telling whether it stopped because no
    /// connection was left to accept (what an edge-triggered waiter must know).
    fn accept_some(self: &Arc<Self>, listener: &sys::Listener, limit: usize) -> io::Result<(usize, bool)> {
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
            if let Some((name, full)) = names {
                socket.set_names(name, full);
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

    fn acceptor_loop(self: Arc<Self>, listener: &sys::Listener, mut announced: u64) {
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
