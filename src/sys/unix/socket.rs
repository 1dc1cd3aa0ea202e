//! Socket creation and addresses, connecting, and what a connected socket needs beyond
//! interprocess: the peer's credentials on Linux and pid on macOS, taking a line already received, writing with a
//! deadline.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use interprocess::local_socket::Stream;
use interprocess::os::unix::uds_local_socket as uds;
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};

use super::poll::{ms_until, poll};
use crate::SocketOptions;

/// A new stream socket, close-on-exec (and non-blocking if asked), in one system call
/// where `socket(2)` takes those flags.
pub(super) fn new_socket(nonblocking: bool) -> io::Result<OwnedFd> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::net::SocketFlags;
        let flags =
            SocketFlags::CLOEXEC | if nonblocking { SocketFlags::NONBLOCK } else { SocketFlags::empty() };
        Ok(rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
        super::set_cloexec_nonblocking(fd.as_fd(), nonblocking)?;
        Ok(fd)
    }
}

/// The address of a path, or of an abstract name (Linux) when `abstract_ns`.
fn address(name: &[u8], abstract_ns: bool) -> io::Result<SocketAddrUnix> {
    // One byte of `sun_path` stays free: the terminating NUL of a path (rustix would take
    // a path that fills it), the leading NUL of an abstract name.
    if name.len() > crate::name::MAX_SOCKET_PATH {
        return Err(Errno::NAMETOOLONG.into());
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if abstract_ns {
        return Ok(SocketAddrUnix::new_abstract_name(name)?);
    }
    let _ = abstract_ns;
    // The kernel reads a path up to its first NUL; so does this address.
    let path = name.split(|&b| b == 0).next().unwrap_or_default();
    Ok(SocketAddrUnix::new(OsStr::from_bytes(path))?)
}

/// Binds `fd` to the path (or abstract name) `name` and listens with `backlog`.
pub(super) fn bind_listen(
    fd: BorrowedFd<'_>,
    name: &[u8],
    abstract_ns: bool,
    backlog: i32,
) -> io::Result<()> {
    rustix::net::bind(fd, &address(name, abstract_ns)?)?;
    rustix::net::listen(fd, backlog)?;
    Ok(())
}

/// Connects to `path` (or the abstract `name`). With a timeout, a full backlog is retried
/// until the deadline; without one, connect blocks while the backlog is full.
pub(crate) fn connect(path: &Path, options: SocketOptions, timeout: Option<Duration>) -> io::Result<Stream> {
    connect_with(path, options, timeout, false)
}

/// [`connect`], leaving a socket connected with a timeout non-blocking (for the crate's
/// own callers, which wait with `poll(2)`): no `FIONBIO` after the connect.
pub(crate) fn connect_nonblocking(
    path: &Path,
    options: SocketOptions,
    timeout: Option<Duration>,
) -> io::Result<Stream> {
    connect_with(path, options, timeout, true)
}

fn connect_with(
    path: &Path,
    options: SocketOptions,
    timeout: Option<Duration>,
    keep_nonblocking: bool,
) -> io::Result<Stream> {
    let abstract_ns = options.contains(SocketOptions::ABSTRACT_NAMESPACE);
    if abstract_ns && !cfg!(any(target_os = "linux", target_os = "android")) {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    let addr = address(path.as_os_str().as_bytes(), abstract_ns)?;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let fd = new_socket(deadline.is_some())?;
    let mut backoff = Duration::from_micros(500);
    loop {
        let e = match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(e) => e,
        };
        match (e, deadline) {
            (Errno::INTR, _) => continue,
            (Errno::AGAIN, Some(d)) => {
                // Linux: the backlog is full and nothing happened; try again shortly.
                let now = Instant::now();
                if now >= d {
                    return Err(Errno::TIMEDOUT.into());
                }
                std::thread::sleep(backoff.min(d - now));
                backoff = (backoff * 2).min(Duration::from_millis(20));
            }
            (Errno::INPROGRESS, Some(d)) => {
                // BSD: the connection completes in the background.
                let ms = d.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32;
                if poll(&mut [PollFd::new(&fd, PollFlags::OUT)], ms)? == 0 {
                    return Err(Errno::TIMEDOUT.into());
                }
                let stream = UnixStream::from(fd);
                if let Some(e) = stream.take_error()? {
                    return Err(e);
                }
                return finish_connect(stream, !keep_nonblocking);
            }
            _ => return Err(e.into()),
        }
    }
    finish_connect(UnixStream::from(fd), deadline.is_some() && !keep_nonblocking)
}

fn finish_connect(stream: UnixStream, was_nonblocking: bool) -> io::Result<Stream> {
    if was_nonblocking {
        rustix::io::ioctl_fionbio(&stream, false)?;
    }
    Ok(Stream::from(uds::Stream::from(stream)))
}

/// The peer's credentials as Linux recorded them at connect time (`SO_PEERCRED`): pid,
/// uid, gid. The pid is `None` where the kernel gives 0: the peer runs in a pid namespace
/// this process cannot see into (a Flatpak or bubblewrap sandbox, a container), or, from
/// inside one, outside it. Its uid is right all the same, and is what the peer checks use.
/// A uid or gid of `(uid_t)-1` (the kernel has no credentials for the peer) is `None`.
///
/// Read through libc: interprocess refuses a pid of 0 (`ConnectionReset`), and rustix's
/// `UCred` holds the pid as a non-zero `Pid`, which a 0 from the kernel would break.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_ucred(fd: BorrowedFd<'_>) -> io::Result<(Option<u32>, Option<u32>, Option<u32>)> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; `cred` and `len` are live, writable locals and
    // `len` holds `cred`'s size, so the kernel writes no more than a `ucred` (all of whose
    // fields are plain integers, valid for any value).
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "SO_PEERCRED: unexpected size"));
    }
    let pid = u32::try_from(cred.pid).ok().filter(|&p| p != 0);
    let id = |v: u32| (v != u32::MAX).then_some(v);
    Ok((pid, id(cred.uid), id(cred.gid)))
}

