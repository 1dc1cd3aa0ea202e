//! Windows: named pipes through interprocess. A named pipe has no readiness to poll, so a
//! listener keeps one thread blocked in `accept` and hands each connection over a slot;
//! `wait` then waits on that slot with a timeout, without polling.
//!
//! Named pipes have no I/O timeouts either (interprocess refuses `set_recv_timeout`);
//! [`IoDeadline`] bounds a blocking read or write instead, with `CancelIoEx` from one
//! shared timer thread.
//!
//! [`security`] builds Qt's security descriptors and reads a pipe's owner and its client's
//! user back, for the peer checks.

mod security;

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use interprocess::local_socket::traits::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, Stream, ToFsName};
use interprocess::os::windows::named_pipe::local_socket::Stream as PipeLocalStream;
use interprocess::os::windows::named_pipe::{pipe_mode, DuplexPipeStream};

use super::Ready;
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
    SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{WaitNamedPipeW, NMPWAIT_WAIT_FOREVER};

use crate::{LocalSocketError, Sid, SocketOptions};
#[cfg(test)]
pub(crate) use security::PRETEND_USER;
pub(crate) use security::{
    create_shared_dir, current_user, directory_owner, is_trusted_owner, shared_pipe_sddl,
};
#[cfg(test)]
pub(crate) use security::{from_sddl, integrity_is_enough, object_integrity, pipe_security};

#[derive(Debug, Default)]
struct State {
    ready: Option<io::Result<Stream>>,
    woken: bool,
    closed: bool,
    /// The raw `HANDLE` of the pipe instance the accept thread is (about to be) blocked on
    /// in `ConnectNamedPipe`; `None` outside `accept`. The thread clears it, under this
    /// lock, before the handle can be closed, so `Drop` may cancel its I/O under the lock.
    accepting: Option<usize>,
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
    /// Creates the first instance of pipe `path`, with the security descriptor Qt gives the
    /// access bits of `options` (see [`security::pipe_security_descriptor`]) on every
    /// instance, and refusing remote clients (interprocess sets `PIPE_REJECT_REMOTE_CLIENTS`
    /// unless asked not to: `create_instance.rs`, line 100). The backlog has no meaning for
    /// pipes.
    ///
    /// interprocess creates the listener's first instance with `FILE_FLAG_FIRST_PIPE_INSTANCE`
    /// (interprocess 2.4.7, `os/windows/named_pipe/listener/create_instance.rs`, lines 26 and
    /// 85-86), so while any instance of the pipe exists `CreateNamedPipeW` fails with
    /// `ERROR_ACCESS_DENIED`, which [`server_error`] reports as `AddressInUse`. Later
    /// instances (one per `accept`) are created without the flag. A server that does not
    /// ask for the flag itself (Qt's `QLocalServer`, for one) can still add instances to a
    /// pipe this listener owns.
    #[cfg(test)]
    pub(crate) fn bind(path: &Path, options: SocketOptions, _backlog: i32) -> io::Result<Self> {
        Self::bind_with_sddl(path, options, None)
    }

