//! [`LocalSocket`]: the client half of Qt's `QLocalSocket`, and the sockets a
//! [`LocalServer`](crate::LocalServer) accepts.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use interprocess::local_socket::traits::{Stream as _, StreamCommon as _};
use interprocess::local_socket::Stream;

use crate::{name, sys, Error, LocalSocketError, Result, Sid, SocketOptions};

/// A connected local socket: a Unix domain socket, or a named pipe on Windows.
///
/// It reads and writes with [`Read`] and [`Write`] (also through `&LocalSocket`, so one
/// thread may read while another writes), unbuffered: wrap it in a
/// [`BufReader`](std::io::BufReader) to read lines.
///
/// ```no_run
/// use std::io::{BufRead, BufReader, Write};
/// use solo_instance::LocalSocket;
///
/// let mut socket = LocalSocket::connect("my-server")?;
/// socket.write_all(b"hello\n")?;
/// let mut reply = String::new();
/// BufReader::new(&socket).read_line(&mut reply)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LocalSocket {
    stream: Stream,
    server_name: Option<String>,
    full_server_name: Option<PathBuf>,
}

impl fmt::Debug for LocalSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSocket")
            .field("server_name", &self.server_name)
            .field("full_server_name", &self.full_server_name)
            .finish_non_exhaustive()
    }
}

/// Who is at the other end of a [`LocalSocket`], as the OS reports it at connect time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer's process id, where the OS gives it (Linux, macOS, Windows; not the BSDs).
    pub pid: Option<u32>,
    /// The peer's effective user id (Unix).
    pub uid: Option<u32>,
    /// The peer's effective group id (Unix).
    pub gid: Option<u32>,
    /// Windows: the user at the other end. On a server's end, the client's user: the
    /// identity it connected with (`ImpersonateNamedPipeClient`, identification level),
    /// else its process's user. On a client's end, the pipe's owner, which only the user
    /// who created the pipe (or a privileged process) can set. `None` on Unix, and where
    /// Windows would not say.
    pub sid: Option<Sid>,
}

/// How [`LocalSocket::connect_with`] connects. A consuming builder.
#[must_use]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectOptions {
    timeout: Option<Duration>,
    options: SocketOptions,
}

impl ConnectOptions {
    /// The defaults: no timeout, a plain (not abstract) name.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to wait while the server's backlog is full. Default: no limit.
    ///
    /// # Platform-specific behavior
    /// On Linux a connect either succeeds at once or finds the backlog full; with a
    /// timeout, a full backlog is retried until the deadline. macOS and the BSDs refuse a
    /// connection to a full backlog outright (`ConnectionRefused`, as Qt reports it there),
    /// so the timeout has nothing to wait for. On Windows it waits for a free pipe instance.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Socket options of the server to reach; only
    /// [`ABSTRACT_NAMESPACE`](SocketOptions::ABSTRACT_NAMESPACE) matters to a client
    /// (Qt 6's `QLocalSocket::setSocketOptions`). Default: empty.
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.options = options;
        self
    }

    /// Connects to the server `name`, resolved as Qt resolves it (see
    /// [`LocalServer::listen`](crate::LocalServer::listen)).
    ///
    /// # Errors
    /// [`Error::Socket`] with Qt's code and text: `ServerNotFound` when nothing is there,
    /// `ConnectionRefused` when a file is there but nobody listens, `SocketAccess` when
    /// the socket's mode keeps us out, `SocketTimeout` when the timeout passed.
    pub fn connect(self, name: &str) -> Result<LocalSocket> {
        const FUNCTION: &str = "QLocalSocket::connectToServer";
        // A NUL would cut a path short in the kernel and reach another server; an abstract
        // name's address has its length, so there NULs are bytes like any other (Qt 6).
        if name.is_empty() || name.contains('\0') && !name::nul_allowed(self.options) {
            return Err(client_error(LocalSocketError::ServerNotFound, FUNCTION, None));
        }
        let full = name::full_name(name, self.options);
        match sys::connect(&full, self.options, self.timeout) {
            Ok(stream) => {
                Ok(LocalSocket { stream, server_name: Some(name.to_owned()), full_server_name: Some(full) })
            }
            Err(e) => Err(client_error(sys::connect_error(&e), FUNCTION, Some(e))),
        }
    }
}

/// Qt's client error texts (`QLocalSocketPrivate::setErrorAndEmit`).
pub(crate) fn client_error(kind: LocalSocketError, function: &str, source: Option<io::Error>) -> Error {
    use LocalSocketError::*;
    let what = match kind {
        ConnectionRefused => "Connection refused",
        PeerClosed => "Remote closed",
        ServerNotFound => "Invalid name",
        SocketAccess => "Socket access error",
        SocketResource => "Socket resource error",
        SocketTimeout => "Socket operation timed out",
        DatagramTooLarge => "Datagram too large",
        Connection => "Connection error",
        UnsupportedSocketOperation => "The socket operation is not supported",
        Operation => "Operation not permitted when socket is in this state",
        AddressInUse => "Address in use",
        Unknown => {
            let code = source.as_ref().and_then(|e| e.raw_os_error()).unwrap_or(0);
            return Error::socket(kind, format!("{function}: Unknown error {code}"), source);
        }
    };
    Error::socket(kind, format!("{function}: {what}"), source)
}

