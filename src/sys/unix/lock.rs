//! Unix: the lock file, locked with `flock` (through rustix) and freed by the OS when its
//! process dies; the holder's pid is written into it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use super::{FileId, ForkGuard};

/// An exclusive lock on a file, released on drop (RAII, as `fd-lock`'s guards).
#[derive(Debug)]
pub(crate) struct LockFile {
    /// Children forked without exec get no copy of the lock's open file description (see
    /// [`ForkGuard`]; Linux), so one that outlives a killed primary does not keep the lock.
    /// Declared first: dropped before `file` is closed.
    _fork_guard: Option<ForkGuard>,
    /// Holds the lock while open.
    file: File,
    /// The file is this user's, so the pid may be written into it.
    own: bool,
    /// The file's length (when opened, then as written): past what a write covers, the
    /// rest is cut off.
    len: u64,
    /// The process that took the lock: only it lets the lock go (a child forked without
    /// exec shares it, and its copy's drop must leave the parent's lock alone).
    pid: u32,
    /// The fork generation before the file was opened: while it stands, no other process
    /// holds the open file description, and closing it frees the lock.
    generation: u64,
}

/// How the crate opens any file in a directory another user may control: never through a
/// symlink, and never blocking in open(2) (a FIFO, a device).
const NO_BLOCK_NO_FOLLOW: i32 =
    rustix::fs::OFlags::NOFOLLOW.union(rustix::fs::OFlags::NONBLOCK).bits() as i32;

/// What the pid is written as: left-aligned in 10 columns (any `u32`) and a newline, so
/// that it covers a shorter pid written before it without a truncation.
const PID_LEN: usize = 11;

/// Opens the lock file; also whether it is this user's, and its length.
fn open(path: &Path, shared: bool) -> io::Result<(File, bool, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    // std opens with O_CLOEXEC, so children never inherit (and keep) the lock; and no
    // symlink is followed, so a shared directory's owner cannot aim us at a file.
    // O_NONBLOCK: a FIFO planted as the lock file would block open(2) for ever; it is
    // refused below as not a plain file (on a plain file the flag changes nothing).
    // Made with its sticky bit (Linux, see below) where the umask leaves it the mode.
    let sticky = if cfg!(target_os = "linux") { 0o1000 } else { 0 };
    opts.mode(sticky | if shared { 0o644 } else { 0o600 }).custom_flags(NO_BLOCK_NO_FOLLOW);
    let file = match opts.open(path) {
        // A System-scope lock created by another user, or on a file system this process
        // sees read-only (`ProtectSystem=strict`, a sandbox binding `/` read-only): flock
        // works on a read-only handle.
        Err(e) if shared && (e.kind() == io::ErrorKind::PermissionDenied || is_read_only_fs(&e)) => {
            OpenOptions::new().read(true).custom_flags(NO_BLOCK_NO_FOLLOW).open(path)?
        }
        r => r?,
    };
    let meta = file.metadata()?;
    // No name left: removed between the open and the check (a cleaner): gone, as if the
    // open had found nothing, so that the caller may look again.
    if meta.is_file() && meta.nlink() == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, "the lock file was removed as it was opened"));
    }
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a plain lock file"));
    }
    let own = meta.uid() == super::euid();
    // XDG: files in $XDG_RUNTIME_DIR with the sticky bit set are not cleaned up. A
    // shared lock is readable by all (whatever the umask), so that every user can lock it.
    let perm = if shared { 0o644 } else { meta.mode() & 0o777 };
    let want = perm | sticky;
    if own && meta.mode() & 0o7777 != want {
        let _ = rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(want as rustix::fs::RawMode));
    }
    Ok((file, own, meta.len()))
}

/// Whether `e` is EROFS: the file system is mounted read-only (for this process).
fn is_read_only_fs(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error())
}