    /// [`bind`](Self::bind), with the security descriptor `sddl` (SDDL) instead of the
    /// one `options` give, where it is `Some`.
    pub(crate) fn bind_with_sddl(
        path: &Path,
        options: SocketOptions,
        sddl: Option<&str>,
    ) -> io::Result<Self> {
        if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        let name = path.as_os_str().to_fs_name::<GenericFilePath>()?;
        let mut opts = ListenerOptions::new().name(name);
        let sd = match sddl {
            Some(sddl) => Some(security::from_sddl(sddl)?),
            None => security::pipe_security_descriptor(options)?,
        };
        if let Some(sd) = sd {
            use interprocess::os::windows::local_socket::ListenerOptionsExt;
            opts = opts.security_descriptor(sd);
        }
        let listener = opts.create_sync()?;
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
                    // Only this thread accepts, so the stored instance is the one `accept`
                    // waits on (interprocess locks it for `as_raw_handle`, uncontended here).
                    st.accepting = match &listener {
                        interprocess::local_socket::Listener::NamedPipe(l) => {
                            Some(l.inner().as_raw_handle() as usize)
                        }
                    };
                }
                let r = listener.accept();
                let failed = r.is_err();
                let mut st = worker.lock();
                st.accepting = None;
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
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
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
        let Some(t) = self.thread.take() else { return };
        // Unblock the thread's `ConnectNamedPipe` by cancelling it, again until the thread
        // ends (a cancel that comes just before the call cancels nothing). A connection of
        // our own would do too, but it may reach another server's instance of the same
        // name (one created without FILE_FLAG_FIRST_PIPE_INSTANCE, or any under Wine) and
        // leave this thread blocked; it is only the fallback.
        let give_up = Instant::now() + Duration::from_secs(1);
        while !t.is_finished() && Instant::now() < give_up {
            let st = self.shared.lock();
            if let Some(h) = st.accepting {
                // SAFETY: `accepting` is cleared under this lock before its handle can be
                // closed (see `State::accepting`), and the lock is held across the call.
                unsafe { CancelIoEx(h as HANDLE, std::ptr::null()) };
            }
            drop(st);
            std::thread::sleep(Duration::from_millis(2));
        }
        // Not once the thread has ended (and dropped the pipe): the name may be another's.
        if !t.is_finished() {
            let _ = connect(&self.path, SocketOptions::empty(), Some(Duration::from_millis(200)));
        }
        let _ = t.join();
    }
}

/// Connects to pipe `path`, waiting up to `timeout` (`None`: for ever) for a free instance.
///
/// Not interprocess's connect: that opens the pipe with Windows' default quality of service,
/// `SecurityImpersonation`, which lets whoever created the pipe act as this process (a pipe
/// squatter, who got the name first, included). This opens it with `SECURITY_SQOS_PRESENT |
/// SECURITY_IDENTIFICATION`: the server may learn who connected (the primary's peer check
/// needs that) but cannot act as the client. Qt's `QLocalSocket` leaves the default; a
/// server that impersonates its clients (Qt's does not) would be refused here. It asks for
/// read and write access without `FILE_APPEND_DATA` (`GENERIC_WRITE` has it), which on a
/// pipe means creating instances: see [`security::CLIENT_ACCESS`].
///
/// (interprocess 2.4.7's `local_socket::ConnectOptions` would also ignore the wait mode on
/// Windows and wait for ever: `os/windows/named_pipe/local_socket/stream.rs`, line 42.)
pub(crate) fn connect(path: &Path, options: SocketOptions, timeout: Option<Duration>) -> io::Result<Stream> {
    if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    // Checks, as the listener does, that this is a named pipe path.
    path.as_os_str().to_fs_name::<GenericFilePath>()?;
    let wide: Vec<u16> = {
        use std::os::windows::ffi::OsStrExt;
        path.as_os_str().encode_wide().chain([0]).collect()
    };
    if wide[..wide.len() - 1].contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a pipe name cannot hold a NUL"));
    }
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        // SAFETY: `wide` is NUL-terminated; no security attributes, no template.
        let h = unsafe {
            CreateFileW(
                wide.as_ptr(),
                security::CLIENT_ACCESS,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                std::ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                std::ptr::null_mut(),
            )
        };
        if h != windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE {
            // SAFETY: a handle just opened, owned by nobody else.
            let handle = unsafe {
                <std::os::windows::io::OwnedHandle as std::os::windows::io::FromRawHandle>::from_raw_handle(
                    h as _,
                )
            };
            let pipe = DuplexPipeStream::<pipe_mode::Bytes>::try_from(handle)
                .map_err(|e| io::Error::other(e.to_string()))?;
            return Ok(Stream::from(PipeLocalStream::from(pipe)));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(ERROR_PIPE_BUSY) {
            return Err(e);
        }
        // Every instance is taken: wait for one, until the deadline.
        let wait = match deadline {
            None => NMPWAIT_WAIT_FOREVER,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::from_raw_os_error(ERROR_SEM_TIMEOUT));
                }
                // 0 would mean the pipe's default wait; NMPWAIT_WAIT_FOREVER is u32::MAX.
                left.as_millis().clamp(1, u128::from(u32::MAX - 1)) as u32
            }
        };
        // SAFETY: `wide` is NUL-terminated.
        if unsafe { WaitNamedPipeW(wide.as_ptr(), wait) } == 0 {
            let e = io::Error::last_os_error();
            // Gone meanwhile: not found. Timed out: ERROR_SEM_TIMEOUT. Either ends the wait.
            if e.raw_os_error() != Some(ERROR_PIPE_BUSY) {
                return Err(e);
            }
        }
    }
}

