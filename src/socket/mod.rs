//! [`LocalSocket`]: the client half of Qt's `QLocalSocket`, and the sockets a
//! [`LocalServer`](crate::LocalServer) accepts.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use interprocess::local_socket::traits::Stream as _;
use interprocess::local_socket::Stream;

use crate::Result;

mod connect;
mod credentials;

pub use connect::ConnectOptions;
pub use credentials::PeerCredentials;

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
    names: Option<SocketNames>,
}

/// A socket's server name and full server name, shared: every socket a server accepts
/// holds the server's (no copy per connection), and a socket that connected to an
/// absolute path holds that one string for both.
#[derive(Clone, Debug)]
pub(crate) enum SocketNames {
    /// The name is the full name (an absolute path, or an abstract name).
    Same(Arc<str>),
    /// The name, and the full name it stands for.
    Both(Arc<(String, PathBuf)>),
}

impl SocketNames {
    /// The names of a socket that connected with `name` to `full`.
    pub(crate) fn new(name: &str, full: &Path) -> SocketNames {
        if full.as_os_str() == name {
            SocketNames::Same(Arc::from(name))
        } else {
            SocketNames::Both(Arc::new((name.to_owned(), full.to_path_buf())))
        }
    }

    fn name(&self) -> &str {
        match self {
            SocketNames::Same(s) => s,
            SocketNames::Both(b) => &b.0,
        }
    }

    fn full(&self) -> &Path {
        match self {
            SocketNames::Same(s) => Path::new(&**s),
            SocketNames::Both(b) => &b.1,
        }
    }
}

impl fmt::Debug for LocalSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSocket")
            .field("server_name", &self.server_name())
            .field("full_server_name", &self.full_server_name())
            .finish_non_exhaustive()
    }
}

impl LocalSocket {
    /// Connects to the server `name` with the default [`ConnectOptions`] (Qt's
    /// `connectToServer` followed by `waitForConnected`). The name is resolved as
    /// [`LocalServer::listen`](crate::LocalServer::listen) resolves it.
    ///
    /// # Errors
    /// As [`ConnectOptions::connect`]: `ServerNotFound` when nothing is there,
    /// `ConnectionRefused` when a file is there but nobody listens.
    ///
    /// ```
    /// use std::io::Write;
    /// use solo_instance::{LocalServer, LocalSocket, LocalSocketError};
    ///
    /// # let name = format!("doc-connect-{}", std::process::id());
    /// let mut server = LocalServer::new();
    /// server.listen(&name)?;
    /// let mut socket = LocalSocket::connect(&name)?;
    /// socket.write_all(b"hello\n")?;
    /// assert_eq!(socket.server_name(), Some(name.as_str()));
    ///
    /// server.close();
    /// let err = LocalSocket::connect(&name).unwrap_err();
    /// assert_eq!(err.socket_error(), Some(LocalSocketError::ServerNotFound));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(name: &str) -> Result<Self> {
        ConnectOptions::new().connect(name)
    }

    /// Connects with `options`; see [`ConnectOptions`].
    pub fn connect_with(name: &str, options: ConnectOptions) -> Result<Self> {
        options.connect(name)
    }

    pub(crate) fn from_stream(stream: Stream) -> Self {
        LocalSocket { stream, names: None }
    }

    /// The name this socket connected with. For a socket a server accepted, as Qt 6 names
    /// it on Unix: the last part of the server's path (an abstract server's whole name);
    /// `None` for a socket a server accepted on Windows (Qt 5: always empty).
    pub fn server_name(&self) -> Option<&str> {
        self.names.as_ref().map(SocketNames::name)
    }

    /// The path (or pipe name) this socket connected to. For a socket a server accepted,
    /// as Qt 6 on Unix: the server's full name (the final path even where Qt 6 reports
    /// the temporary one an access-option server bound first); `None` on Windows.
    pub fn full_server_name(&self) -> Option<&Path> {
        self.names.as_ref().map(SocketNames::full)
    }

    pub(crate) fn set_names(&mut self, names: SocketNames) {
        self.names = Some(names);
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

    /// The interprocess stream underneath, for the platform code. Not public: the
    /// crate's API does not depend on interprocess's types (`AsFd` on Unix and `AsHandle`
    /// on Windows give the socket itself).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn as_stream(&self) -> &Stream {
        &self.stream
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

/// The named pipe's handle: a byte-mode, duplex pipe instance (a client's end, or the
/// server's end of an accepted connection). Reading, writing or closing through it
/// bypasses this socket.
#[cfg(windows)]
impl std::os::windows::io::AsHandle for LocalSocket {
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        match &self.stream {
            Stream::NamedPipe(s) => s.as_handle(),
        }
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawHandle for LocalSocket {
    fn as_raw_handle(&self) -> std::os::windows::io::RawHandle {
        use std::os::windows::io::AsHandle as _;
        self.as_handle().as_raw_handle()
    }
}
