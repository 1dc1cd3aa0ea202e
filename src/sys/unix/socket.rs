//! Socket creation and addresses, connecting, and what a connected socket needs beyond
//! interprocess: the peer's pid on macOS, taking a line already received, writing with a
//! deadline.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use interprocess::local_socket::Stream;
use interprocess::os::unix::uds_local_socket as uds;

use super::cvt;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use super::set_cloexec_nonblocking;
use crate::SocketOptions;

/// A new stream socket, close-on-exec (and non-blocking if asked), in one system call
/// where `socket(2)` takes those flags.
pub(super) fn new_socket(nonblocking: bool) -> io::Result<OwnedFd> {
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
pub(super) const SUN_PATH_OFFSET: usize = mem::offset_of!(libc::sockaddr_un, sun_path);

/// A `sockaddr_un` for a path, or for an abstract name (Linux) when `abstract_ns`.
pub(super) fn sockaddr(name: &[u8], abstract_ns: bool) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
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

pub(super) fn bind_listen(
    fd: BorrowedFd<'_>,
    name: &[u8],
    abstract_ns: bool,
    backlog: i32,
) -> io::Result<()> {
    let (addr, len) = sockaddr(name, abstract_ns)?;
    cvt(unsafe { libc::bind(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) })?;
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
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
