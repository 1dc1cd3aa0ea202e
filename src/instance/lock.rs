//! The lock file that decides the primary: an exclusive lock (`flock` through rustix on
//! Unix, `LockFileEx` through `fs4` on Windows), held for the primary's life and freed by
//! the OS when its process dies.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
#[cfg(not(any(unix, windows)))]
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// An exclusive lock on a file, released on drop (RAII, as `fd-lock`'s guards).
#[derive(Debug)]
pub(crate) struct LockFile {
    /// Linux: children forked without exec get no copy of the lock's open file
    /// description (see `sys::ForkGuard`), so one that outlives a killed primary does not
    /// keep the lock. Declared first: dropped before `file` is closed.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    _fork_guard: Option<crate::sys::ForkGuard>,
    /// Holds the lock while open (on Windows it is never read or written again).
    #[cfg_attr(windows, allow(dead_code))]
    file: File,
    /// Windows: where `<app>.pid` goes, beside it.
    #[cfg_attr(not(windows), allow(dead_code))]
    path: PathBuf,
    /// In a directory shared with other users (the System scope).
    #[cfg_attr(not(windows), allow(dead_code))]
    shared: bool,
    /// Windows: this holder wrote `<app>.pid`, and removes it when it lets the lock go.
    #[cfg_attr(not(windows), allow(dead_code))]
    wrote_pid: bool,
    /// The file is this user's (Unix), so the pid may be written into it.
    #[cfg_attr(windows, allow(dead_code))]
    own: bool,
    /// The process that took the lock: only it lets the lock go (a child forked without
    /// exec shares it, and its copy's drop must leave the parent's lock alone).
    #[cfg_attr(windows, allow(dead_code))]
    pid: u32,
}

/// How the crate opens any file in a directory another user may control: never through a
/// symlink, and never blocking in open(2) (a FIFO, a device).
#[cfg(unix)]
const NO_BLOCK_NO_FOLLOW: i32 =
    rustix::fs::OFlags::NOFOLLOW.union(rustix::fs::OFlags::NONBLOCK).bits() as i32;

/// Opens the lock file; also whether it is this user's (Unix; always on Windows).
fn open(path: &Path, shared: bool) -> io::Result<(File, bool)> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // std opens with O_CLOEXEC, so children never inherit (and keep) the lock; and no
        // symlink is followed, so a shared directory's owner cannot aim us at a file.
        // O_NONBLOCK: a FIFO planted as the lock file would block open(2) for ever; it is
        // refused below as not a plain file (on a plain file the flag changes nothing).
        opts.mode(if shared { 0o644 } else { 0o600 }).custom_flags(NO_BLOCK_NO_FOLLOW);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        use windows_sys::Win32::Storage::FileSystem::{FILE_SHARE_READ, FILE_SHARE_WRITE};
        // Never through a symbolic link or junction at the last step (it is refused below).
        opts.custom_flags(windows_sys::Win32::Storage::FileSystem::FILE_FLAG_OPEN_REPARSE_POINT);
        // No delete sharing: while this handle is open (the primary's whole life), nobody
        // can delete or rename the lock file from under it.
        opts.share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE);
        // A shared directory that another user owns is theirs to rearrange: there the lock
        // file is only opened, read-only (LockFileEx works on that), never created.
        if shared && !dir_is_trusted(path) {
            opts.write(false).create(false);
        }
    }
    let file = match opts.open(path) {
        // A system-scope lock created by another user, or on a file system this process
        // sees read-only (`ProtectSystem=strict`, a sandbox binding `/` read-only): flock
        // works on a read-only handle.
        Err(e) if shared && (e.kind() == io::ErrorKind::PermissionDenied || is_read_only_fs(&e)) => {
            let mut ro = OpenOptions::new();
            ro.read(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::custom_flags(&mut ro, NO_BLOCK_NO_FOLLOW);
            #[cfg(windows)]
            {
                use windows_sys::Win32::Storage::FileSystem::{FILE_SHARE_READ, FILE_SHARE_WRITE};
                std::os::windows::fs::OpenOptionsExt::custom_flags(
                    &mut ro,
                    windows_sys::Win32::Storage::FileSystem::FILE_FLAG_OPEN_REPARSE_POINT,
                );
                std::os::windows::fs::OpenOptionsExt::share_mode(&mut ro, FILE_SHARE_READ | FILE_SHARE_WRITE);
            }
            ro.open(path)?
        }
        r => r?,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = file.metadata()?;
        // No name left: removed between the open and now (a cleaner): gone, as if the
        // open had found nothing, so that the caller may look again.
        if meta.is_file() && meta.nlink() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the lock file was removed as it was opened",
            ));
        }
        if !meta.is_file() || meta.nlink() != 1 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a plain lock file"));
        }
        let own = meta.uid() == crate::sys::euid();
        // XDG: files in $XDG_RUNTIME_DIR with the sticky bit set are not cleaned up. A
        // shared lock is readable by all (whatever the umask), so that every user can lock it.
        let perm = if shared { 0o644 } else { meta.mode() & 0o777 };
        let want = if cfg!(target_os = "linux") { perm | 0o1000 } else { perm };
        if own && meta.mode() & 0o7777 != want {
            let _ = file.set_permissions(std::fs::Permissions::from_mode(want));
        }
        Ok((file, own))
    }
    #[cfg(windows)]
    {
        let meta = file.metadata()?;
        if !meta.is_file() || meta.file_type().is_symlink() || crate::sys::link_count(&file)? != 1 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a plain lock file"));
        }
        Ok((file, true))
    }
}

