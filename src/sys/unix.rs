//! Unix domain sockets with the platform's own calls where interprocess has none: a chosen
//! backlog, private-directory binding with a no-replace move, poll(2) with a wake-up pipe.

use std::ffi::{CString, OsStr};
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use interprocess::local_socket::traits::{Listener as _, Stream as _};
use interprocess::local_socket::{Listener as IpListener, Stream};
use interprocess::os::unix::uds_local_socket as uds;

use super::Ready;
use crate::{LocalSocketError, SocketOptions};

/// Device and inode of a socket file: what `close` checks before it unlinks.
type FileId = (u64, u64);

/// A listening socket, non-blocking, with its wake-up pipe.
#[derive(Debug)]
pub(crate) struct Listener {
    listener: IpListener,
    /// The listener's descriptor, for poll(2); owned by `listener`.
    raw: RawFd,
    wake_rx: OwnedFd,
    wake_tx: OwnedFd,
    /// The file this listener bound, if it bound one (not for adopted or abstract sockets).
    file: Option<(PathBuf, FileId)>,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

fn set_cloexec_nonblocking(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    unsafe {
        let fdflags = cvt(libc::fcntl(fd, libc::F_GETFD))?;
        cvt(libc::fcntl(fd, libc::F_SETFD, fdflags | libc::FD_CLOEXEC))?;
        let flags = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        let flags = if nonblocking { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        cvt(libc::fcntl(fd, libc::F_SETFL, flags))?;
    }
    Ok(())
}

/// A new stream socket, close-on-exec (and non-blocking if asked), in one system call
/// where `socket(2)` takes those flags.
fn new_socket(nonblocking: bool) -> io::Result<OwnedFd> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let flags =
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
        let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, flags, 0) })?;
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) })?;
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        set_cloexec_nonblocking(fd.as_raw_fd(), nonblocking)?;
        Ok(fd)
    }
}

/// Where `sun_path` starts in a `sockaddr_un`: after `sun_family` on Linux (2), after
/// `sun_len` and `sun_family` on macOS and the BSDs (also 2, but `sa_family_t` is one byte).
const SUN_PATH_OFFSET: usize = mem::offset_of!(libc::sockaddr_un, sun_path);

/// A `sockaddr_un` for a path, or for an abstract name (Linux) when `abstract_ns`.
fn sockaddr(name: &[u8], abstract_ns: bool) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let offset = abstract_ns as usize;
    // One byte stays free: the terminating NUL of a path, the leading NUL of an abstract name.
    if name.len() + 1 > addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in addr.sun_path[offset..].iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    let len = if abstract_ns { SUN_PATH_OFFSET + 1 + name.len() } else { SUN_PATH_OFFSET + name.len() + 1 };
    // The BSD socket address carries its own length (SUN_LEN: the NUL not counted).
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "tvos",
        target_os = "watchos",
        target_os = "visionos",
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd",
    ))]
    {
        addr.sun_len = (SUN_PATH_OFFSET + name.len()) as u8;
    }
    Ok((addr, len as libc::socklen_t))
}

fn bind_listen(fd: BorrowedFd<'_>, name: &[u8], abstract_ns: bool, backlog: i32) -> io::Result<()> {
    let (addr, len) = sockaddr(name, abstract_ns)?;
    cvt(unsafe { libc::bind(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) })?;
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

fn file_id(path: &Path) -> io::Result<FileId> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Moves `from` to `to` unless `to` exists (then `EEXIST`): never replaces a live socket.
fn move_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (cfrom, cto) = (cstr(from)?, cstr(to)?);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        const RENAME_NOREPLACE: libc::c_uint = 1;
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                cfrom.as_ptr(),
                libc::AT_FDCWD,
                cto.as_ptr(),
                RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // Filesystems without RENAME_NOREPLACE say EINVAL; old kernels ENOSYS.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(e);
        }
    }
    // link(2) fails with EEXIST rather than replace; then drop the temporary name.
    cvt(unsafe { libc::link(cfrom.as_ptr(), cto.as_ptr()) })?;
    let _ = std::fs::remove_file(from);
    Ok(())
}