/// The SID at the other end of a pipe, as Windows says it: on the server's end the client's
/// user (the identity it connected with); on a client's end the
/// pipe's owner, which the server's security descriptor set: only a privileged process can
/// make another user the owner.
pub(crate) fn peer_sid(stream: &Stream) -> Option<Sid> {
    let p = pipe(stream);
    if p.is_server() {
        security::client_user(p)
    } else {
        security::pipe_security(p.as_handle()).ok().and_then(|s| s.owner)
    }
}

/// The number of names (hard links) `file` has.
pub(crate) fn link_count(file: &std::fs::File) -> io::Result<u32> {
    use windows_sys::Win32::Storage::FileSystem::{GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION};
    // SAFETY: all-zero is a valid BY_HANDLE_FILE_INFORMATION (plain integers).
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `file`'s handle is open; `info` is a valid out pointer.
    if unsafe { GetFileInformationByHandle(file.as_raw_handle() as HANDLE, &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.nNumberOfLinks)
}

/// The Terminal Services session of this process: one per login (fast user switching and
/// remote desktop sessions each have their own).
pub(crate) fn session_id() -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: `id` is a valid out pointer.
    let ok = unsafe {
        windows_sys::Win32::System::RemoteDesktop::ProcessIdToSessionId(std::process::id(), &mut id)
    };
    (ok != 0).then_some(id)
}

/// Whether the pipe this client end reached has an integrity level good enough to be this
/// process's primary (see [`security::integrity_is_enough`]). Unknown counts as not.
pub(crate) fn server_integrity_ok(stream: &Stream) -> bool {
    match (security::object_integrity(pipe(stream).as_handle()), security::own_integrity()) {
        (Ok(pipe), Ok(own)) => security::integrity_is_enough(pipe, own),
        _ => false,
    }
}

/// The pid of the process serving the pipe this client end is connected to.
pub(crate) fn server_pid(stream: &Stream) -> Option<u32> {
    pipe(stream).server_process_id().ok()
}

/// Lets process `pid` take the foreground (`AllowSetForegroundWindow`). Windows gives that
/// right to the process the user just started (the launch); a launch that forwards hands it
/// on to the primary this way before it sends, so the primary's `SetForegroundWindow` works,
/// as Chromium, VS Code and tauri-plugin-single-instance do. Fails harmlessly when this
/// process has no such right to pass on.
pub(crate) fn allow_foreground(pid: u32) -> bool {
    // SAFETY: no pointers; any pid is accepted (an unknown one fails).
    unsafe { windows_sys::Win32::UI::WindowsAndMessaging::AllowSetForegroundWindow(pid) != 0 }
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

use windows_sys::Win32::System::IO::CancelIoEx;

/// A deadline on a pipe's blocking I/O: named pipes have no read or write timeouts, so
/// while this guard lives, a shared timer thread cancels (`CancelIoEx`) the pipe's
/// pending I/O once `deadline` has passed, and again every [`RECANCEL`] until the guard
/// is dropped (an operation started just after a cancel is caught by the next one).
///
/// interprocess does pipe I/O with `ReadFileEx`/`WriteFileEx` and waits alertably for
/// the completion routine (and flushes with `FlushFileBuffers`), so a cancelled read,
/// write or [`flush`] returns `ERROR_OPERATION_ABORTED`, which std reports as
/// [`io::ErrorKind::TimedOut`]: callers treat it as a socket timeout on Unix. A cancelled
/// read consumes nothing (one that completed first is not cancelled); a cancelled write
/// may have sent part of its bytes, so after a timeout the connection is given up: a
/// guard that expired marks the stream flushed when dropped, so that dropping the stream
/// closes the pipe at once rather than in interprocess' linger pool (see [`flush`]).
///
/// The guard borrows the stream, so the handle is open for as long as the timer may use
/// it; dropping the guard takes it out of the timer's list under the timer's lock, so no
/// cancel follows the drop.
///
/// Cost: nothing until the first guard; then one thread for the process, asleep on a
/// condition variable while no deadline is pending. Arming and dropping a guard take the
/// timer's lock once each.
#[derive(Debug)]
pub(crate) struct IoDeadline<'a> {
    entry: Arc<DeadlineEntry>,
    stream: &'a Stream,
}