/// Whether `e` is EROFS: the file system is mounted read-only (for this process).
fn is_read_only_fs(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Windows: whether the directory of `path` is this user's or the administrators'.
#[cfg(windows)]
fn dir_is_trusted(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::sys::directory_owner(dir).map(|o| crate::sys::is_trusted_owner(&o)).unwrap_or(false)
}

impl LockFile {
    /// Takes the lock without blocking: `Ok(None)` when another process holds it.
    pub(crate) fn try_lock(path: &Path, shared_dir: bool) -> io::Result<Option<LockFile>> {
        let (file, own) = open(path, shared_dir).map_err(|e| crate::PathError::wrap("", path, e))?;
        // Unix: flock(2), through rustix (which fs4 would call the same way).
        #[cfg(unix)]
        let locked = match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => true,
            Err(rustix::io::Errno::WOULDBLOCK) => false,
            Err(e) => return Err(e.into()),
        };
        // Windows: LockFileEx.
        #[cfg(not(unix))]
        let locked = match fs4::FileExt::try_lock(&file) {
            Ok(()) => true,
            Err(fs4::TryLockError::WouldBlock) => false,
            Err(fs4::TryLockError::Error(e)) => return Err(e),
        };
        if !locked {
            return Ok(None);
        }
        Ok(Some(LockFile {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            _fork_guard: crate::sys::ForkGuard::new(std::os::fd::AsFd::as_fd(&file)),
            file,
            path: path.to_path_buf(),
            shared: shared_dir,
            wrote_pid: false,
            own,
            pid: std::process::id(),
        }))
    }

    /// Records the holder's pid, for `status` to report: in the lock file, or on Windows
    /// beside it (see [`pid_path`]).
    pub(crate) fn write_pid(&mut self) {
        self.write_record(&std::process::id().to_string());
    }

    /// Records that the primacy goes to the process `pid` (a replace), for launches that
    /// find the lock free before it took it (`read_handover`): kept when the lock is let
    /// go, and overwritten by that process's own pid.
    pub(crate) fn write_handover(&mut self, pid: u32) {
        self.write_record(&format!("{pid} {HANDOVER}"));
        #[cfg(windows)]
        {
            self.wrote_pid = false;
        }
    }

    fn write_record(&mut self, record: &str) {
        #[cfg(windows)]
        {
            // Not in a shared directory: another user could have put a file, or a link to
            // one, under that name.
            if !self.shared {
                self.wrote_pid = write_pid_file(&pid_path(&self.path), record).is_ok();
            }
        }
        #[cfg(not(windows))]
        self.write_pid_into_lock_file(record);
    }

    #[cfg(not(windows))]
    fn write_pid_into_lock_file(&mut self, pid: &str) {
        // Only into our own file (a shared scope's lock may be another user's): `open`
        // checked the owner already.
        if !self.own {
            return;
        }
        // One write at the start and a truncation to its length (no rewind, no second
        // metadata read).
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            let _ =
                self.file.write_all_at(pid.as_bytes(), 0).and_then(|()| self.file.set_len(pid.len() as u64));
        }
        #[cfg(not(unix))]
        let _ = self.file.set_len(0).and_then(|()| {
            self.file.rewind()?;
            write!(self.file, "{pid}")?;
            self.file.flush()
        });
    }

    /// Device and inode of the locked file, to tell whether the file at the path is still
    /// it (a cleaner may have removed it, and a launch locked a new one).
    #[cfg(unix)]
    pub(crate) fn file_id(&self) -> io::Result<crate::sys::FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = self.file.metadata()?;
        Ok((meta.dev(), meta.ino()))
    }
}

