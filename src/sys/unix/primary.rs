//! Unix: where a primary listens. The `LocalServer` binds the socket at the location's
//! path (or abstract name), and the serving loop accepts on that same listener. Nothing
//! is published beside it: the socket's path is the name launches connect to.

use std::path::{Path, PathBuf};

use super::Acceptor;
use crate::{LocalServer, Result};

/// What [`listen_primary`] set up.
pub(crate) struct Listening {
    /// The name launches connect to: the socket's path.
    pub(crate) name: PathBuf,
    /// The file that publishes `name`: none on Unix.
    pub(crate) published: Option<PathBuf>,
    /// The listening end the serving loop accepts on.
    pub(crate) acceptor: Option<Acceptor>,
}

/// Makes `server` (its socket options set) listen at `socket` for a primary. `system`:
/// the System scope (unused here: the socket options say who may connect).
pub(crate) fn listen_primary(server: &mut LocalServer, socket: &Path, _system: bool) -> Result<Listening> {
    server.listen(&socket.to_string_lossy())?;
    let acceptor = server.sys_listener().and_then(Acceptor::of_listener);
    Ok(Listening { name: socket.to_path_buf(), published: None, acceptor })
}
