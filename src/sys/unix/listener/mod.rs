//! The listening socket: binding with a chosen backlog (when the file gets a mode: on
//! Linux at its path with the mode set on the socket first, elsewhere in a private
//! directory and moved into place without replacing anything), adopting a listening
//! socket, waiting with a wake-up, and accepting. On Linux a plain `accept` may sleep in
//! `accept4` itself: [`blocking`].

use std::ffi::OsStr;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::atomic::{AtomicU32, Ordering};
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::sync::Mutex;
use std::time::Duration;

use interprocess::local_socket::traits::Stream as _;
use interprocess::local_socket::{Listener as IpListener, Stream};
use interprocess::os::unix::uds_local_socket as uds;
use rustix::fs::{Mode, RawMode};
use rustix::io::Errno;
use rustix::net::SocketType;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod blocking;
mod place;

#[cfg(any(target_os = "linux", target_os = "android"))]
use blocking::{kick_address, Blocking};

use super::poll::Waker;
use super::socket::{bind_listen, new_socket};
use super::{is, set_cloexec_nonblocking};
use crate::sys::Ready;
use crate::SocketOptions;
#[cfg(any(target_os = "linux", target_os = "android"))]
use place::bind_with_mode;
use place::{file_id, move_no_replace, private_dir};

/// Device and inode of a socket file: what `close` checks before it unlinks.
pub(crate) type FileId = (u64, u64);

/// A listening socket with its wake-up pipe. Non-blocking, except on Linux and Android
/// for a socket this crate bound: that one stays blocking, so that a plain `accept` can
/// sleep in `accept4` itself (std's one system call, not `poll` and then `accept4`),
/// until its first non-blocking use ([`try_accept`](Self::try_accept)) makes it
/// non-blocking for good.
#[derive(Debug)]
pub(crate) struct Listener {
    listener: IpListener,
    waker: Waker,
    /// The file this listener bound, if it bound one (not for adopted or abstract sockets).
    file: Option<(PathBuf, FileId)>,
    /// The process that made it: a child forked without exec has a copy of it, whose
    /// close must leave the socket file and the socket itself to the parent.
    pid: u32,
    /// The fork generation before the socket was made ([`ADOPTED`] for an adopted one,
    /// which others may hold): while it stands, no other process holds the socket, and
    /// closing it ends it (see [`shut_down`](Self::shut_down)).
    generation: u64,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    blocking: Blocking,
}

