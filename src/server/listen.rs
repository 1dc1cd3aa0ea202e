//! Starting a [`LocalServer`]: binding a name or adopting a listening socket, removing
//! a stale socket file, and the errors these report, with Qt's codes and texts.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::{lock, LocalServer};
use crate::{name, sys, Error, LocalSocketError, Result, SocketOptions};

/// `.XXXXXX/s`: what binding in a private directory adds after the socket's directory.
const PRIVATE_DIR_NAME_LEN: usize = 9;

impl LocalServer {
    /// Listens on `name`, resolved by Qt's rules: a name starting with `/` is the socket
    /// path; any other name is put in [`default_socket_dir()`](crate::default_socket_dir) (`$TMPDIR`, else
    /// `/tmp`). On Windows the name becomes the pipe `\\.\pipe\name`.
    ///
    /// # Errors
    /// [`Error::Socket`] with Qt's code and text (also kept for
    /// [`server_error`](Self::server_error) and [`error_string`](Self::error_string)):
    /// - `AddressInUse` ("QLocalServer::listen: Address in use"): something is at that
    ///   path, a live server or a stale socket file. Unlike Qt, this holds with access
    ///   options too: a running server's socket is never replaced. Remove a stale file
    ///   with [`remove_server`](Self::remove_server) first, as Qt programs do.
    /// - `ServerNotFound` (Qt's `HostNotFoundError`, "Name error"): an empty name, a
    ///   missing directory, or a path longer than the platform allows (the message
    ///   states the limit, where Qt reports "Unknown error 0").
    /// - `SocketAccess` ("Permission denied"): the directory is not writable.
    /// - `Operation`: the server is listening already.
    ///
    /// ```
    /// use solo_instance::LocalServer;
    ///
    /// # let name = format!("doc-listen-{}", std::process::id());
    /// let mut server = LocalServer::new();
    /// server.listen(&name)?;
    /// assert!(server.is_listening());
    /// # #[cfg(unix)]
    /// assert_eq!(server.full_server_name(), Some(solo_instance::default_socket_dir().join(&name).as_path()));
    ///
    /// // A second server on the same name is refused, whatever its options. (Windows
    /// // refuses a second first pipe instance too; Wine, where CI runs this, does not.)
    /// # #[cfg(unix)] {
    /// let mut second = LocalServer::new();
    /// let err = second.listen(&name).unwrap_err();
    /// assert_eq!(err.socket_error(), Some(solo_instance::LocalSocketError::AddressInUse));
    /// # }
    /// # Ok::<(), solo_instance::Error>(())
    /// ```
    pub fn listen(&mut self, name: &str) -> Result<()> {
        const FUNCTION: &str = "QLocalServer::listen";
        self.check_not_listening(FUNCTION)?;
        if name.is_empty() || name.contains('\0') && !name::nul_allowed(self.options) {
            return Err(self.fail(LocalSocketError::ServerNotFound, format!("{FUNCTION}: Name error"), None));
        }
        let full = name::full_name(name, self.options);
        let len = full.as_os_str().len();
        // With access options the socket is first bound as `<dir>/.XXXXXX/s` (outside Linux,
        // and on Linux when fchmod fails; the rule is the same everywhere): 9 bytes more
        // than `<dir>/`, so short names need room for that too.
        let file_name_len = full.file_name().map_or(0, |f| f.len());
        let private_len = len - file_name_len + PRIVATE_DIR_NAME_LEN;
        let needs_private_dir =
            self.options.file_mode().is_some() && !self.options.contains(SocketOptions::ABSTRACT_NAMESPACE);
        if cfg!(unix)
            && (len > name::MAX_SOCKET_PATH || needs_private_dir && private_len > name::MAX_SOCKET_PATH)
        {
            let msg = if len > name::MAX_SOCKET_PATH {
                format!(
                    "{FUNCTION}: Name error: the socket path is {len} bytes, longer than the {} this platform allows",
                    name::MAX_SOCKET_PATH
                )
            } else {
                format!(
                    "{FUNCTION}: Name error: with access options the socket is first bound in a private \
                     directory beside it, a path of {private_len} bytes, longer than the {} this platform allows",
                    name::MAX_SOCKET_PATH
                )
            };
            return Err(self.fail(LocalSocketError::ServerNotFound, msg, None).at(&full));
        }
        #[cfg(windows)]
        let bound = sys::Listener::bind_with_sddl(
            &full,
            self.options,
            self.pipe_sddl.as_deref(),
            self.qt_windows_security,
        );
        #[cfg(not(windows))]
        let bound = sys::Listener::bind(&full, self.options, self.backlog);
        match bound {
            Ok(listener) => {
                self.start(listener, Some(name.to_owned()), Some(full));
                Ok(())
            }
            Err(e) => Err(self.fail_io(FUNCTION, e).at(&full)),
        }
    }

