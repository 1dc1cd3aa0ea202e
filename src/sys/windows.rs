//! Windows: named pipes through interprocess. A named pipe has no readiness to poll, so a
//! listener keeps one thread blocked in `accept` and hands each connection over a slot;
//! `wait` then waits on that slot with a timeout, without polling.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use interprocess::local_socket::traits::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, Stream, ToFsName};
use interprocess::os::windows::named_pipe::local_socket::Stream as PipeLocalStream;
use interprocess::os::windows::named_pipe::{pipe_mode, DuplexPipeStream};
use interprocess::ConnectWaitMode;

use super::Ready;
use crate::{LocalSocketError, SocketOptions};

#[derive(Debug, Default)]
struct State {
    ready: Option<io::Result<Stream>>,
    woken: bool,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A named-pipe listener with its accepting thread.
#[derive(Debug)]
pub(crate) struct Listener {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Listener {
    /// Creates the first instance of pipe `path`. Access options are not applied (see
    /// [`SocketOptions`]); the backlog has no meaning for pipes.
    ///
    /// interprocess creates the listener's first instance with `FILE_FLAG_FIRST_PIPE_INSTANCE`
    /// (interprocess 2.4.7, `os/windows/named_pipe/listener/create_instance.rs`, lines 26 and
    /// 85-86), so while any instance of the pipe exists `CreateNamedPipeW` fails with
    /// `ERROR_ACCESS_DENIED`, which [`server_error`] reports as `AddressInUse`. Later
    /// instances (one per `accept`) are created without the flag. A server that does not
    /// ask for the flag itself (Qt's `QLocalServer`, for one) can still add instances to a
    /// pipe this listener owns.
    pub(crate) fn bind(path: &Path, options: SocketOptions, _backlog: i32) -> io::Result<Self> {
        if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        let name = path.as_os_str().to_fs_name::<GenericFilePath>()?;
        let listener = ListenerOptions::new().name(name).create_sync()?;
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name("solo-instance pipe accept".into()).spawn(move || loop {
                {
                    let mut st = worker.lock();
                    while st.ready.is_some() && !st.closed {
                        st = worker.cond.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                    if st.closed {
                        return;
                    }
                }
                let r = listener.accept();
                let failed = r.is_err();
                let mut st = worker.lock();
                if st.closed {
                    return;
                }
                st.ready = Some(r);
                worker.cond.notify_all();
                drop(st);
                if failed {
                    // Do not spin on a persistent error.
                    std::thread::sleep(Duration::from_millis(50));
                }
            })?;
        Ok(Listener { shared, thread: Some(thread), path: path.to_path_buf() })
    }

    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Ready> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.lock();
        loop {
            if st.ready.is_some() || st.woken {
                st.woken = false;
                return Ok(Ready { acceptable: st.ready.is_some() });
            }
            st = match deadline {
                None => self.shared.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Ready::default());
                    }
                    self.shared.cond.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    pub(crate) fn wake(&self) {
        self.shared.lock().woken = true;
        self.shared.cond.notify_all();
    }

    pub(crate) fn try_accept(&self) -> io::Result<Option<Stream>> {
        let taken = self.shared.lock().ready.take();
        self.shared.cond.notify_all();
        taken.transpose()
    }

    pub(crate) fn remove_own_file(&self) {}
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.cond.notify_all();
        if let Some(t) = self.thread.take() {
            // Unblock the thread's accept with a connection of our own; not once the thread
            // has ended (and dropped the pipe), when the name may be someone else's.
            if !t.is_finished() {
                let _ = connect(&self.path, SocketOptions::empty(), Some(Duration::from_millis(200)));
            }
            let _ = t.join();
        }
    }
}

pub(crate) fn connect(path: &Path, options: SocketOptions, timeout: Option<Duration>) -> io::Result<Stream> {
    if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    // Checks, as the listener does, that this is a named pipe path.
    path.as_os_str().to_fs_name::<GenericFilePath>()?;
    let mode = timeout.map_or(ConnectWaitMode::Unbounded, ConnectWaitMode::Timeout);
    // Not `local_socket::ConnectOptions`: on Windows interprocess 2.4.7 ignores its wait mode
    // and always waits for ever for a free instance
    // (`os/windows/named_pipe/local_socket/stream.rs`, line 42). The pipe stream's own
    // constructor honours a timeout (WaitNamedPipeW, then another try, until the deadline).
    let pipe = DuplexPipeStream::<pipe_mode::Bytes>::connect_by_path_with_wait_mode(path, mode)?;
    Ok(Stream::from(PipeLocalStream::from(pipe)))
}

/// Pipes vanish with their last handle; there is no file to remove.
pub(crate) fn remove_server(_path: &Path) -> io::Result<()> {
    Ok(())
}

const ERROR_FILE_NOT_FOUND: i32 = 2;
const ERROR_ACCESS_DENIED: i32 = 5;
const ERROR_SEM_TIMEOUT: i32 = 121;
const ERROR_INVALID_NAME: i32 = 123;
const ERROR_BAD_PATHNAME: i32 = 161;
const ERROR_ALREADY_EXISTS: i32 = 183;
const ERROR_PIPE_BUSY: i32 = 231;

pub(crate) fn server_error(e: &io::Error) -> (LocalSocketError, &'static str) {
    match e.raw_os_error() {
        Some(ERROR_ACCESS_DENIED) => (LocalSocketError::AddressInUse, "Address in use"),
        Some(ERROR_ALREADY_EXISTS | ERROR_PIPE_BUSY) => (LocalSocketError::AddressInUse, "Address in use"),
        Some(ERROR_INVALID_NAME | ERROR_BAD_PATHNAME | ERROR_FILE_NOT_FOUND) => {
            (LocalSocketError::ServerNotFound, "Name error")
        }
        _ if e.kind() == io::ErrorKind::Unsupported => {
            (LocalSocketError::UnsupportedSocketOperation, "The socket operation is not supported")
        }
        _ => (LocalSocketError::Unknown, ""),
    }
}

pub(crate) fn connect_error(e: &io::Error) -> LocalSocketError {
    match e.raw_os_error() {
        Some(ERROR_FILE_NOT_FOUND | ERROR_INVALID_NAME | ERROR_BAD_PATHNAME) => {
            LocalSocketError::ServerNotFound
        }
        Some(ERROR_ACCESS_DENIED) => LocalSocketError::SocketAccess,
        Some(ERROR_PIPE_BUSY | ERROR_SEM_TIMEOUT) => LocalSocketError::SocketTimeout,
        _ if e.kind() == io::ErrorKind::TimedOut => LocalSocketError::SocketTimeout,
        _ if e.kind() == io::ErrorKind::NotFound => LocalSocketError::ServerNotFound,
        _ if e.kind() == io::ErrorKind::Unsupported => LocalSocketError::UnsupportedSocketOperation,
        _ => LocalSocketError::Unknown,
    }
}