impl LockFile {
    /// Takes the lock without blocking: `Ok(None)` when another process holds it. `shared`:
    /// in a directory shared with other users (the System scope).
    pub(crate) fn try_lock(path: &Path, shared: bool) -> io::Result<Option<LockFile>> {
        let generation = super::forks::generation();
        let (file, own, len) = open(path, shared).map_err(|e| crate::PathError::wrap("", path, e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        Ok(Some(LockFile {
            _fork_guard: ForkGuard::new(std::os::fd::AsFd::as_fd(&file)),
            file,
            own,
            len,
            pid: super::forks::own_pid(),
            generation,
        }))
    }

    /// Records the holder's pid, for `status` to report: in the lock file, and only if it
    /// is this user's (a shared scope's lock may be another user's).
    pub(crate) fn write_pid(&mut self) {
        // Padded to a fixed length: it covers whatever pid a primary wrote before.
        let pid = format!("{:<10}\n", super::forks::own_pid());
        debug_assert_eq!(pid.len(), PID_LEN);
        self.write_record(&pid);
    }

    /// Records `record` in place of the pid (a primary handing over: see
    /// `instance::handover`), kept when the lock is let go.
    pub(crate) fn hand_over(&mut self, record: &str) {
        self.write_record(record);
    }

    /// One write at the start; the file is cut to it only when it was longer (its length
    /// is known from the open's fstat, and from the writes since).
    fn write_record(&mut self, record: &str) {
        if !self.own {
            return;
        }
        // One short write into a regular file: never short.
        if rustix::io::pwrite(&self.file, record.as_bytes(), 0).is_err() {
            return;
        }
        let len = record.len() as u64;
        if self.len > len {
            let _ = rustix::fs::ftruncate(&self.file, len);
        }
        self.len = len;
    }

    /// Device and inode of the locked file, to tell whether the file at the path is still
    /// it (a cleaner may have removed it, and a launch locked a new one).
    pub(crate) fn file_id(&self) -> io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = self.file.metadata()?;
        Ok((meta.dev(), meta.ino()))
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // A flock belongs to the open file description, which a child forked without exec
        // shares (close-on-exec acts only at exec): closing our descriptor would leave the
        // lock held for as long as the child lives. Unlocking frees it for every holder.
        // With no fork since the file was opened, closing it (below) frees the lock.
        if self.pid == super::forks::own_pid() && super::forks::forked_since(self.generation) {
            let _ = rustix::fs::flock(&self.file, rustix::fs::FlockOperation::Unlock);
        }
    }
}

/// The pid the primary recorded in its lock file `lock`, if any. Opened as the lock is (no
/// symlink, no blocking open) and read only if it is a plain file, at most 32 bytes.
pub(crate) fn read_pid(lock: &Path) -> Option<u32> {
    read_record(lock)?.0.trim().parse().ok()
}

/// What the primary recorded in its lock file `lock` (a pid, or a hand-over), and when.
pub(crate) fn read_record(lock: &Path) -> Option<(String, SystemTime)> {
    let file = OpenOptions::new().read(true).custom_flags(NO_BLOCK_NO_FOLLOW).open(lock).ok()?;
    super::super::record_of(file)
}

/// Whether the lock file `lock` is missing and its directory read-only for this process
/// (EROFS), so that no lock file can exist there (Linux: the System scope's, in `/tmp`,
/// under systemd's `ProtectSystem=strict`). Elsewhere the directory is made if missing.
pub(crate) fn lock_cannot_exist(lock: &Path) -> bool {
    if cfg!(not(any(target_os = "linux", target_os = "android"))) {
        return false;
    }
    let missing = matches!(std::fs::symlink_metadata(lock), Err(e) if e.kind() == io::ErrorKind::NotFound);
    let dir = lock.parent().unwrap_or(Path::new("/"));
    missing && rustix::fs::access(dir, rustix::fs::Access::WRITE_OK) == Err(rustix::io::Errno::ROFS)
}

impl LockFile {
    /// What the held lock file records (see [`read_record`]), read through the descriptor
    /// that holds the lock: one `pread` and one `fstat`, no open.
    pub(crate) fn read_record(&self) -> Option<(String, SystemTime)> {
        use std::os::unix::fs::FileExt;
        let meta = self.file.metadata().ok()?;
        let mut buf = [0u8; 32];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        Some((String::from_utf8_lossy(&buf[..n]).into_owned(), meta.modified().ok()?))
    }
}