/// Windows: where the primary records its pid. `LockFileEx` locks are mandatory there: no
/// other handle, not even one of the same process, may read the locked range of the lock
/// file itself (`ERROR_LOCK_VIOLATION`), so the pid lives in `<app>.pid` beside it.
#[cfg(windows)]
fn pid_path(lock: &Path) -> PathBuf {
    lock.with_extension("pid")
}

/// Writes this process's pid into `path`, opened without following a reparse point and
/// only if it is a plain file with one name (or new): never through a hard link planted
/// under that name, which would truncate the file it names.
#[cfg(windows)]
fn write_pid_file(path: &Path, record: &str) -> io::Result<()> {
    use std::io::Write;
    let mut file = open_plain(path, true)?;
    file.set_len(0)?;
    write!(file, "{record}")
}

/// Opens `path` (for writing, created if missing, with `write`; else for reading) without
/// following a reparse point, and only if it is a plain file with
/// one name (a hard link planted under the name is refused: `InvalidData`).
#[cfg(windows)]
pub(super) fn open_plain(path: &Path, write: bool) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::FILE_SHARE_DELETE;
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_FLAG_OPEN_REPARSE_POINT, FILE_SHARE_READ, FILE_SHARE_WRITE,
    };
    let mut opts = OpenOptions::new();
    opts.read(!write).write(write).create(write).truncate(false);
    // A reader lets the file be replaced or removed under it (a primary publishing or
    // withdrawing); a writer does not.
    let share = if write {
        FILE_SHARE_READ | FILE_SHARE_WRITE
    } else {
        FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
    };
    let file = opts.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT).share_mode(share).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.file_type().is_symlink() || crate::sys::link_count(&file)? != 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a plain file"));
    }
    Ok(file)
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // The recorded pid goes with the primacy (the lock is still held here, so no
        // successor has written its own yet). Only the holder that wrote it removes it.
        #[cfg(windows)]
        if self.wrote_pid {
            let _ = std::fs::remove_file(pid_path(&self.path));
        }
        // A flock belongs to the open file description, which a child forked without exec
        // shares (close-on-exec acts only at exec): closing our descriptor would leave the
        // lock held for as long as the child lives. Unlocking frees it for every holder.
        #[cfg(unix)]
        if self.pid == std::process::id() {
            let _ = rustix::fs::flock(&self.file, rustix::fs::FlockOperation::Unlock);
        }
    }
}

/// The pid the primary recorded (`lock` is its lock file; on Windows the file beside it),
/// if any. Opened as the lock is (no symlink, no blocking open) and read only if it is a
/// plain file, at most 32 bytes.
pub(crate) fn read_pid(lock: &Path) -> Option<u32> {
    read_record(lock)?.0.trim().parse().ok()
}

/// The word after the pid in a record of [`LockFile::write_handover`].
const HANDOVER: &str = "handover";

/// The process a primary handed over to ([`LockFile::write_handover`]), if the record
/// says so and was written within `grace`: until that process has locked and written its
/// own pid. (A record left by a process that died before it took the lock expires, so a
/// reused pid cannot keep launches waiting.)
pub(crate) fn read_handover(lock: &Path, grace: std::time::Duration) -> Option<u32> {
    let (record, written) = read_record(lock)?;
    let age = written.elapsed().unwrap_or_default();
    if age > grace {
        return None;
    }
    record.trim().strip_suffix(HANDOVER)?.trim().parse().ok()
}

/// The primary's record (its pid), as [`read_pid`] reads it, and when it was written.
fn read_record(lock: &Path) -> Option<(String, std::time::SystemTime)> {
    #[cfg(windows)]
    let path = pid_path(lock);
    #[cfg(not(windows))]
    let path = lock;
    #[cfg(windows)]
    let file = open_plain(&path, false).ok()?;
    #[cfg(not(windows))]
    let file = {
        let mut opts = OpenOptions::new();
        opts.read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, NO_BLOCK_NO_FOLLOW);
        opts.open(path).ok()?
    };
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut s = String::new();
    file.take(32).read_to_string(&mut s).ok()?;
    Some((s, meta.modified().ok()?))
}
