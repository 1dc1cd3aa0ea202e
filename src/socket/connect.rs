//! [`ConnectOptions`]: how [`LocalSocket::connect_with`] connects, and Qt's client
//! error texts.

use std::io;
use std::time::Duration;

use super::LocalSocket;
use crate::{name, sys, Error, LocalSocketError, Result, SocketOptions};

/// How [`LocalSocket::connect_with`] connects. A consuming builder.
///
/// ```
/// use std::time::Duration;
/// use solo_instance::{ConnectOptions, LocalServer, LocalSocket};
///
/// # let name = format!("doc-connect-options-{}", std::process::id());
/// let mut server = LocalServer::new();
/// server.listen(&name)?;
/// let options = ConnectOptions::new().timeout(Some(Duration::from_secs(2)));
/// let socket = LocalSocket::connect_with(&name, options)?;
/// // The same, from the builder:
/// let again = ConnectOptions::new().timeout(Some(Duration::from_secs(2))).connect(&name)?;
/// # drop((socket, again));
/// # Ok::<(), solo_instance::Error>(())
/// ```
///
/// On Linux, [`SocketOptions::ABSTRACT_NAMESPACE`] reaches a server in the abstract
/// namespace:
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use solo_instance::{ConnectOptions, LocalServer, SocketOptions};
///
/// # let name = format!("doc-abstract-{}", std::process::id());
/// let mut server = LocalServer::new();
/// server.set_socket_options(SocketOptions::ABSTRACT_NAMESPACE);
/// server.listen(&name)?;
/// let socket = ConnectOptions::new().socket_options(SocketOptions::ABSTRACT_NAMESPACE).connect(&name)?;
/// # drop(socket);
/// # }
/// # Ok::<(), solo_instance::Error>(())
/// ```
#[must_use]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectOptions {
    timeout: Option<Duration>,
    options: SocketOptions,
    /// The crate's own launches: a socket connected with a timeout stays non-blocking
    /// (they wait with `poll(2)`), which saves the `FIONBIO` after connecting.
    #[cfg(unix)]
    nonblocking: bool,
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

    /// Leaves the socket non-blocking when connected with a timeout (crate-internal).
    #[cfg(unix)]
    pub(crate) fn keep_nonblocking(mut self) -> Self {
        self.nonblocking = true;
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
        let full = name::full_name_ref(name, self.options);
        #[cfg(unix)]
        let connected = if self.nonblocking {
            sys::connect_nonblocking(&full, self.options, self.timeout)
        } else {
            sys::connect(&full, self.options, self.timeout)
        };
        #[cfg(not(unix))]
        let connected = sys::connect(&full, self.options, self.timeout);
        match connected {
            Ok(stream) => {
                let mut socket = LocalSocket::from_stream(stream);
                socket.set_names(super::SocketNames::new(name, &full));
                Ok(socket)
            }
            Err(e) => Err(client_error(sys::connect_error(&e), FUNCTION, Some(e)).at(&full)),
        }
    }
}

/// Qt's client error texts (`QLocalSocketPrivate::setErrorAndEmit`).
fn client_error(kind: LocalSocketError, function: &str, source: Option<io::Error>) -> Error {
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
