//! Unix: the removal watch. inotify on Linux (on the socket's directory, or on Linux's
//! System scope on its lock file), a kqueue on macOS (on the directory: written, never run
//! here); elsewhere none, and the caller looks at the files once a second instead.

use std::os::fd::OwnedFd;
use std::path::Path;
#[cfg(target_vendor = "apple")]
use std::time::Duration;

use super::FileId;

/// The watch on the socket's directory, or on Linux's System scope on its lock file:
/// inotify on Linux, a kqueue on macOS (never made elsewhere).
#[cfg_attr(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")), allow(dead_code))]
pub(crate) struct Watch {
    /// What poll(2) waits on: the inotify instance, or the kqueue.
    pub(crate) fd: OwnedFd,
    /// Linux: the watch descriptor on the directory (or the System scope's lock file).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    wd: Option<i32>,
    /// macOS: the directory, open for its events (declared after `fd`, so the kqueue is
    /// closed before the descriptor it watches).
    #[cfg(target_vendor = "apple")]
    #[allow(dead_code)] // held open, never read
    dir_fd: Option<OwnedFd>,
    /// The directory watched (a directory made again under the same name is another), or
    /// the lock file (the System scope on Linux).
    dir: Option<FileId>,
}

impl Watch {
    /// What the loop's poller waits on for the watch's events: the inotify instance, or
    /// the kqueue.
    pub(crate) fn source(&self) -> &super::WatchSource {
        &self.fd
    }
}

/// An inotify instance (no watch yet: see [`rewatch`]), or why there is none.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn new_watch() -> Result<Watch, String> {
    use rustix::fs::inotify::{self, CreateFlags};
    match inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC) {
        Ok(fd) => Ok(Watch { fd, wd: None, dir: None }),
        Err(e) => Err(format!("no inotify instance ({e}; see /proc/sys/fs/inotify/max_user_instances)")),
    }
}

/// A kqueue (no directory in it yet: see [`rewatch`]), or why there is none.
#[cfg(target_vendor = "apple")]
pub(crate) fn new_watch() -> Result<Watch, String> {
    match rustix::event::kqueue::kqueue() {
        Ok(fd) => Ok(Watch { fd, dir_fd: None, dir: None }),
        Err(e) => Err(format!("no kqueue ({e})")),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
pub(crate) fn new_watch() -> Result<Watch, String> {
    Err("no file watch on this platform".into())
}

/// Points the watch at the directory `dir` now names (`id`). Always asked of the kernel
/// again, never skipped for a (device, inode) pair seen before: a directory removed and
/// made again often gets the very inode number of the old one (ext4 hands a freed number
/// out again at once), yet it is another directory, with no watch on it; inotify gives it
/// a new watch descriptor, and the same one for the directory already watched.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn rewatch(w: &mut Watch, dir: &Path, id: FileId) -> Result<(), Option<String>> {
    use rustix::fs::inotify::WatchFlags;
    let flags = WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR;
    add_watch(w, dir, id, flags)
}

/// Puts `w`'s one inotify watch on `path` (`id`) for `flags`, dropping the watch it had
/// before, if that is another one. `Err(None)`: `path` is gone (removed again, a cleaner
/// striking twice, though the name may give a file with its very inode number by now),
/// not a lack of watches.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn add_watch(
    w: &mut Watch,
    path: &Path,
    id: FileId,
    flags: rustix::fs::inotify::WatchFlags,
) -> Result<(), Option<String>> {
    use rustix::fs::inotify;
    match inotify::add_watch(&w.fd, path, flags) {
        Ok(wd) => {
            if let Some(old) = w.wd.replace(wd).filter(|&old| old != wd) {
                // Gone already when the old directory was removed, or the old file freed
                // (IN_IGNORED).
                let _ = inotify::remove_watch(&w.fd, old);
            }
            w.dir = Some(id);
            Ok(())
        }
        Err(rustix::io::Errno::NOENT) => Err(None),
        Err(e) => Err(Some(format!(
            "no inotify watch on {} ({e}; see /proc/sys/fs/inotify/max_user_watches)",
            path.display()
        ))),
    }
}

