//! Unix domain sockets with the platform's own calls where interprocess has none: a chosen
//! backlog, private-directory binding with a no-replace move, poll(2) with a wake-up pipe.
//!
//! - [`listener`]: binding (in a private directory, moved into place without replacing
//!   anything), adopting a listening socket, waiting and accepting;
//! - [`poll`]: `poll(2)` and the wake-up pipe;
//! - [`signals`]: threads started with the app's signals blocked;
//! - [`socket`]: socket creation and addresses, connecting, and the connected socket's
//!   extras (peer pid, a ready line, a write with a deadline).
//!
//! The single-instance layer's items (see the contract in `sys`):
//! - [`dir`]: the private directory, made and checked, and made again for a primary;
//! - [`location`]: the user's directory, the socket's name (and its private fallback);
//! - [`names`]: `sun_path`'s bound, abstract names, an OS string's bytes;
//! - [`lock`]: the `flock`ed lock file and the pid in it;
//! - [`fork`]: children forked without exec get no lock or listener (Linux);
//! - [`forks`]: the pid, read once, and whether the process forked since a moment;
//! - [`peer`]: what a launch checks of the primary (its uid);
//! - [`published`]: where the primary is published (its socket's path: nothing to do);
//! - [`watch`]: the removal watch (inotify, a kqueue).
//!
//! The system calls go through rustix. libc remains only where rustix has nothing:
//! - `getsockopt(SOL_SOCKET, SO_PEERCRED)` on Linux (`peer_ucred`): rustix's `UCred`
//!   cannot hold the pid 0 the kernel reports for a peer in another pid namespace;
//! - `getsockopt(SOL_LOCAL, LOCAL_PEERPID)` on macOS and iOS (`peer_pid`): rustix has no
//!   `LOCAL_PEERPID`;
//! - `getsockopt(SOL_SOCKET, SO_ACCEPTCONN)` on Apple platforms (adopting a socket): rustix
//!   leaves `socket_acceptconn` out there;
//! - `getsockname` when adopting a socket: rustix decodes a path address only up to the
//!   length the kernel reports and refuses one with NULs inside it, such as the trailing
//!   NULs of a socket bound with `sizeof(sockaddr_un)` (as Qt 5 binds) on macOS; Qt 6 reads
//!   the name up to its first NUL, and so does [`Listener::adopt`].
//! - `getpwuid_r` (`location::passwd_home`, the home directory when `$HOME` is unset):
//!   rustix has no passwd lookup.

use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::io::{Errno, FdFlags};

use crate::LocalSocketError;

mod dir;
mod engine;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod fork;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[path = "nofork.rs"]
mod fork;
mod forks;
mod listener;
mod location;
mod lock;
mod names;
mod peer;
mod poll;
mod primary;
pub(crate) mod published;
mod signals;
mod socket;
mod stream;
#[cfg(feature = "dbus")]
mod uri;
pub(crate) mod watch;

pub(crate) use dir::{ensure_dir, file_id, repair_dir};
pub(crate) use engine::{
    poller, read_until, Acceptor, Connection, Interest, Owner, PollWaker, Poller, Token, WatchSource,
    EDGE_TRIGGERED,
};
pub(crate) use fork::ForkGuard;
pub(crate) use forks::own_pid;
pub(crate) use listener::{FileId, Listener};
pub(crate) use location::{login_session, server_name, system_abstract, system_base, user_dir};
pub(crate) use lock::{lock_cannot_exist, read_pid, LockFile};
pub use names::MAX_SOCKET_PATH;
pub(crate) use names::{os_bytes, os_from_bytes, ABSTRACT_NAMES, NAMES_ARE_PIPES};
pub(crate) use peer::{
    as_one_user, check_primary, elevated_above_us, euid, hand_foreground, launch_options, refused,
    served_by_this_user, server_file_gone, SERVER_KIND,
};
#[allow(unused_imports)] // `current_user`, `User`: the contract's names; the engine uses `euid`
pub(crate) use peer::{current_user, User};
pub(crate) use primary::listen_primary;
pub(crate) use signals::with_signals_blocked;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) use socket::peer_pid;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use socket::peer_ucred;
pub(crate) use socket::{connect, connect_nonblocking, recv_until, send_now, write_all_until};
pub(crate) use stream::{process_exists, recv_some, send_some, wait_readable, STDIN_THROUGH_LOOP};
#[cfg(feature = "dbus")]
pub(crate) use uri::path_of_uri;

