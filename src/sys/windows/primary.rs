//! Windows: where a primary listens. Others may connect to the System scope's pipe, but
//! not add instances of their own to it (Qt's OTHER_ACCESS would let them, and so receive
//! launches). Otherwise the pipe is this user's only, labelled at this process's integrity
//! level (no write up: a less trusted process cannot write to an elevated primary), under
//! a fresh random name that is published (see [`published`](super::published)) only once
//! the pipe exists. The serving loop makes the pipe's instances itself (overlapped, for
//! its completion port) with that security descriptor; the `LocalServer` binds nothing.

use std::path::{Path, PathBuf};

use super::Acceptor;
use crate::{LocalServer, Result};

/// What [`listen_primary`] set up.
pub(crate) struct Listening {
    /// The name launches connect to: the pipe's.
    pub(crate) name: PathBuf,
    /// Outside the System scope: the file that publishes `name` (the location's socket
    /// path), written by the caller once the pipe exists and withdrawn before the lock is
    /// let go.
    pub(crate) published: Option<PathBuf>,
    /// The pipe's first instance, which the serving loop accepts on.
    pub(crate) acceptor: Option<Acceptor>,
}

/// Creates the primary's pipe for the location's `socket` (the System scope's pipe name,
/// or the file that publishes a random one). `server` binds nothing on Windows.
pub(crate) fn listen_primary(_server: &mut LocalServer, socket: &Path, system: bool) -> Result<Listening> {
    let (name, published, sddl) = if system {
        (socket.to_path_buf(), None, super::shared_pipe_sddl()?)
    } else {
        (super::random_pipe_name()?, Some(socket.to_path_buf()), super::private_pipe_sddl()?)
    };
    let acceptor = Acceptor::bind(&name, &sddl).map_err(|e| {
        // As `LocalServer::listen` words it.
        let (kind, text) = super::server_error(&e);
        let message = match kind {
            crate::LocalSocketError::Unknown => {
                format!("QLocalServer::listen: Unknown error {}", e.raw_os_error().unwrap_or(0))
            }
            _ => format!("QLocalServer::listen: {text}"),
        };
        crate::Error::socket(kind, message, Some(e)).at(&name)
    })?;
    Ok(Listening { name, published, acceptor: Some(acceptor) })
}