/// Points the watch at the directory `dir` now names (`id`), if it is not on it already:
/// a fresh kqueue with the directory open in it (`EVFILT_VNODE`: an entry added or
/// removed, the directory removed or renamed). Unproven: written for macOS, never run.
#[cfg(target_vendor = "apple")]
pub(crate) fn rewatch(w: &mut Watch, dir: &Path, id: FileId) -> Result<(), Option<String>> {
    use rustix::event::kqueue::{kevent, kqueue, Event, EventFilter, EventFlags, VnodeEvents};
    use rustix::fs::{open, Mode, OFlags};
    use std::os::fd::AsRawFd;
    if w.dir == Some(id) {
        return Ok(());
    }
    let fail = |what: &str, e: rustix::io::Errno| {
        (e != rustix::io::Errno::NOENT).then(|| format!("no kqueue watch on {} ({what}: {e})", dir.display()))
    };
    let kq = kqueue().map_err(|e| fail("kqueue", e))?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir_fd = open(dir, flags, Mode::empty()).map_err(|e| fail("open", e))?;
    let vnode = VnodeEvents::WRITE | VnodeEvents::DELETE | VnodeEvents::RENAME | VnodeEvents::REVOKE;
    let change = Event::new(
        EventFilter::Vnode { vnode: dir_fd.as_raw_fd(), flags: vnode },
        EventFlags::ADD | EventFlags::CLEAR,
        std::ptr::null_mut(),
    );
    let mut none: [Event; 0] = [];
    // SAFETY: `dir_fd` goes into the same `Watch` as `kq` and is dropped after it (field
    // order), so it stays valid for the kqueue's lifetime, as kevent requires.
    unsafe { kevent(&kq, &[change], &mut none, Some(Duration::ZERO)) }.map_err(|e| fail("kevent", e))?;
    // The old kqueue goes before its directory (field order).
    *w = Watch { fd: kq, dir_fd: Some(dir_fd), dir: Some(id) };
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
pub(crate) fn rewatch(_w: &mut Watch, _dir: &Path, _id: FileId) -> Result<(), Option<String>> {
    Err(Some("no file watch on this platform".into()))
}

/// Points the watch at the lock file `lock` now names (`id`, the locked one): its link
/// count dropping (`IN_ATTRIB`: removed, or replaced by a rename), or the file renamed
/// away or gone. (`IN_DELETE_SELF` alone would never come: this process holds it open.)
/// The watch on a file locked before, if any, goes.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn rewatch_file(w: &mut Watch, lock: &Path, id: FileId) -> Result<(), Option<String>> {
    use rustix::fs::inotify::WatchFlags;
    let flags =
        WatchFlags::ATTRIB | WatchFlags::MOVE_SELF | WatchFlags::DELETE_SELF | WatchFlags::DONT_FOLLOW;
    add_watch(w, lock, id, flags)
}

/// Only Linux's System scope watches its lock file (an abstract name).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn rewatch_file(_w: &mut Watch, _lock: &Path, _id: FileId) -> Result<(), Option<String>> {
    Err(Some("no file watch on this platform".into()))
}

/// Reads the pending inotify events: whether one concerns the primary (its socket or
/// lock file, or the directory itself, removed or moved; or events lost).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn concerns_us(w: &Watch, socket: &Path, lock: &Path) -> bool {
    use rustix::fs::inotify::{ReadFlags, Reader};
    use std::os::unix::ffi::OsStrExt;
    let name = |p: &Path| p.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
    let (socket, lock) = (name(socket), name(lock));
    let mut ours = false;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut events = Reader::new(&w.fd, &mut buf);
    // Until the queue is empty (EAGAIN) or fails.
    while let Ok(event) = events.next() {
        let named = event.file_name().is_some_and(|n| n.to_bytes() == socket || n.to_bytes() == lock);
        // An overflowed queue lost events: look at the files themselves. (`ATTRIB` comes
        // only from a watch on the lock file itself: its link count dropped.)
        let itself = ReadFlags::DELETE_SELF
            | ReadFlags::MOVE_SELF
            | ReadFlags::ATTRIB
            | ReadFlags::IGNORED
            | ReadFlags::QUEUE_OVERFLOW;
        ours |= named || event.events().intersects(itself);
    }
    ours
}

/// Reads the pending kqueue events: whether there was any (a kqueue names no entry, so
/// any change in the directory counts; the files are then looked at, a few stats).
#[cfg(target_vendor = "apple")]
pub(crate) fn concerns_us(w: &Watch, _socket: &Path, _lock: &Path) -> bool {
    use rustix::event::kqueue::kevent;
    let mut ours = false;
    loop {
        let mut events = Vec::with_capacity(8);
        // SAFETY: no change is registered by this call.
        match unsafe { kevent(&w.fd, &[], rustix::buffer::spare_capacity(&mut events), Some(Duration::ZERO)) }
        {
            Ok(n) if n > 0 => ours = true,
            _ => return ours,
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
pub(crate) fn concerns_us(_w: &Watch, _socket: &Path, _lock: &Path) -> bool {
    false
}

/// Whether a directory can be watched here: inotify (Linux), a kqueue (macOS).
pub(crate) const WATCHES_DIRECTORIES: bool =
    cfg!(any(target_os = "linux", target_os = "android", target_vendor = "apple"));

/// Whether a file can be watched itself (inotify: Linux), as the System scope's lock file is.
pub(crate) const WATCHES_FILES: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Whether `e` is the system's lack of descriptors or memory (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`): a moment's trouble, not a reason to step down.
pub(crate) fn is_out_of_resources(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM))
}
