//! Unix domain sockets with the platform's own calls where interprocess has none: a chosen
//! backlog, private-directory binding with a no-replace move, poll(2) with a wake-up pipe.
//!
//! - [`listener`]: binding (in a private directory, moved into place without replacing
//!   anything), adopting a listening socket, waiting and accepting;
//! - [`poll`]: `poll(2)` and the wake-up pipe;
//! - [`socket`]: socket creation and addresses, connecting, and the connected socket's
//!   extras (peer pid, a ready line, a write with a deadline).

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::LocalSocketError;

mod listener;
mod poll;
mod socket;

pub(crate) use listener::Listener;
pub(crate) use poll::pipe;
pub(crate) use socket::{connect, peer_pid, take_ready_line, write_all_until};

pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(super) fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

pub(super) fn set_cloexec_nonblocking(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    unsafe {
        let fdflags = cvt(libc::fcntl(fd, libc::F_GETFD))?;
        cvt(libc::fcntl(fd, libc::F_SETFD, fdflags | libc::FD_CLOEXEC))?;
        let flags = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        let flags = if nonblocking { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        cvt(libc::fcntl(fd, libc::F_SETFL, flags))?;
    }
    Ok(())
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
