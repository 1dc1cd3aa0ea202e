//! Linux: a listener's blocking accepts. A plain `accept` sleeps in `accept4` itself
//! (std's one system call); `close` wakes it by `shutdown(SHUT_RD)`, and a push onto the
//! queue from another thread by a "kick": a connection of this process's own, from an
//! address the kernel gave it, that the accept recognises and drops.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use interprocess::local_socket::Stream;
use interprocess::os::unix::uds_local_socket as uds;
use rustix::io::Errno;
use rustix::net::{SocketAddrAny, SocketAddrUnix, SocketFlags};

use super::super::socket::new_socket;
use super::super::{is, set_cloexec_nonblocking};
use super::{file_id, gave_up, Listener};

/// What a kick connects to: the socket's own address, a path made absolute (the working
/// directory may change meanwhile).
pub(super) type Kick = SocketAddrUnix;

/// Linux: the state of a listener's blocking accepts ([`Listener::blocking`]).
#[derive(Debug)]
pub(super) struct Blocking {
    /// The socket is non-blocking (for good): no accept blocks in `accept4` any more.
    pub(super) nonblocking: AtomicBool,
    /// Threads in a blocking `accept4`.
    pub(super) blocked: AtomicUsize,
    /// Where a kick connects (the socket's own address); `None`: a blocking accept could
    /// not be kicked, so none is made (adopted sockets).
    pub(super) addr: Option<SocketAddrUnix>,
    /// The client addresses of kicks not accepted yet: those connections are dropped, not
    /// handed out.
    pub(super) kicks: Mutex<Vec<SocketAddrAny>>,
    /// `kicks` is not empty: accepts compare the peer's address only then.
    pub(super) kicked: AtomicBool,
}

impl Listener {
    /// One `accept4`: `Ok(None)` for a kick, which is dropped. The peer's address comes
    /// with the call (std's `accept` asks for it too), and is compared only while a kick
    /// is on its way.
    pub(super) fn accept_one(&self) -> io::Result<Option<Stream>> {
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
    pub(super) fn make_nonblocking(&self) -> io::Result<()> {
        if !self.blocking.nonblocking.load(Ordering::Acquire) {
            set_cloexec_nonblocking(self.fd(), true)?;
            self.blocking.nonblocking.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Linux: a blocking accept, if the socket is still blocking: counted in
    /// [`blocked`](Self::blocked) until the returned guard is dropped. Register it where
    /// a waker would look ([`wake_blocked`](Self::wake_blocked)) before accepting.
    pub(crate) fn blocking(&self) -> Option<BlockingAccept<'_>> {
        if self.blocking.nonblocking.load(Ordering::Acquire) {
            return None;
        }
        self.blocking.blocked.fetch_add(1, Ordering::SeqCst);
        Some(BlockingAccept(self))
    }

    /// Linux: how many threads are in (or about to enter) a blocking `accept4`.
    pub(crate) fn blocked(&self) -> usize {
        self.blocking.blocked.load(Ordering::SeqCst)
    }

    /// Linux: makes every blocking accept under way return (`Ok(None)`), by a kick: a
    /// connection from this process, from an address of its own that the accept
    /// recognises and drops. For a push onto the queue that a thread in `accept4` must
    /// see. Does nothing if no accept blocks. A kick left in the backlog (its accept took
    /// a client instead) is dropped by a later accept.
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
    pub(crate) fn shut_blocked(&self) {
        if self.blocked() > 0 {
            let _ = rustix::net::shutdown(self.fd(), rustix::net::Shutdown::Read);
        }
    }
}

/// A blocking accept under way, counted in [`Listener::blocked`] while it lives.
#[derive(Debug)]
pub(crate) struct BlockingAccept<'a>(&'a Listener);

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

impl Drop for BlockingAccept<'_> {
    fn drop(&mut self) {
        self.0.blocking.blocked.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) fn kick_address(name: &[u8], abstract_ns: bool) -> Option<Kick> {
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

#[cfg(test)]
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