/// The peer's pid where interprocess gives none: `LOCAL_PEERPID` on macOS, through libc
/// (rustix has no `LOCAL_PEERPID`). Linux reads all of it itself ([`peer_ucred`]).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn peer_pid(socket: &crate::LocalSocket) -> Option<u32> {
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    {
        let pid = super::getsockopt_int(socket.as_fd(), libc::SOL_LOCAL, libc::LOCAL_PEERPID).ok()?;
        (pid > 0).then_some(pid as u32)
    }
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    {
        let _ = socket;
        None
    }
}

/// Reads what is there before `deadline` (blocking or not, the socket is waited for with
/// `poll(2)`, so no `SO_RCVTIMEO` is set) into `buf`, which need not be initialised (the
/// kernel writes what it reads): `Ok(0)` at end of stream, `TimedOut` when the deadline
/// passed first.
pub(crate) fn recv_until(
    socket: &crate::LocalSocket,
    buf: &mut [std::mem::MaybeUninit<u8>],
    deadline: Instant,
) -> io::Result<usize> {
    let fd = socket.as_fd();
    loop {
        if deadline.saturating_duration_since(Instant::now()).is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        match poll(&mut [PollFd::from_borrowed_fd(fd, PollFlags::IN)], ms_until(deadline)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        match rustix::net::recv(fd, &mut *buf, RecvFlags::DONTWAIT) {
            Ok(((read, _), _)) => return Ok(read.len()),
            Err(Errno::WOULDBLOCK | Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes all of `buf` before `deadline`, or fails with `TimedOut`: each write takes only
/// what fits at once (`MSG_DONTWAIT`) and each wait, only when nothing fits, is a
/// `poll(2)` for the time left, so a peer that drains slowly cannot stretch the deadline (a
/// blocking `send` restarts `SO_SNDTIMEO` for each chunk it waits for).
pub(crate) fn write_all_until(
    socket: &crate::LocalSocket,
    mut buf: &[u8],
    deadline: Instant,
) -> io::Result<()> {
    let fd = socket.as_fd();
    // The first send goes without a poll: a fresh connection has room for a request.
    let mut wait = false;
    while !buf.is_empty() {
        if deadline.saturating_duration_since(Instant::now()).is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        if wait {
            match poll(&mut [PollFd::from_borrowed_fd(fd, PollFlags::OUT)], ms_until(deadline)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        match rustix::net::send(fd, buf, send_flags()) {
            Ok(n) => {
                buf = &buf[n..];
                wait = false;
            }
            Err(Errno::WOULDBLOCK) => wait = true,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `MSG_DONTWAIT`, and on Linux `MSG_NOSIGNAL` (a closed peer gives `EPIPE`, never a
/// signal, even in a program that does not ignore `SIGPIPE`).
fn send_flags() -> SendFlags {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return SendFlags::DONTWAIT;
}

/// Sends `buf` without waiting if it fits at once (a reply usually does): `Ok(n)` with
/// the bytes taken, which may be fewer than `buf`'s; `Ok(0)` when nothing fits.
pub(crate) fn send_now(socket: &crate::LocalSocket, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(socket.as_fd(), buf, send_flags()) {
            Ok(n) => return Ok(n),
            Err(Errno::WOULDBLOCK) => return Ok(0),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
