//! The listening socket: binding with a chosen backlog (when the file gets a mode: on
//! Linux at its path with the mode set on the socket first, elsewhere in a private
//! directory and moved into place without replacing anything), adopting a listening
//! socket, waiting with a wake-up, and accepting.

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
use rustix::net::{SocketAddrAny, SocketAddrUnix, SocketFlags};

use super::poll::Waker;
use super::socket::{bind_listen, new_socket};
use super::{is, set_cloexec_nonblocking};
use crate::sys::Ready;
use crate::SocketOptions;

/// Device and inode of a socket file: what `close` checks before it unlinks.
type FileId = (u64, u64);

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
    #[cfg(any(target_os = "linux", target_os = "android"))]
    blocking: Blocking,
}

/// Linux: the state of a listener's blocking accepts ([`Listener::blocking`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[derive(Debug)]
struct Blocking {
    /// The socket is non-blocking (for good): no accept blocks in `accept4` any more.
    nonblocking: AtomicBool,
    /// Threads in a blocking `accept4`.
    blocked: AtomicUsize,
    /// Where a kick connects (the socket's own address); `None`: a blocking accept could
    /// not be kicked, so none is made (adopted sockets).
    addr: Option<SocketAddrUnix>,
    /// The client addresses of kicks not accepted yet: those connections are dropped, not
    /// handed out.
    kicks: Mutex<Vec<SocketAddrAny>>,
    /// `kicks` is not empty: accepts compare the peer's address only then.
    kicked: AtomicBool,
}

fn file_id(path: &Path) -> io::Result<FileId> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Moves `from` to `to` unless `to` exists (then `EEXIST`): never replaces a live socket.
fn move_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // Filesystems without RENAME_NOREPLACE say EINVAL; old kernels ENOSYS.
            Err(Errno::INVAL | Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // link(2) fails with EEXIST rather than replace; then drop the temporary name.
    rustix::fs::link(from, to)?;
    let _ = std::fs::remove_file(from);
    Ok(())
}

/// A fresh 0700 directory beside `target`, for binding before the mode is set.
fn private_dir(target: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let seed = std::process::id() as u64;
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        let tag = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (n << 32) ^ nanos) & 0xFF_FFFF;
        // As short as Qt's `XXXXXX/s`: the temporary path must fit `sun_path` too.
        let dir = parent.join(format!(".{tag:06x}"));
        match rustix::fs::mkdir(&dir, Mode::from_raw_mode(0o700)) {
            Ok(()) => return Ok(dir),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Errno::EXIST.into())
}

/// Linux: binds `fd`, whose mode was set with `fchmod` already, at `path` itself, and
/// listens. The kernel creates the file with the socket's mode less the umask, so it is
/// never more open than `mode`, not even for an instant, and bind(2) never replaces a
/// file (`EADDRINUSE`). Bits the umask took are given back with a chmod (Qt's modes are
/// not masked). Saves the private directory's mkdir, rename, unlink and rmdir.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn bind_with_mode(fd: BorrowedFd<'_>, path: &Path, mode: u32, backlog: i32) -> io::Result<FileId> {
    let bytes = path.as_os_str().as_bytes();
    bind_listen(fd, bytes, false, backlog).inspect_err(|e| {
        // bind created the file but listen failed: remove it (it is ours).
        if !is(e, Errno::ADDRINUSE) && !is(e, Errno::NAMETOOLONG) {
            let _ = unlink_if(path, None);
        }
    })?;
    // In a directory only this user (or, sticky, only the owner) may change, the file is
    // still the one bind made; anything else is left alone.
    let meta = std::fs::symlink_metadata(path)?;
    if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
        return Err(io::Error::other("the socket file was replaced"));
    }
    let id = (meta.dev(), meta.ino());
    if meta.mode() & 0o7777 != mode {
        rustix::fs::chmod(path, Mode::from_raw_mode(mode as RawMode)).inspect_err(|_| {
            let _ = unlink_if(path, Some(id));
        })?;
    }
    Ok(id)
}