/// How often an expired deadline cancels again while its guard lives.
const RECANCEL: Duration = Duration::from_millis(25);

#[derive(Debug)]
struct DeadlineEntry {
    /// The raw `HANDLE`, open while the entry is in the timer's list.
    handle: usize,
    deadline: Instant,
    expired: AtomicBool,
}

#[derive(Debug, Default)]
struct Timer {
    entries: Mutex<Vec<Arc<DeadlineEntry>>>,
    cond: Condvar,
}

static TIMER: OnceLock<Option<Arc<Timer>>> = OnceLock::new();

fn timer() -> Option<&'static Arc<Timer>> {
    TIMER
        .get_or_init(|| {
            let timer = Arc::new(Timer::default());
            let t = Arc::clone(&timer);
            std::thread::Builder::new()
                .name("solo-instance pipe deadlines".into())
                .stack_size(64 * 1024)
                .spawn(move || t.run())
                .ok()
                .map(|_| timer)
        })
        .as_ref()
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<DeadlineEntry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let mut entries = self.lock();
        loop {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for e in entries.iter() {
                let at = if now >= e.deadline {
                    e.expired.store(true, Ordering::SeqCst);
                    // SAFETY: the handle belongs to a stream that the entry's guard borrows;
                    // the guard takes the entry out of this list (under this lock) before the
                    // borrow ends, so the handle is open here.
                    unsafe { CancelIoEx(e.handle as HANDLE, std::ptr::null()) };
                    now + RECANCEL
                } else {
                    e.deadline
                };
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            entries = match next {
                None => self.cond.wait(entries).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    self.cond.wait_timeout(entries, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }
}

pub(crate) fn pipe(stream: &Stream) -> &DuplexPipeStream<pipe_mode::Bytes> {
    match stream {
        Stream::NamedPipe(s) => s.inner(),
    }
}

impl<'a> IoDeadline<'a> {
    /// Arms a deadline on `stream`'s I/O until the guard is dropped. Should the timer
    /// thread fail to start, the guard does nothing (the I/O is unbounded, as without it).
    pub(crate) fn arm(stream: &'a Stream, deadline: Instant) -> IoDeadline<'a> {
        let handle = pipe(stream).as_handle().as_raw_handle() as usize;
        let entry = Arc::new(DeadlineEntry { handle, deadline, expired: AtomicBool::new(false) });
        if let Some(timer) = timer() {
            timer.lock().push(Arc::clone(&entry));
            timer.cond.notify_one();
        }
        IoDeadline { entry, stream }
    }

    /// Whether the deadline passed and the stream's I/O was cancelled.
    #[cfg(test)]
    pub(crate) fn expired(&self) -> bool {
        self.entry.expired.load(Ordering::SeqCst)
    }
}

impl Drop for IoDeadline<'_> {
    fn drop(&mut self) {
        if let Some(timer) = timer() {
            timer.lock().retain(|e| !Arc::ptr_eq(e, &self.entry));
        }
        if self.entry.expired.load(Ordering::SeqCst) {
            pipe(self.stream).assume_flushed();
        }
    }
}

/// Waits until the peer has read everything written to `stream` (`FlushFileBuffers`);
/// bound it with an [`IoDeadline`]. On failure (a cancel, a peer gone) the stream is
/// marked flushed.
///
/// Why: interprocess hands a dropped pipe with unflushed writes to its linger pool, whose
/// one persistent thread flushes such pipes one after another before closing them. A
/// peer that neither reads nor closes would block that thread for as long as it lives,
/// and every pipe dropped after it would stay open (its peer never seeing the end) until
/// eight queue up and a helper thread starts. Flushing here, bounded, and dropping the
/// pipe clean closes it at once.
pub(crate) fn flush(stream: &Stream) -> io::Result<()> {
    let p = pipe(stream);
    p.flush().inspect_err(|_| p.assume_flushed())
}

/// Pipes offer no peek here: every request goes to a reader thread.
pub(crate) fn take_ready_line(_socket: &crate::LocalSocket, _max: usize) -> Option<Vec<u8>> {
    None
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn pair(tag: &str) -> (Listener, Stream, Stream) {
        let path = PathBuf::from(format!(r"\\.\pipe\solo-unit-{}-{tag}", std::process::id()));
        let listener = Listener::bind(&path, SocketOptions::empty(), 0).unwrap();
        let client = connect(&path, SocketOptions::empty(), Some(Duration::from_secs(5))).unwrap();
        listener.wait(Some(Duration::from_secs(5))).unwrap();
        let server = listener.try_accept().unwrap().expect("accepted");
        (listener, client, server)
    }

    /// A read blocked past its deadline is cancelled and reports TimedOut; the stream
    /// stays usable and no byte is lost; an unexpired guard changes nothing.
    #[test]
    fn deadline_cancels_a_blocked_read() {
        let (_l, client, server) = pair("read");
        let t = Instant::now();
        let guard = IoDeadline::arm(&server, t + Duration::from_millis(200));
        let mut buf = [0u8; 4];
        let e = (&server).read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e:?}");
        assert!(guard.expired());
        assert!(t.elapsed() >= Duration::from_millis(190), "{:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        drop(guard);

        let _guard = IoDeadline::arm(&server, Instant::now() + Duration::from_secs(30));
        (&client).write_all(b"abcd").unwrap();
        (&server).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
    }

    /// Dropping a listener whose thread waits in `ConnectNamedPipe` cancels that wait:
    /// prompt, and without the connection of our own that the fallback makes.
    #[test]
    fn drop_cancels_the_blocked_accept() {
        for i in 0..20 {
            let path = PathBuf::from(format!(r"\\.\pipe\solo-unit-{}-drop{i}", std::process::id()));
            let listener = Listener::bind(&path, SocketOptions::empty(), 0).unwrap();
            if i % 2 == 1 {
                std::thread::sleep(Duration::from_millis(20));
            }
            let t = Instant::now();
            drop(listener);
            assert!(t.elapsed() < Duration::from_millis(900), "drop took {:?}", t.elapsed());
        }
    }

    /// A flush (waiting for the peer to read) is cancelled as well, and the stream, marked
    /// flushed, closes at once when dropped: the peer's next write finds the pipe broken
    /// (were it handed to the linger pool, it would stay open while the peer does not read).
    #[test]
    fn deadline_cancels_a_blocked_flush_and_the_pipe_closes() {
        let (_l, client, server) = pair("flush");
        (&server).write_all(b"unread").unwrap();
        let t = Instant::now();
        let guard = IoDeadline::arm(&server, t + Duration::from_millis(200));
        let e = flush(&server).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        drop(guard);
        drop(server);
        let e = (&client).write_all(b"x").unwrap_err();
        assert!(matches!(e.raw_os_error(), Some(232 | 109 | 233)), "{e:?}"); // NO_DATA, BROKEN_PIPE, NOT_CONNECTED
    }

    /// `flush` returns once the peer has read everything.
    #[test]
    fn flush_returns_when_the_peer_has_read() {
        let (_l, client, server) = pair("flushed");
        (&server).write_all(b"read me").unwrap();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = [0u8; 7];
            (&client).read_exact(&mut buf).unwrap();
            client
        });
        let _guard = IoDeadline::arm(&server, Instant::now() + Duration::from_secs(10));
        flush(&server).unwrap();
        drop(reader.join().unwrap());
    }

    /// A write that cannot complete (the peer never reads, the 512-byte pipe buffer is
    /// full) is cancelled too.
    #[test]
    fn deadline_cancels_a_blocked_write() {
        let (_l, _client, server) = pair("write");
        let t = Instant::now();
        let _guard = IoDeadline::arm(&server, t + Duration::from_millis(200));
        let e = (&server).write_all(&vec![7u8; 1 << 20]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
}
