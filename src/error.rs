//! Errors: [`LocalSocketError`] (Qt's codes and texts), the crate's [`Error`], and the
//! receive calls' errors (`recv`).

mod path;
mod recv;

pub use path::PathError;
pub use recv::{RecvError, RecvTimeoutError, TryRecvError};

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::{ProtocolError, Reply};

/// What went wrong with a local socket, with Qt's numeric codes
/// (`QLocalSocket::LocalSocketError`, which shares its values with
/// `QAbstractSocket::SocketError`), so logs and scripts read the same for Qt and Rust.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalSocketError {
    /// The peer refused the connection or closed it before it was set up (Qt: 0).
    ConnectionRefused,
    /// The peer closed the connection (Qt: 1).
    PeerClosed,
    /// No server by that name, or the name cannot be used (Qt: 2, `ServerNotFoundError`,
    /// which `QLocalServer` reports as `HostNotFoundError`).
    ServerNotFound,
    /// Permission denied (Qt: 3).
    SocketAccess,
    /// Out of a resource, such as file descriptors (Qt: 4).
    SocketResource,
    /// The operation timed out (Qt: 5).
    SocketTimeout,
    /// A datagram was larger than the OS allows (Qt: 6).
    DatagramTooLarge,
    /// An error on the connection (Qt: 7).
    Connection,
    /// The name is taken by another server (Qt: 8, `QAbstractSocket::AddressInUseError`).
    AddressInUse,
    /// The platform does not support the operation (Qt: 10).
    UnsupportedSocketOperation,
    /// The operation is not allowed in the object's current state, such as `listen` on a
    /// server that already listens (Qt: 19).
    Operation,
    /// Any other error (Qt: -1).
    Unknown,
}

impl LocalSocketError {
    /// Qt's numeric value of this error.
    ///
    /// ```
    /// use solo_instance::LocalSocketError;
    /// assert_eq!(LocalSocketError::AddressInUse.code(), 8);
    /// assert_eq!(LocalSocketError::from_code(2), Some(LocalSocketError::ServerNotFound));
    /// ```
    pub fn code(self) -> i32 {
        use LocalSocketError::*;
        match self {
            ConnectionRefused => 0,
            PeerClosed => 1,
            ServerNotFound => 2,
            SocketAccess => 3,
            SocketResource => 4,
            SocketTimeout => 5,
            DatagramTooLarge => 6,
            Connection => 7,
            AddressInUse => 8,
            UnsupportedSocketOperation => 10,
            Operation => 19,
            Unknown => -1,
        }
    }

    /// The error with Qt's numeric value `code`, if there is one.
    pub fn from_code(code: i32) -> Option<Self> {
        ALL.iter().copied().find(|e| e.code() == code)
    }

    /// The io::ErrorKind closest to this error.
    pub fn io_kind(self) -> io::ErrorKind {
        use LocalSocketError::*;
        match self {
            ConnectionRefused => io::ErrorKind::ConnectionRefused,
            PeerClosed => io::ErrorKind::ConnectionReset,
            ServerNotFound => io::ErrorKind::NotFound,
            SocketAccess => io::ErrorKind::PermissionDenied,
            SocketResource => io::ErrorKind::OutOfMemory,
            SocketTimeout => io::ErrorKind::TimedOut,
            DatagramTooLarge => io::ErrorKind::InvalidInput,
            AddressInUse => io::ErrorKind::AddrInUse,
            UnsupportedSocketOperation => io::ErrorKind::Unsupported,
            Connection | Operation | Unknown => io::ErrorKind::Other,
        }
    }
}

const ALL: [LocalSocketError; 12] = {
    use LocalSocketError::*;
    [
        ConnectionRefused,
        PeerClosed,
        ServerNotFound,
        SocketAccess,
        SocketResource,
        SocketTimeout,
        DatagramTooLarge,
        Connection,
        AddressInUse,
        UnsupportedSocketOperation,
        Operation,
        Unknown,
    ]
};

/// A failed socket operation: Qt's error code, Qt's error text (`"QLocalServer::listen:
/// Address in use"`), the OS error behind it, if any, and the socket path (or pipe name)
/// tried, if there was one.
///
/// It displays as Qt's text followed by the path: `QLocalServer::listen: Address in use
/// (/run/user/1000/app.sock)`; [`message`](Self::message) is Qt's text alone.
#[derive(Debug)]
pub struct SocketError {
    kind: LocalSocketError,
    message: String,
    source: Option<io::Error>,
    path: Option<PathBuf>,
}

impl SocketError {
    pub(crate) fn new(kind: LocalSocketError, message: String, source: Option<io::Error>) -> Self {
        SocketError { kind, message, source, path: None }
    }

    /// The full server name the operation tried: the socket's path, a pipe name
    /// (`\\.\pipe\...`) on Windows, the name of an abstract socket on Linux. `None`
    /// when the call had no name to try (an empty name, a server that is not listening).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Qt's classification of the error.
    pub fn kind(&self) -> LocalSocketError {
        self.kind
    }

    /// The error text, as Qt's `errorString()` words it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The OS error behind it, where there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.path {
            Some(path) => write!(f, " ({})", path.display()),
            None => Ok(()),
        }
    }
}