impl Listener {
    /// Binds and listens on `path` (or the abstract `name`), giving the socket file
    /// `options`' mode atomically. Errors keep their OS code for the caller to classify.
    pub(crate) fn bind(path: &Path, options: SocketOptions, backlog: i32) -> io::Result<Self> {
        // Close-on-exec from the start, and non-blocking but on Linux (see `Listener`).
        let fd = new_socket(!BLOCKS)?;
        let bytes = path.as_os_str().as_bytes();
        let file = if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
            if !cfg!(any(target_os = "linux", target_os = "android")) {
                return Err(io::Error::from(io::ErrorKind::Unsupported));
            }
            bind_listen(fd.as_fd(), bytes, true, backlog)?;
            return Self::with_fd(fd, None, kick_address(bytes, true), BLOCKS);
        } else if let Some(mode) = options.file_mode() {
            // Qt's order: bind in a private directory, chmod, move into place. Here the move
            // never replaces what is at the target.
            if bytes.len() > crate::name::MAX_SOCKET_PATH {
                return Err(Errno::NAMETOOLONG.into());
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode as RawMode)).is_ok() {
                let id = bind_with_mode(fd.as_fd(), path, mode, backlog)?;
                return Self::with_fd(fd, Some((path.to_path_buf(), id)), kick_address(bytes, false), BLOCKS);
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
            let _ = std::fs::remove_dir(&dir);
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
        Self::with_fd(fd, file, kick_address(bytes, false), BLOCKS)
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
        Ok((Self::with_fd(fd, None, None, false)?, name, is_abstract))
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
    ) -> io::Result<Self> {
        let blocking = blocking && kick.is_some();
        if BLOCKS && !blocking {
            set_cloexec_nonblocking(fd.as_fd(), true)?;
        }
        let waker = Waker::new()?;
        let listener = IpListener::from(uds::Listener::from(fd));
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (kick, blocking);
        Ok(Listener {
            listener,
            waker,
            file,
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

    /// One `accept4`: `Ok(None)` for a kick, which is dropped. The peer's address comes
    /// with the call (std's `accept` asks for it too), and is compared only while a kick
    /// is on its way.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn accept_one(&self) -> io::Result<Option<Stream>> {
        let (fd, peer) = rustix::net::acceptfrom_with(self.fd(), SocketFlags::CLOEXEC)?;
        let b = &self.blocking;
        if b.kicked.load(Ordering::Acquire) {
            if let Some(peer) = peer {
                let mut kicks = b.kicks.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(i) = kicks.iter().position(|k| *k == peer) {
                    kicks.swap_remove(i);
                    b.kicked.store(!kicks.is_empty(), Ordering::Release);
                    return Ok(None);
                }
            }
        }
        Ok(Some(Stream::from(uds::Stream::from(fd))))
    }

    /// Linux: makes the socket non-blocking for good (a no-op once it is). A thread in a
    /// blocking `accept4` already stays there until a client or a kick comes.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn make_nonblocking(&self) -> io::Result<()> {
        if !self.blocking.nonblocking.load(Ordering::Acquire) {
            set_cloexec_nonblocking(self.fd(), true)?;
            self.blocking.nonblocking.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Linux: a blocking accept, if the socket is still blocking: counted in
    /// [`blocked`](Self::blocked) until the returned guard is dropped. Register it where
    /// a waker would look ([`wake_blocked`](Self::wake_blocked)) before accepting.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn blocking(&self) -> Option<BlockingAccept<'_>> {
        if self.blocking.nonblocking.load(Ordering::Acquire) {
            return None;
        }
        self.blocking.blocked.fetch_add(1, Ordering::SeqCst);
        Some(BlockingAccept(self))
    }

    /// Linux: how many threads are in (or about to enter) a blocking `accept4`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn blocked(&self) -> usize {
        self.blocking.blocked.load(Ordering::SeqCst)
    }

    /// Linux: makes every blocking accept under way return (`Ok(None)`), by a kick: a
    /// connection from this process, from an address of its own that the accept
    /// recognises and drops. For a push onto the queue that a thread in `accept4` must
    /// see. Does nothing if no accept blocks. A kick left in the backlog (its accept took
    /// a client instead) is dropped by a later accept.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn wake_blocked(&self) {
        let blocked = self.blocked();
        if blocked == 0 {
            return;
        }
        let Some(addr) = &self.blocking.addr else { return };
        // The path is no longer ours (removed, or another server's): nobody connects to
        // this socket any more, and a kick would reach someone else.
        if let Some((path, id)) = &self.file {
            if file_id(path).ok() != Some(*id) {
                return;
            }
        }
        for _ in 0..blocked {
            let _ = self.kick(addr);
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn kick(&self, addr: &SocketAddrUnix) -> io::Result<()> {
        let fd = new_socket(true)?;
        // Autobind: the kernel gives the socket a unique abstract address.
        rustix::net::bind(&fd, &SocketAddrUnix::new_unnamed())?;
        let me = rustix::net::getsockname(&fd)?;
        let b = &self.blocking;
        {
            let mut kicks = b.kicks.lock().unwrap_or_else(|p| p.into_inner());
            kicks.push(me.clone());
            b.kicked.store(true, Ordering::Release);
        }
        if let Err(e) = rustix::net::connect(&fd, addr) {
            // Not queued (a full backlog wakes the accept anyway): forget it.
            let mut kicks = b.kicks.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = kicks.iter().position(|k| *k == me) {
                kicks.swap_remove(i);
            }
            b.kicked.store(!kicks.is_empty(), Ordering::Release);
            return Err(e.into());
        }
        Ok(())
    }

    /// Linux: makes every blocking accept return for good (`close`): `shutdown(SHUT_RD)`
    /// on the listening socket, which Linux answers in `accept4` with `EINVAL`. Only when
    /// one blocks: only then is the socket one this process bound and owns (an adopted
    /// socket, which others may share, never blocks).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn shut_blocked(&self) {
        if self.blocked() > 0 {
            let _ = rustix::net::shutdown(self.fd(), rustix::net::Shutdown::Read);
        }
    }

    /// Removes the socket file this listener bound, if it is still that file.
    pub(crate) fn remove_own_file(&self) {
        if let Some((path, id)) = &self.file {
            let _ = unlink_if(path, Some(*id));
        }
    }
}

/// A blocking accept under way, counted in [`Listener::blocked`] while it lives.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[derive(Debug)]
pub(crate) struct BlockingAccept<'a>(&'a Listener);