/// Whether `e` is the OS error `errno`.
pub(super) fn is(e: &io::Error, errno: Errno) -> bool {
    Errno::from_io_error(e) == Some(errno)
}

/// Makes `fd` close-on-exec, and non-blocking or blocking.
pub(super) fn set_cloexec_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::fcntl_getfd(fd)? | FdFlags::CLOEXEC)?;
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let flags =
        if nonblocking { flags | rustix::fs::OFlags::NONBLOCK } else { flags - rustix::fs::OFlags::NONBLOCK };
    rustix::fs::fcntl_setfl(fd, flags)?;
    Ok(())
}

/// Ends a connected socket for its peer (both directions), however many processes hold
/// it: a child forked without exec keeps a copy that closing ours would not end, and the
/// launch on the other end would wait for its timeout instead of starting over.
pub(crate) fn hang_up(socket: &crate::LocalSocket) {
    let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Both);
}

/// A [`ForkGuard`] for `listener`'s socket: children forked without exec get no copy of it
/// (Linux; `None` elsewhere).
pub(crate) fn fork_guard(listener: &Listener) -> Option<ForkGuard> {
    ForkGuard::new(listener.fd())
}

/// `getsockopt` of an `int`-sized option through libc, for the options rustix leaves out
/// on Apple platforms (`SO_ACCEPTCONN`, `LOCAL_PEERPID`).
#[cfg(target_vendor = "apple")]
fn getsockopt_int(fd: BorrowedFd<'_>, level: libc::c_int, option: libc::c_int) -> io::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; `v` and `len` are live, writable locals and `len`
    // holds `v`'s size, so the kernel writes no more than an int.
    let r = unsafe {
        libc::getsockopt(fd.as_raw_fd(), level, option, (&mut v as *mut libc::c_int).cast(), &mut len)
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
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
    match Errno::from_io_error(e) {
        Some(Errno::ACCESS) => (LocalSocketError::SocketAccess, "Permission denied"),
        Some(Errno::LOOP | Errno::NOENT | Errno::NAMETOOLONG | Errno::ROFS | Errno::NOTDIR) => {
            (LocalSocketError::ServerNotFound, "Name error")
        }
        Some(Errno::ADDRINUSE) => (LocalSocketError::AddressInUse, "Address in use"),
        _ if e.kind() == io::ErrorKind::Unsupported => {
            (LocalSocketError::UnsupportedSocketOperation, "The socket operation is not supported")
        }
        _ => (LocalSocketError::Unknown, ""),
    }
}

/// Qt's errno classification for `QLocalSocket::connectToServer`.
pub(crate) fn connect_error(e: &io::Error) -> LocalSocketError {
    match Errno::from_io_error(e) {
        Some(Errno::INVAL | Errno::CONNREFUSED) => LocalSocketError::ConnectionRefused,
        Some(Errno::NOENT | Errno::NAMETOOLONG | Errno::NOTDIR | Errno::LOOP) => {
            LocalSocketError::ServerNotFound
        }
        Some(Errno::ACCESS | Errno::PERM) => LocalSocketError::SocketAccess,
        Some(Errno::TIMEDOUT) => LocalSocketError::SocketTimeout,
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => LocalSocketError::SocketResource,
        _ if e.kind() == io::ErrorKind::Unsupported => LocalSocketError::UnsupportedSocketOperation,
        _ => LocalSocketError::Unknown,
    }
}