impl std::error::Error for SocketError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// The crate's error: every fallible call returns it.
///
/// It converts into [`std::io::Error`] (keeping the closest [`io::ErrorKind`]) for code that
/// works in `io::Result`.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// A local socket operation failed; see [`SocketError`] for Qt's code and text.
    Socket(Box<SocketError>),
    /// An I/O error outside the socket itself: the lock file, the runtime directory.
    Io(io::Error),
    /// The app id cannot name a socket and lock file (see
    /// [`SingleInstance::new`](crate::SingleInstance::new)).
    InvalidAppId(Box<str>),
    /// The directory for the socket and lock is not private to this user (owned by
    /// someone else, or writable by others), so it is not used.
    Insecure(Box<str>),
    /// The other side broke the wire protocol: malformed JSON, an unknown version, a
    /// message over the size limit.
    Protocol(ProtocolError),
    /// The primary instance refused the launch ([`Reply::error`]): the reply itself, with
    /// its [message](Reply::error_message), [exit code](Reply::exit_code) and the
    /// [`stdout`](Reply::stdout)/[`stderr`](Reply::stderr) texts it carried.
    Rejected(Box<Reply>),
    /// A primary instance holds the lock but did not answer within the timeout.
    NoReply(Duration),
    /// The last primary instance handed over to another process (`to`, its pid; a
    /// [replace](crate::SingleInstance::replace)), which still runs but did not start
    /// serving within the timeout (`waited`). Nobody held the lock.
    HandedOver {
        /// The pid of the process the primary handed over to.
        to: u32,
        /// The launch's timeout.
        waited: Duration,
    },
    /// The primary instance accepted this launch's
    /// [replace](crate::SingleInstance::replace) but did not release within the timeout.
    NotReleased(Duration),
    /// The running primary instance neither exited nor released within the timeout of
    /// [`wait_for_exit`](crate::SingleInstance::wait_for_exit), which asks it nothing.
    StillRunning(Duration),
    /// No primary instance is running (from [`send`](crate::SingleInstance::send), which
    /// never becomes primary).
    NoPrimary,
}

impl Error {
    pub(crate) fn socket(kind: LocalSocketError, message: String, source: Option<io::Error>) -> Self {
        Error::Socket(Box::new(SocketError::new(kind, message, source)))
    }

    /// A socket error that names the path (or pipe name) it tried; other errors as they are.
    pub(crate) fn at(mut self, path: &Path) -> Self {
        if let Error::Socket(e) = &mut self {
            e.path = Some(path.to_owned());
        }
        self
    }

    /// Qt's error code, for errors that come from a socket operation.
    pub fn socket_error(&self) -> Option<LocalSocketError> {
        match self {
            Error::Socket(e) => Some(e.kind),
            Error::NoReply(_) | Error::HandedOver { .. } | Error::NotReleased(_) | Error::StillRunning(_) => {
                Some(LocalSocketError::SocketTimeout)
            }
            _ => None,
        }
    }

    /// The closest [`io::ErrorKind`].
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Socket(e) => e.kind.io_kind(),
            Error::Io(e) => e.kind(),
            Error::InvalidAppId(_) => io::ErrorKind::InvalidInput,
            Error::Insecure(_) => io::ErrorKind::PermissionDenied,
            Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::Rejected(_) => io::ErrorKind::Other,
            Error::NoReply(_) | Error::HandedOver { .. } | Error::NotReleased(_) | Error::StillRunning(_) => {
                io::ErrorKind::TimedOut
            }
            Error::NoPrimary => io::ErrorKind::NotFound,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Socket(e) => fmt::Display::fmt(e, f),
            Error::Io(e) => fmt::Display::fmt(e, f),
            Error::InvalidAppId(why) => write!(f, "invalid app id: {why}"),
            Error::Insecure(why) => write!(f, "refusing an unsafe location: {why}"),
            Error::Protocol(why) => write!(f, "protocol error: {why}"),
            Error::Rejected(reply) => write!(
                f,
                "the primary instance answered with an error: {}",
                reply.error_message().unwrap_or_default()
            ),
            Error::NoReply(t) => write!(
                f,
                "a primary instance holds the lock but did not answer within {:.1}s",
                t.as_secs_f64()
            ),
            Error::HandedOver { to, waited } => write!(
                f,
                "the primary instance was handing over to process {to}, which did not start serving \
                 within {:.1}s",
                waited.as_secs_f64()
            ),
            Error::NotReleased(t) => write!(
                f,
                "the primary instance accepted the replace but did not release within {:.1}s",
                t.as_secs_f64()
            ),
            Error::StillRunning(t) => {
                write!(f, "the primary instance neither exited nor released within {:.1}s", t.as_secs_f64())
            }
            Error::NoPrimary => f.write_str("no primary instance is running"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Socket(e) => Some(&**e),
            Error::Io(e) => Some(e),
            Error::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<SocketError> for Error {
    fn from(e: SocketError) -> Self {
        Error::Socket(Box::new(e))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            other => io::Error::new(other.io_kind(), other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        assert!(std::mem::size_of::<Error>() <= 24, "{}", std::mem::size_of::<Error>());
    }

    #[test]
    fn codes_round_trip() {
        for e in ALL {
            assert_eq!(LocalSocketError::from_code(e.code()), Some(e));
        }
        assert_eq!(LocalSocketError::from_code(9), None);
    }

    #[test]
    fn io_conversion_keeps_kind() {
        let e = Error::socket(LocalSocketError::AddressInUse, "x: Address in use".into(), None);
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(io.to_string(), "x: Address in use");
    }
}