impl LocalSocket {
    /// Connects to the server `name` with the default [`ConnectOptions`] (Qt's
    /// `connectToServer` followed by `waitForConnected`).
    pub fn connect(name: &str) -> Result<Self> {
        ConnectOptions::new().connect(name)
    }

    /// Connects with `options`; see [`ConnectOptions`].
    pub fn connect_with(name: &str, options: ConnectOptions) -> Result<Self> {
        options.connect(name)
    }

    pub(crate) fn from_stream(stream: Stream) -> Self {
        LocalSocket { stream, server_name: None, full_server_name: None }
    }

    /// The name this socket connected with. For a socket a server accepted, as Qt 6 names
    /// it on Unix: the last part of the server's path (an abstract server's whole name);
    /// `None` on Windows and for a socket made from a bare stream (Qt 5: always empty).
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The path (or pipe name) this socket connected to. For a socket a server accepted,
    /// as Qt 6 on Unix: the server's full name (the final path even where Qt 6 reports
    /// the temporary one an access-option server bound first); `None` on Windows.
    pub fn full_server_name(&self) -> Option<&Path> {
        self.full_server_name.as_deref()
    }

    pub(crate) fn set_names(&mut self, server_name: String, full_server_name: PathBuf) {
        self.server_name = Some(server_name);
        self.full_server_name = Some(full_server_name);
    }

    /// The credentials of the process at the other end, taken when the connection was
    /// made (`SO_PEERCRED` on Linux, `LOCAL_PEERCRED` and `LOCAL_PEERPID` on macOS,
    /// `getpeereid` on the BSDs, the client process id on Windows).
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        let creds = self.stream.peer_creds()?;
        #[cfg(unix)]
        {
            // pid_t is i32; uid_t and gid_t are u32 on Linux and macOS, but libc does not
            // promise that for every Unix.
            #[allow(clippy::unnecessary_cast)]
            Ok(PeerCredentials {
                // interprocess has no pid on macOS: ask LOCAL_PEERPID there.
                pid: creds.pid().map(|p| p as u32).or_else(|| sys::peer_pid(self)),
                uid: creds.euid().map(|u| u as u32),
                gid: creds.egid().map(|g| g as u32),
                sid: None,
            })
        }
        #[cfg(not(unix))]
        {
            // Windows: the pid is already a u32 (`GetNamedPipeClientProcessId` or
            // `GetNamedPipeServerProcessId`: the client's is what the client reports).
            Ok(PeerCredentials { pid: creds.pid(), uid: None, gid: None, sid: sys::peer_sid(&self.stream) })
        }
    }

    /// Sets a timeout for reads; `None` blocks for ever (the default).
    ///
    /// # Platform-specific behavior
    /// Windows named pipes have no I/O timeouts: `Some` fails with
    /// [`ErrorKind::Unsupported`](io::ErrorKind::Unsupported) there; `None` (the default
    /// anyway) succeeds.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if cfg!(windows) && timeout.is_none() {
            return Ok(());
        }
        self.stream.set_recv_timeout(timeout)
    }

    /// Sets a timeout for writes; `None` blocks for ever (the default).
    ///
    /// # Platform-specific behavior
    /// Windows named pipes have no I/O timeouts: `Some` fails with
    /// [`ErrorKind::Unsupported`](io::ErrorKind::Unsupported) there; `None` (the default
    /// anyway) succeeds.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if cfg!(windows) && timeout.is_none() {
            return Ok(());
        }
        self.stream.set_send_timeout(timeout)
    }

    /// Switches non-blocking mode on or off.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.stream.set_nonblocking(nonblocking)
    }

    /// The interprocess stream underneath.
    pub fn as_stream(&self) -> &Stream {
        &self.stream
    }

    /// Unwraps the interprocess stream underneath.
    pub fn into_stream(self) -> Stream {
        self.stream
    }
}

impl From<Stream> for LocalSocket {
    fn from(stream: Stream) -> Self {
        LocalSocket::from_stream(stream)
    }
}

impl Read for LocalSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.stream.read_vectored(bufs)
    }
}

impl Read for &LocalSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.stream).read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&self.stream).read_vectored(bufs)
    }
}

impl Write for LocalSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Write for &LocalSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.stream).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.stream).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&self.stream).flush()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for LocalSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.stream {
            Stream::UdSocket(s) => s.as_fd(),
        }
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for LocalSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd()
    }
}