#[cfg(any(target_os = "linux", target_os = "android"))]
impl BlockingAccept<'_> {
    /// Sleeps in `accept4` until a client comes (`Ok(Some)`), or returns `Ok(None)` to be
    /// looked at again: a kick ([`Listener::wake_blocked`]), the socket made non-blocking
    /// meanwhile, or shut down by [`Listener::shut_blocked`] (`EINVAL`).
    pub(crate) fn accept(self) -> io::Result<Option<Stream>> {
        loop {
            return match self.0.accept_one() {
                Ok(s) => Ok(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || is(&e, Errno::INVAL) => Ok(None),
                Err(e) if gave_up(&e) => continue,
                Err(e) => Err(e),
            };
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Drop for BlockingAccept<'_> {
    fn drop(&mut self) {
        self.0.blocking.blocked.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether an `accept` failed only because the client gave up before it was taken.
fn gave_up(e: &io::Error) -> bool {
    matches!(Errno::from_io_error(e), Some(Errno::CONNABORTED | Errno::INTR | Errno::PROTO))
}

/// What a kick connects to: the socket's own address, a path made absolute (the working
/// directory may change meanwhile). `None` when there is none to connect to.
#[cfg(any(target_os = "linux", target_os = "android"))]
type Kick = SocketAddrUnix;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
type Kick = ();

/// Whether `bind` makes the socket blocking (see [`Listener`]).
const BLOCKS: bool = cfg!(any(target_os = "linux", target_os = "android"));

#[cfg(any(target_os = "linux", target_os = "android"))]
fn kick_address(name: &[u8], abstract_ns: bool) -> Option<Kick> {
    if abstract_ns {
        return SocketAddrUnix::new_abstract_name(name).ok();
    }
    let path = Path::new(OsStr::from_bytes(name));
    let path = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().ok()?.join(path) };
    if path.as_os_str().len() > crate::name::MAX_SOCKET_PATH {
        return None;
    }
    SocketAddrUnix::new(path.as_os_str()).ok()
}

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

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::Listener;
    use crate::SocketOptions;

    /// A kick is dropped by whichever accept meets it, blocking or not, in either order
    /// with a client: it is never handed out as one.
    #[test]
    fn a_kick_is_never_handed_out() {
        let dir = std::env::temp_dir().join(format!("solo-kick-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let listener = Listener::bind(&path, SocketOptions::empty(), 5).unwrap();
        // A client, then a kick: the blocking accept takes the client.
        let blocking = listener.blocking().expect("a socket bound here blocks");
        let _client = UnixStream::connect(&path).unwrap();
        listener.wake_blocked();
        assert!(blocking.accept().unwrap().is_some());
        // The kick left in the backlog: the next blocking accept meets it, drops it, and
        // returns no client.
        let blocking = listener.blocking().expect("still blocking");
        assert!(blocking.accept().unwrap().is_none());
        // A kick, then a client: a non-blocking accept drops the kick and takes the client.
        let blocking = listener.blocking().expect("still blocking");
        listener.wake_blocked();
        assert_eq!(listener.blocked(), 1);
        drop(blocking);
        let _client = UnixStream::connect(&path).unwrap();
        assert!(listener.try_accept().unwrap().is_some());
        assert!(listener.try_accept().unwrap().is_none(), "a kick was handed out");
        // Non-blocking for good now: no blocking accept any more.
        assert!(listener.blocking().is_none());
        listener.remove_own_file();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
