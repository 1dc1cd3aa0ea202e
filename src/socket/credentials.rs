//! [`PeerCredentials`]: who is at the other end of a [`LocalSocket`].

use std::io;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
use interprocess::local_socket::traits::StreamCommon as _;

use super::LocalSocket;
use crate::{sys, Sid};

/// Who is at the other end of a [`LocalSocket`], as the OS reports it at connect time.
///
/// Non-exhaustive: read its fields; only [`LocalSocket::peer_credentials`] makes one, so
/// fields may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCredentials {
    /// The peer's process id, where the OS gives it (Linux, macOS, Windows; not the BSDs).
    /// `None` on Linux when the peer runs in a pid namespace this process cannot see (a
    /// Flatpak or bubblewrap sandbox, a container, or the host seen from inside one): the
    /// uid and gid are still there.
    pub pid: Option<u32>,
    /// The peer's effective user id (Unix).
    pub uid: Option<u32>,
    /// The peer's effective group id (Unix).
    pub gid: Option<u32>,
    /// Windows: a user SID. On a server's end, the client's user: the identity it
    /// connected with, read through `ImpersonateNamedPipeClient`, and only from an
    /// impersonation token at the identification level or above (`None` otherwise, say for
    /// an anonymous client). On a client's end, the pipe's owner, which only the user who
    /// created the pipe (or a privileged process) can set: it names who created the pipe,
    /// not who serves the instance this client reached (anyone the pipe's DACL grants
    /// `FILE_CREATE_PIPE_INSTANCE` may serve instances of it). `None` on Unix, and where
    /// Windows would not say.
    pub sid: Option<Sid>,
}

impl LocalSocket {
    /// The credentials of the process at the other end, taken when the connection was
    /// made (`SO_PEERCRED` on Linux, `LOCAL_PEERCRED` and `LOCAL_PEERPID` on macOS,
    /// `getpeereid` on the BSDs, the client process id on Windows).
    ///
    /// Both ends see each other: a server learns who connected, a client who serves.
    ///
    /// ```
    /// use solo_instance::{LocalServer, LocalSocket};
    ///
    /// # let name = format!("doc-peer-{}", std::process::id());
    /// let mut server = LocalServer::new();
    /// server.listen(&name)?;
    /// let client = LocalSocket::connect(&name)?;
    /// let accepted = server.accept()?;
    /// // Both ends are this process here.
    /// # #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    /// assert_eq!(accepted.peer_credentials()?.pid, Some(std::process::id()));
    /// # #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    /// assert_eq!(client.peer_credentials()?.pid, Some(std::process::id()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        // Linux: read directly, so that a peer in another pid namespace (a Flatpak or
        // bubblewrap sandbox, a container), whose pid the kernel gives as 0, still has its
        // uid and gid (interprocess refuses the whole answer then).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use std::os::fd::AsFd as _;
            let (pid, uid, gid) = sys::peer_ucred(self.as_fd())?;
            Ok(PeerCredentials { pid, uid, gid, sid: None })
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let creds = self.stream.peer_creds()?;
        #[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
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
}