impl Listener {
    /// Binds and listens on `path` (or the abstract `name`), giving the socket file
    /// `options`' mode atomically. Errors keep their OS code for the caller to classify.
    pub(crate) fn bind(path: &Path, options: SocketOptions, backlog: i32) -> io::Result<Self> {
        let generation = super::forks::generation();
        // Close-on-exec from the start, and non-blocking but on Linux (see `Listener`).
        let fd = new_socket(!BLOCKS)?;
        let bytes = path.as_os_str().as_bytes();
        let file = if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
            if !cfg!(any(target_os = "linux", target_os = "android")) {
                return Err(io::Error::from(io::ErrorKind::Unsupported));
            }
            bind_listen(fd.as_fd(), bytes, true, backlog)?;
            return Self::with_fd(fd, None, kick_address(bytes, true), BLOCKS, generation);
        } else if let Some(mode) = options.file_mode() {
            // Qt's order: bind in a private directory, chmod, move into place. Here the move
            // never replaces what is at the target.
            if bytes.len() > crate::name::MAX_SOCKET_PATH {
                return Err(Errno::NAMETOOLONG.into());
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode as RawMode)).is_ok() {
                let id = bind_with_mode(fd.as_fd(), path, mode, backlog)?;
                return Self::with_fd(
                    fd,
                    Some((path.to_path_buf(), id)),
                    kick_address(bytes, false),
                    BLOCKS,
                    generation,
                );
            }
            let dir = private_dir(path)?;
            let tmp = dir.join("s");
            let placed = (|| -> io::Result<FileId> {
                bind_listen(fd.as_fd(), tmp.as_os_str().as_bytes(), false, backlog)?;
                rustix::fs::chmod(&tmp, Mode::from_raw_mode(mode as RawMode))?;
                let id = file_id(&tmp)?;
                move_no_replace(&tmp, path).map_err(|e| {
                    if is(&e, Errno::EXIST) {
                        Errno::ADDRINUSE.into()
                    } else {
                        e
                    }
                })?;
                Ok(id)
            })();
            let _ = std::fs::remove_file(&tmp);
            let _ = rustix::fs::rmdir(&dir);
            Some((path.to_path_buf(), placed?))
        } else {
            bind_listen(fd.as_fd(), bytes, false, backlog).inspect_err(|e| {
                // bind created the file but listen failed: remove it (it is ours).
                if !is(e, Errno::ADDRINUSE) && !is(e, Errno::NAMETOOLONG) {
                    let _ = unlink_if(path, None);
                }
            })?;
            Some((path.to_path_buf(), file_id(path)?))
        };
        Self::with_fd(fd, file, kick_address(bytes, false), BLOCKS, generation)
    }

    /// Adopts a bound, listening socket: close-on-exec and non-blocking from now on.
    /// Returns the name `getsockname` gives, as Qt 6 reads it (`parseSockaddr`): a path
    /// up to its first NUL; an abstract name without its leading NUL, every byte of the
    /// address kept (trailing NULs too: they are part of it), with `Some(true)`. An
    /// unnamed socket gives no name, and `None` (its options are left alone).
    pub(crate) fn adopt(fd: OwnedFd) -> io::Result<(Self, Option<PathBuf>, Option<bool>)> {
        // Non-blocking: shared with whoever passed it, it never blocks in `accept4` here.
        // Only a listening stream socket can accept: refuse anything else now, not by
        // waiting for ever later.
        if rustix::net::sockopt::socket_type(&fd)? != SocketType::STREAM || !accepts_connections(fd.as_fd())?
        {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "not a listening stream socket"));
        }
        // libc's getsockname, not rustix's: see the module docs.
        // SAFETY: `sockaddr_un` is plain data (integers and a byte array): all zeros is a
        // valid value of it.
        let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: `fd` is open for the call; `addr` and `len` are live, writable locals and
        // `len` holds `addr`'s size, so the kernel writes no more than that and sets `len`
        // to the address's length.
        let r = unsafe {
            libc::getsockname(fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_un).cast(), &mut len)
        };
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        if addr.sun_family as libc::c_int != libc::AF_UNIX {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "not a Unix domain socket"));
        }
        /// Where `sun_path` starts: after `sun_family` on Linux, after `sun_len` and
        /// `sun_family` on macOS and the BSDs.
        const SUN_PATH_OFFSET: usize = mem::offset_of!(libc::sockaddr_un, sun_path);
        let path_len = (len as usize).saturating_sub(SUN_PATH_OFFSET).min(addr.sun_path.len());
        let raw: Vec<u8> = addr.sun_path[..path_len].iter().map(|&c| c as u8).collect();
        let abstract_ns = cfg!(any(target_os = "linux", target_os = "android")) && raw.first() == Some(&0);
        let (name, is_abstract) = match raw.first() {
            None => (None, None),
            Some(0) if abstract_ns => ((path_len > 1).then(|| raw[1..].to_vec()), Some(true)),
            Some(_) => {
                let path: Vec<u8> = raw.iter().copied().take_while(|&b| b != 0).collect();
                ((!path.is_empty()).then_some(path), Some(false))
            }
        };
        let name = name.map(|n| PathBuf::from(OsStr::from_bytes(&n)));
        set_cloexec_nonblocking(fd.as_fd(), true)?;
        Ok((Self::with_fd(fd, None, None, false, ADOPTED)?, name, is_abstract))
    }

    /// `fd` is close-on-exec, and blocking if `blocking` (then only on Linux, made by
    /// `bind`). `kick` is the address it listens on, for
    /// [`wake_blocked`](Self::wake_blocked)'s kicks; a blocking `fd` without one (an
    /// address too long to connect to) is made non-blocking here.
    fn with_fd(
        fd: OwnedFd,
        file: Option<(PathBuf, FileId)>,
        kick: Option<Kick>,
        blocking: bool,
        generation: u64,
    ) -> io::Result<Self> {
        let blocking = blocking && kick.is_some();
        if BLOCKS && !blocking {
            set_cloexec_nonblocking(fd.as_fd(), true)?;
        }
        let waker = Waker::default();
        let listener = IpListener::from(uds::Listener::from(fd));
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (kick, blocking);
        Ok(Listener {
            listener,
            waker,
            file,
            pid: super::forks::own_pid(),
            generation,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            blocking: Blocking {
                nonblocking: AtomicBool::new(!blocking),
                blocked: AtomicUsize::new(0),
                addr: kick,
                kicks: Mutex::new(Vec::new()),
                kicked: AtomicBool::new(false),
            },
        })
    }

    /// Waits until a connection can be accepted, [`wake`](Self::wake) is called, or the
    /// timeout passes. No timeout waits for ever.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Ready> {
        Ok(Ready { acceptable: self.waker.wait(self.fd(), timeout)? })
    }

    /// The listening socket, for waiting on it elsewhere (the `tokio` feature's readiness)
    /// and for `LocalServer::socket_descriptor`.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match &self.listener {
            IpListener::UdSocket(l) => l.as_fd(),
        }
    }

    /// Makes a [`wait`](Self::wait) in another thread return. Never blocks.
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    /// Accepts one connection if one is waiting; `Ok(None)` if none is. Makes the
    /// socket non-blocking for good first, if it was not.
    pub(crate) fn try_accept(&self) -> io::Result<Option<Stream>> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        self.make_nonblocking()?;
        loop {
            match self.accept_one() {
                Ok(Some(stream)) => {
                    // BSD and macOS hand out accepted sockets with the listener's O_NONBLOCK.
                    if !cfg!(any(target_os = "linux", target_os = "android")) {
                        stream.set_nonblocking(false)?;
                    }
                    return Ok(Some(stream));
                }
                // A kick: not a client.
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // A client gave up before we took it: nothing to hand out, look again.
                Err(e) if gave_up(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One `accept`: `Ok(None)` for a kick (Linux), which is dropped.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn accept_one(&self) -> io::Result<Option<Stream>> {
        interprocess::local_socket::traits::Listener::accept(&self.listener).map(Some)
    }

    /// Makes the socket refuse connections from now on, in every process that holds it (a
    /// child forked without exec shares it, and closing our descriptor would leave it
    /// listening there), and hangs up on those waiting in its backlog, so that their
    /// clients start over. For sockets the crate bound itself (the primary's): an adopted
    /// one's other holders (a service manager) would still use it.
    ///
    /// With no fork since the socket was made, this process holds it alone, and closing
    /// it (which follows) does all this: nothing to do before.
    pub(crate) fn shut_down(&self) {
        if self.pid != super::forks::own_pid() || !super::forks::forked_since(self.generation) {
            return;
        }
        // connect(2) to a listening Unix socket shut down for reading fails (ECONNREFUSED on
        // Linux); what is queued already can still be accepted.
        let _ = rustix::net::shutdown(self.fd(), rustix::net::Shutdown::Both);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.make_nonblocking().is_err() {
            return;
        }
        loop {
            match self.accept_one() {
                // Accepted just now, so ours alone: closing it hangs up.
                Ok(Some(stream)) => drop(stream),
                Ok(None) => {}
                Err(e) if gave_up(&e) => {}
                Err(_) => return,
            }
        }
    }

    /// Device and inode of the socket file this listener bound, if it bound one.
    pub(crate) fn file_id(&self) -> Option<FileId> {
        self.file.as_ref().map(|(_, id)| *id)
    }

    /// Removes the socket file this listener bound, if it is still that file, and only in
    /// the process that bound it (not in a child forked without exec, where the parent
    /// still serves it).
    pub(crate) fn remove_own_file(&self) {
        if self.pid != super::forks::own_pid() {
            return;
        }
        if let Some((path, id)) = &self.file {
            let _ = unlink_if(path, Some(*id));
        }
    }
}

/// Whether an `accept` failed only because the client gave up before it was taken.
fn gave_up(e: &io::Error) -> bool {
    matches!(Errno::from_io_error(e), Some(Errno::CONNABORTED | Errno::INTR | Errno::PROTO))
}

/// What a kick connects to (see `blocking`); none outside Linux.
#[cfg(any(target_os = "linux", target_os = "android"))]
use blocking::Kick;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
type Kick = ();

/// The generation of an adopted socket: taken as forked (whoever passed it may hold it).
const ADOPTED: u64 = u64::MAX;

/// Whether `bind` makes the socket blocking (see [`Listener`]).
const BLOCKS: bool = cfg!(any(target_os = "linux", target_os = "android"));

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn kick_address(_name: &[u8], _abstract_ns: bool) -> Option<Kick> {
    None
}

/// Unlinks `path` if it is the file `id` names (any file, with `None`).
fn unlink_if(path: &Path, id: Option<FileId>) -> io::Result<()> {
    if let Some(id) = id {
        if file_id(path)? != id {
            return Ok(());
        }
    }
    std::fs::remove_file(path)
}

/// Whether the socket `fd` is listening (`SO_ACCEPTCONN`).
#[cfg(not(target_vendor = "apple"))]
fn accepts_connections(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(rustix::net::sockopt::socket_acceptconn(fd)?)
}

/// Whether the socket `fd` is listening (`SO_ACCEPTCONN`), through libc: rustix leaves
/// this option out on Apple platforms.
#[cfg(target_vendor = "apple")]
fn accepts_connections(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(super::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0)
}