    /// Listens on a socket that is already bound and listening (Qt's
    /// `listen(qintptr socketDescriptor)`), such as one passed by systemd socket
    /// activation. The socket becomes close-on-exec and non-blocking; its file is never
    /// unlinked. Its name is read with `getsockname`, as Qt 6 reads it: a path gives
    /// [`full_server_name`](Self::full_server_name) the path and
    /// [`server_name`](Self::server_name) its last part; an abstract name (Linux) gives
    /// both the name itself, without a leading `@` (Qt 5 wrote `@name`), and adds
    /// [`ABSTRACT_NAMESPACE`](SocketOptions::ABSTRACT_NAMESPACE) to the
    /// [`socket_options`](Self::socket_options) (a path removes it).
    ///
    /// # Errors
    /// A socket that cannot accept (not a listening stream socket, such as one end of a
    /// `socketpair`) is refused with `UnsupportedSocketOperation`, where Qt takes it and
    /// then never accepts anything; `Operation` when listening already.
    #[cfg(unix)]
    pub fn listen_fd(&mut self, fd: std::os::fd::OwnedFd) -> Result<()> {
        const FUNCTION: &str = "QLocalServer::listen";
        self.check_not_listening(FUNCTION)?;
        match sys::Listener::adopt(fd) {
            Ok((listener, full, is_abstract)) => {
                if let Some(is_abstract) = is_abstract {
                    self.options.set(SocketOptions::ABSTRACT_NAMESPACE, is_abstract);
                }
                let name = full.as_ref().map(|f| {
                    let s = f.to_string_lossy();
                    match s.rsplit_once('/') {
                        Some((_, last)) if !last.is_empty() && is_abstract != Some(true) => last.to_owned(),
                        _ => s.into_owned(),
                    }
                });
                self.start(listener, name, full);
                Ok(())
            }
            Err(e) => Err(self.fail_io(FUNCTION, e)),
        }
    }

    /// Starts serving on `listener`. The last error stays, as in Qt 6: only `close` clears it.
    fn start(&mut self, listener: sys::Listener, name: Option<String>, full: Option<PathBuf>) {
        let accepted_names = full.as_ref().filter(|_| cfg!(unix)).map(|full| {
            // Qt 6 names an accepted socket by its local address: the full name, and as
            // the server name its last part (the whole name, for an abstract one).
            let text = full.to_string_lossy();
            let short = match text.rsplit_once('/') {
                Some((_, last))
                    if !last.is_empty() && !self.options.contains(SocketOptions::ABSTRACT_NAMESPACE) =>
                {
                    last.to_owned()
                }
                _ => text.into_owned(),
            };
            crate::socket::SocketNames::Both(Arc::new((short, full.clone())))
        });
        self.server_name = name;
        self.full_server_name = full;
        let listener = Arc::new(listener);
        self.listener = Some(Arc::clone(&listener));
        {
            let mut q = lock(&self.shared.queue);
            q.closed = false;
            q.listener = Some(listener);
            q.accepted_names = accepted_names;
        }
        if lock(&self.shared.callback).is_some() {
            self.spawn_acceptor();
        }
    }

    /// `listen` on a listening server is an `Operation` error. Qt warns and returns false,
    /// and keeps its last error, so this is not recorded as the server's error either.
    fn check_not_listening(&self, function: &str) -> Result<()> {
        match self.is_listening() {
            true => Err(Error::socket(
                LocalSocketError::Operation,
                format!("{function}: Already listening"),
                None,
            )),
            false => Ok(()),
        }
    }

    pub(super) fn fail(&self, kind: LocalSocketError, message: String, source: Option<io::Error>) -> Error {
        *lock(&self.shared.error) = Some((kind, message.clone()));
        Error::socket(kind, message, source)
    }

    /// An OS error of the server's socket, with Qt's code and text, naming the path it
    /// listens on (a failed `listen` names the path it tried instead).
    pub(super) fn fail_io(&self, function: &str, e: io::Error) -> Error {
        let (kind, message) = qt_server_error(function, &e);
        let error = self.fail(kind, message, Some(e));
        match self.full_server_name() {
            Some(path) => error.at(path),
            None => error,
        }
    }

    /// Removes the socket file of server `name` (Qt's static `removeServer`), whether or
    /// not a server still listens on it: use it to clear a stale socket left by a crash,
    /// and only when you know none runs ([`SingleInstance`](crate::SingleInstance)
    /// proves that with a lock first). A missing file is not an error. No-op on Windows.
    ///
    /// ```
    /// use solo_instance::LocalServer;
    ///
    /// # let name = format!("doc-remove-{}", std::process::id());
    /// // A crashed server's socket file stays behind, and keeps others from listening:
    /// # #[cfg(unix)] {
    /// # let path = solo_instance::default_socket_dir().join(&name);
    /// # std::os::unix::net::UnixListener::bind(&path)?;
    /// assert!(LocalServer::new().listen(&name).is_err());
    /// # }
    /// LocalServer::remove_server(&name)?;
    /// let mut server = LocalServer::new();
    /// server.listen(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_server(name: &str) -> io::Result<()> {
        if name.is_empty() {
            return Ok(());
        }
        sys::remove_server(&name::full_name(name, SocketOptions::empty()))
    }
}

/// Qt's code and text for a failed server call (`QLocalServerPrivate::setError`).
pub(super) fn qt_server_error(function: &str, e: &io::Error) -> (LocalSocketError, String) {
    let (kind, text) = sys::server_error(e);
    let message = if kind == LocalSocketError::Unknown {
        format!("{function}: Unknown error {}", e.raw_os_error().unwrap_or(0))
    } else {
        format!("{function}: {text}")
    };
    (kind, message)
}
