//! The listening socket: binding with a chosen backlog (in a private directory when the
//! file gets a mode, moved into place without replacing anything), adopting a listening
//! socket, waiting with a wake-up, and accepting.

use std::ffi::OsStr;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use interprocess::local_socket::traits::{Listener as _, Stream as _};
use interprocess::local_socket::{Listener as IpListener, Stream};
use interprocess::os::unix::uds_local_socket as uds;

use super::poll::pipe;
use super::socket::{bind_listen, new_socket, SUN_PATH_OFFSET};
use super::{cstr, cvt, set_cloexec_nonblocking};
use crate::sys::Ready;
use crate::SocketOptions;

/// Device and inode of a socket file: what `close` checks before it unlinks.
type FileId = (u64, u64);

/// A listening socket, non-blocking, with its wake-up pipe.
#[derive(Debug)]
pub(crate) struct Listener {
    listener: IpListener,
    /// The listener's descriptor, for poll(2); owned by `listener`.
    raw: RawFd,
    wake_rx: OwnedFd,
    wake_tx: OwnedFd,
    /// The file this listener bound, if it bound one (not for adopted or abstract sockets).
    file: Option<(PathBuf, FileId)>,
}

fn file_id(path: &Path) -> io::Result<FileId> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Moves `from` to `to` unless `to` exists (then `EEXIST`): never replaces a live socket.
fn move_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let (cfrom, cto) = (cstr(from)?, cstr(to)?);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        const RENAME_NOREPLACE: libc::c_uint = 1;
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                cfrom.as_ptr(),
                libc::AT_FDCWD,
                cto.as_ptr(),
                RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // Filesystems without RENAME_NOREPLACE say EINVAL; old kernels ENOSYS.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(e);
        }
    }
    // link(2) fails with EEXIST rather than replace; then drop the temporary name.
    cvt(unsafe { libc::link(cfrom.as_ptr(), cto.as_ptr()) })?;
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
        let c = cstr(&dir)?;
        match cvt(unsafe { libc::mkdir(c.as_ptr(), 0o700) }) {
            Ok(_) => return Ok(dir),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}

impl Listener {
    /// Binds and listens on `path` (or the abstract `name`), giving the socket file
    /// `options`' mode atomically. Errors keep their OS code for the caller to classify.
    pub(crate) fn bind(path: &Path, options: SocketOptions, backlog: i32) -> io::Result<Self> {
        let fd = new_socket(false)?;
        let bytes = path.as_os_str().as_bytes();
        let file = if options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
            if !cfg!(any(target_os = "linux", target_os = "android")) {
                return Err(io::Error::from(io::ErrorKind::Unsupported));
            }
            bind_listen(fd.as_fd(), bytes, true, backlog)?;
            None
        } else if let Some(mode) = options.file_mode() {
            // Qt's order: bind in a private directory, chmod, move into place. Here the move
            // never replaces what is at the target.
            if bytes.len() > crate::name::MAX_SOCKET_PATH {
                return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
            }
            let dir = private_dir(path)?;
            let tmp = dir.join("s");
            let placed = (|| -> io::Result<FileId> {
                bind_listen(fd.as_fd(), tmp.as_os_str().as_bytes(), false, backlog)?;
                let c = cstr(&tmp)?;
                cvt(unsafe { libc::chmod(c.as_ptr(), mode as libc::mode_t) })?;
                let id = file_id(&tmp)?;
                move_no_replace(&tmp, path).map_err(|e| {
                    if e.raw_os_error() == Some(libc::EEXIST) {
                        io::Error::from_raw_os_error(libc::EADDRINUSE)
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
                if e.raw_os_error() != Some(libc::EADDRINUSE) && e.raw_os_error() != Some(libc::ENAMETOOLONG)
                {
                    let _ = unlink_if(path, None);
                }
            })?;
            Some((path.to_path_buf(), file_id(path)?))
        };
        Self::with_fd(fd, file)
    }

    /// Adopts a bound, listening socket: close-on-exec and non-blocking from now on.
    /// Returns the name `getsockname` gives, as Qt 6 reads it (`parseSockaddr`): a path
    /// up to its first NUL; an abstract name without its leading NUL, every byte of the
    /// address kept (trailing NULs too: they are part of it), with `Some(true)`. An
    /// unnamed socket gives no name, and `None` (its options are left alone).
    pub(crate) fn adopt(fd: OwnedFd) -> io::Result<(Self, Option<PathBuf>, Option<bool>)> {
        // Only a listening stream socket can accept: refuse anything else now, not by
        // waiting for ever later.
        let opt = |name| {
            let mut v: libc::c_int = 0;
            let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
            cvt(unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    name,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            })
            .map(|_| v)
        };
        if opt(libc::SO_TYPE)? != libc::SOCK_STREAM || opt(libc::SO_ACCEPTCONN)? == 0 {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "not a listening stream socket"));
        }
        let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        cvt(unsafe {
            libc::getsockname(fd.as_raw_fd(), &mut addr as *mut _ as *mut libc::sockaddr, &mut len)
        })?;
        if addr.sun_family as libc::c_int != libc::AF_UNIX {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "not a Unix domain socket"));
        }
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
        Ok((Self::with_fd(fd, None)?, name, is_abstract))
    }

    fn with_fd(fd: OwnedFd, file: Option<(PathBuf, FileId)>) -> io::Result<Self> {
        set_cloexec_nonblocking(fd.as_raw_fd(), true)?;
        let (wake_rx, wake_tx) = pipe()?;
        let raw = fd.as_raw_fd();
        let listener = IpListener::from(uds::Listener::from(fd));
        Ok(Listener { listener, raw, wake_rx, wake_tx, file })
    }

    /// Waits until a connection can be accepted, [`wake`](Self::wake) is called, or the
    /// timeout passes. No timeout waits for ever.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<Ready> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut fds = [
            libc::pollfd { fd: self.raw, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.wake_rx.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Round up, so a wait never ends before its deadline.
                    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
                }
            };
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if r == -1 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents != 0 {
                let mut buf = [0u8; 64];
                while unsafe { libc::read(self.wake_rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0
                {
                }
            }
            return Ok(Ready { acceptable: fds[0].revents != 0 });
        }
    }

    /// The listening socket, for waiting on it elsewhere (the `tokio` feature's readiness)
    /// and for `LocalServer::socket_descriptor`.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `raw` is owned by `self.listener`, open for as long as `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(self.raw) }
    }

    /// Makes a [`wait`](Self::wait) in another thread return. Never blocks.
    pub(crate) fn wake(&self) {
        let _ = unsafe { libc::write(self.wake_tx.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }

    /// Accepts one connection if one is waiting; `Ok(None)` if none is.
    pub(crate) fn try_accept(&self) -> io::Result<Option<Stream>> {
        loop {
            match self.listener.accept() {
                Ok(stream) => {
                    // BSD and macOS hand out accepted sockets with the listener's O_NONBLOCK.
                    if !cfg!(any(target_os = "linux", target_os = "android")) {
                        stream.set_nonblocking(false)?;
                    }
                    return Ok(Some(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // A client gave up before we took it: nothing to hand out, look again.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO)
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the socket file this listener bound, if it is still that file.
    pub(crate) fn remove_own_file(&self) {
        if let Some((path, id)) = &self.file {
            let _ = unlink_if(path, Some(*id));
        }
    }
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