/// A fresh 0700 directory beside `target`, for binding before the mode is set.
fn private_dir(target: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let seed = std::process::id() as u64;
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        let tag = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (n << 32) ^ nanos) & 0xFF_FFFF;
        // As short as Qt's `XXXXXX/s`: the temporary path must fit `sun_path` too.
        let dir = parent.join(format!(".{tag:06x}"));
        let c = cstr(&dir)?;
        match cvt(unsafe { libc::mkdir(c.as_ptr(), 0o700) }) {
            Ok(_) => return Ok(dir),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}

impl Listener {
    /// Binds and listens on `path` (or the abstract `name`), giving the socket file
    /// `options`' mode atomically. Errors keep their OS code for the caller to classify.
    pub(crate) fn bind(path: &Path, options: SocketOptions, backlog: i32) -> io::Result<Self> {
        let fd = new_socket(false)?;
        let bytes = path.as_os_str().as_bytes();
        let file = if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
            if !cfg!(any(target_os = "linux", target_os = "android")) {
                return Err(io::Error::from(io::ErrorKind::Unsupported));
            }
            bind_listen(fd.as_fd(), bytes, true, backlog)?;
            None
        } else if let Some(mode) = options.file_mode() {
            // Qt's order: bind in a private directory, chmod, move into place. Here the move
            // never replaces what is at the target.
            if bytes.len() > crate::name::MAX_SOCKET_PATH {
                return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
            }
            let dir = private_dir(path)?;
            let tmp = dir.join("s");
            let placed = (|| -> io::Result<FileId> {
                bind_listen(fd.as_fd(), tmp.as_os_str().as_bytes(), false, backlog)?;
                let c = cstr(&tmp)?;
                cvt(unsafe { libc::chmod(c.as_ptr(), mode as libc::mode_t) })?;
                let id = file_id(&tmp)?;
                move_no_replace(&tmp, path).map_err(|e| {
                    if e.raw_os_error() == Some(libc::EEXIST) {
                        io::Error::from_raw_os_error(libc::EADDRINUSE)
                    } else {
                        e
                    }
                })?;
                Ok(id)
            })();
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_dir(&dir);
            Some((path.to_path_buf(), placed?))
        } else {
            bind_listen(fd.as_fd(), bytes, false, backlog).inspect_err(|e| {
                // bind created the file but listen failed: remove it (it is ours).
                if e.raw_os_error() != Some(libc::EADDRINUSE) && e.raw_os_error() != Some(libc::ENAMETOOLONG)
                {
                    let _ = unlink_if(path, None);
                }
            })?;
            Some((path.to_path_buf(), file_id(path)?))
        };
        Self::with_fd(fd, file)
    }

    /// Adopts a bound, listening socket: close-on-exec and non-blocking from now on.
    /// Returns the name `getsockname` gives, as Qt 6 reads it (`parseSockaddr`): a path
    /// up to its first NUL; an abstract name without its leading NUL, every byte of the
    /// address kept (trailing NULs too: they are part of it), with `Some(true)`. An
    /// unnamed socket gives no name, and `None` (its options are left alone).
    pub(crate) fn adopt(fd: OwnedFd) -> io::Result<(Self, Option<PathBuf>, Option<bool>)> {
        // Only a listening stream socket can accept: refuse anything else now, not by
        // waiting for ever later.
        let opt = |name| {
            let mut v: libc::c_int = 0;
            let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
            cvt(unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    name,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            })
            .map(|_| v)
        };
        if opt(libc::SO_TYPE)? != libc::SOCK_STREAM || opt(libc::SO_ACCEPTCONN)? == 0 {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "not a listening stream socket"));
        }
        let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        cvt(unsafe {
            libc::getsockname(fd.as_raw_fd(), &mut addr as *mut _ as *mut libc::sockaddr, &mut len)
        })?;
        if addr.sun_family as libc::c_int != libc::AF_UNIX {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "not a Unix domain socket"));
        }
        let path_len = (len as usize).saturating_sub(SUN_PATH_OFFSET).min(addr.sun_path.len());
        let raw: Vec<u8> = addr.sun_path[..path_len].iter().map(|&c| c as u8).collect();
        let abstract_ns = cfg!(any(target_os = "linux", target_os = "android")) && raw.first() == Some(&0);
        let (name, is_abstract) = match raw.first() {
            None => (None, None),
            Some(0) if abstract_ns => ((path_len > 1).then(|| raw[1..].to_vec()), Some(true)),
            Some(_) => {
                let path: Vec<u8> = raw.iter().copied().take_while(|&b| b != 0).collect();
                ((!path.is_empty()).then_some(path), Some(false))
            }
        };
        let name = name.map(|n| PathBuf::from(OsStr::from_bytes(&n)));
        Ok((Self::with_fd(fd, None)?, name, is_abstract))
    }

    fn with_fd(fd: OwnedFd, file: Option<(PathBuf, FileId)>) -> io::Result<Self> {
        set_cloexec_nonblocking(fd.as_raw_fd(), true)?;
        let (wake_rx, wake_tx) = pipe()?;
        let raw = fd.as_raw_fd();
        let listener = IpListener::from(uds::Listener::from(fd));
        Ok(Listener { listener, raw, wake_rx, wake_tx, file })
    }

    /// Waits until a connection can be accepted, [`wake`](Self::wake) is called, or the
    /// timeout passes. No timeout waits for ever.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Ready> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut fds = [
            libc::pollfd { fd: self.raw, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.wake_rx.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Round up, so a wait never ends before its deadline.
                    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
                }
            };
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if r == -1 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents != 0 {
                let mut buf = [0u8; 64];
                while unsafe { libc::read(self.wake_rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0
                {
                }
            }
            return Ok(Ready { acceptable: fds[0].revents != 0 });
        }
    }

    /// The listening socket, for waiting on it elsewhere (the `tokio` feature's readiness)
    /// and for `LocalServer::socket_descriptor`.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `raw` is owned by `self.listener`, open for as long as `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(self.raw) }
    }

    /// Makes a [`wait`](Self::wait) in another thread return. Never blocks.
    pub(crate) fn wake(&self) {
        let _ = unsafe { libc::write(self.wake_tx.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }

    /// Accepts one connection if one is waiting; `Ok(None)` if none is.
    pub(crate) fn try_accept(&self) -> io::Result<Option<Stream>> {
        loop {
            match self.listener.accept() {
                Ok(stream) => {
                    // BSD and macOS hand out accepted sockets with the listener's O_NONBLOCK.
                    if !cfg!(any(target_os = "linux", target_os = "android")) {
                        stream.set_nonblocking(false)?;
                    }
                    return Ok(Some(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // A client gave up before we took it: nothing to hand out, look again.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO)
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the socket file this listener bound, if it is still that file.
    pub(crate) fn remove_own_file(&self) {
        if let Some((path, id)) = &self.file {
            let _ = unlink_if(path, Some(*id));
        }
    }
}

/// Unlinks `path` if it is the file `id` names (any file, with `None`).
fn unlink_if(path: &Path, id: Option<FileId>) -> io::Result<()> {
    if let Some(id) = id {
        if file_id(path)? != id {
            return Ok(());
        }
    }
    std::fs::remove_file(path)
}

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // pipe2 sets the flags atomically: no child forked meanwhile inherits the ends.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        set_cloexec_nonblocking(rx.as_raw_fd(), true)?;
        set_cloexec_nonblocking(tx.as_raw_fd(), true)?;
        Ok((rx, tx))
    }
}

/// Connects to `path` (or the abstract `name`). With a timeout, a full backlog is retried
/// until the deadline; without one, connect blocks while the backlog is full.
pub(crate) fn connect(path: &Path, options: SocketOptions, timeout: Option<Duration>) -> io::Result<Stream> {
    let abstract_ns = options.contains(SocketOptions::ABSTRACT_NAMESPACE);
    if abstract_ns && !cfg!(any(target_os = "linux", target_os = "android")) {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    let (addr, len) = sockaddr(path.as_os_str().as_bytes(), abstract_ns)?;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let fd = new_socket(deadline.is_some())?;
    let mut backoff = Duration::from_micros(500);
    loop {
        let r = unsafe { libc::connect(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match (e.raw_os_error(), deadline) {
            (Some(libc::EINTR), _) => continue,
            (Some(libc::EAGAIN), Some(d)) => {
                // Linux: the backlog is full and nothing happened; try again shortly.
                let now = Instant::now();
                if now >= d {
                    return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
                }
                std::thread::sleep(backoff.min(d - now));
                backoff = (backoff * 2).min(Duration::from_millis(20));
            }
            (Some(libc::EINPROGRESS), Some(d)) => {
                // BSD: the connection completes in the background.
                let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                let ms = d.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128)
                    as libc::c_int;
                if cvt(unsafe { libc::poll(&mut pfd, 1, ms) })? == 0 {
                    return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
                }
                let stream = UnixStream::from(fd);
                if let Some(e) = stream.take_error()? {
                    return Err(e);
                }
                return finish_connect(stream, true);
            }
            _ => return Err(e),
        }
    }
    finish_connect(UnixStream::from(fd), deadline.is_some())
}

fn finish_connect(stream: UnixStream, was_nonblocking: bool) -> io::Result<Stream> {
    if was_nonblocking {
        stream.set_nonblocking(false)?;
    }
    Ok(Stream::from(uds::Stream::from(stream)))
}

/// Removes the socket file of `path`, whether or not a server is listening on it
/// (`QLocalServer::removeServer`). A missing file is not an error.
pub(crate) fn remove_server(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Qt's errno classification for `QLocalServer` (`QLocalServerPrivate::setError`).
pub(crate) fn server_error(e: &io::Error) -> (LocalSocketError, &'static str) {
    match e.raw_os_error() {
        Some(libc::EACCES) => (LocalSocketError::SocketAccess, "Permission denied"),
        Some(libc::ELOOP | libc::ENOENT | libc::ENAMETOOLONG | libc::EROFS | libc::ENOTDIR) => {
            (LocalSocketError::ServerNotFound, "Name error")
        }
        Some(libc::EADDRINUSE) => (LocalSocketError::AddressInUse, "Address in use"),
        _ if e.kind() == io::ErrorKind::Unsupported => {
            (LocalSocketError::UnsupportedSocketOperation, "The socket operation is not supported")
        }
        _ => (LocalSocketError::Unknown, ""),
    }
}

/// Qt's errno classification for `QLocalSocket::connectToServer`.
pub(crate) fn connect_error(e: &io::Error) -> LocalSocketError {
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ECONNREFUSED) => LocalSocketError::ConnectionRefused,
        Some(libc::ENOENT | libc::ENAMETOOLONG | libc::ENOTDIR | libc::ELOOP) => {
            LocalSocketError::ServerNotFound
        }
        Some(libc::EACCES | libc::EPERM) => LocalSocketError::SocketAccess,
        Some(libc::ETIMEDOUT) => LocalSocketError::SocketTimeout,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => LocalSocketError::SocketResource,
        _ if e.kind() == io::ErrorKind::Unsupported => LocalSocketError::UnsupportedSocketOperation,
        _ => LocalSocketError::Unknown,
    }
}

/// The peer's pid where interprocess gives none: `LOCAL_PEERPID` on macOS.
pub(crate) fn peer_pid(socket: &crate::LocalSocket) -> Option<u32> {
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    {
        let mut pid: libc::pid_t = 0;
        let mut len = mem::size_of::<libc::pid_t>() as libc::socklen_t;
        let r = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_LOCAL,
                libc::LOCAL_PEERPID,
                (&mut pid as *mut libc::pid_t).cast(),
                &mut len,
            )
        };
        (r == 0 && pid > 0).then_some(pid as u32)
    }
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    {
        let _ = socket;
        None
    }
}

/// Takes a complete line (without its newline) that is already waiting on `socket`, if
/// there is one within `max` bytes; otherwise consumes nothing and returns `None`.
pub(crate) fn take_ready_line(socket: &crate::LocalSocket, max: usize) -> Option<Vec<u8>> {
    let fd = socket.as_raw_fd();
    let mut buf = vec![0u8; max];
    let peeked = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), max, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    let peeked = usize::try_from(peeked).ok()?;
    let end = buf[..peeked].iter().position(|&b| b == b'\n')?;
    // The bytes are there: this read takes exactly the line and its newline at once.
    let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), end + 1, libc::MSG_DONTWAIT) };
    if usize::try_from(got).ok()? != end + 1 {
        return None;
    }
    buf.truncate(end);
    Some(buf)
}

/// Writes all of `buf` before `deadline`, or fails with `TimedOut`: each wait is a
/// `poll(2)` for the time left and each write takes only what fits at once
/// (`MSG_DONTWAIT`), so a peer that drains slowly cannot stretch the deadline (a blocking
/// `send` restarts `SO_SNDTIMEO` for each chunk it waits for).
pub(crate) fn write_all_until(
    socket: &crate::LocalSocket,
    mut buf: &[u8],
    deadline: Instant,
) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        match cvt(unsafe { libc::poll(&mut pfd, 1, ms) }) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let flags = libc::MSG_DONTWAIT;
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}
