//! Windows: the lock file, locked with `LockFileEx` (through `fs4`) and freed by the OS
//! when its process dies. Such locks are mandatory: no other handle, not even one of the
//! same process, may read the locked range (`ERROR_LOCK_VIOLATION`), so the holder's pid
//! goes into `<app>.pid` beside it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use windows_sys::Win32::Storage::FileSystem::{
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
};

use super::FileId;

/// An exclusive lock on a file, released on drop (RAII, as `fd-lock`'s guards).
#[derive(Debug)]
pub(crate) struct LockFile {
    /// Holds the lock while open (read only for its identity).
    file: File,
    /// Where `<app>.pid` goes, beside it.
    path: PathBuf,
    /// In a directory shared with other users (the System scope).
    shared: bool,
    /// This holder wrote `<app>.pid`, and removes it when it lets the lock go.
    wrote_pid: bool,
}

/// Opens the lock file.
fn open(path: &Path, shared: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    // Never through a symbolic link or junction at the last step (it is refused below).
    opts.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    // No delete sharing: while this handle is open (the primary's whole life), nobody
    // can delete or rename the lock file from under it.
    opts.share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE);
    // A shared directory that another user owns is theirs to rearrange: there the lock
    // file is only opened, read-only (LockFileEx works on that), never created.
    if shared && !dir_is_trusted(path) {
        opts.write(false).create(false);
    }
    let file = match opts.open(path) {
        // A System-scope lock created by another user: LockFileEx works on a read-only
        // handle.
        Err(e) if shared && e.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
            .open(path)?,
        r => r?,
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.file_type().is_symlink() || super::link_count(&file)? != 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a plain lock file"));
    }
    Ok(file)
}

/// Whether the directory of `path` is this user's or the administrators'.
fn dir_is_trusted(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(Path::new("."));
    super::directory_owner(dir).map(|o| super::is_trusted_owner(&o)).unwrap_or(false)
}

impl LockFile {
    /// Takes the lock without blocking: `Ok(None)` when another process holds it. `shared`:
    /// in a directory shared with other users (the System scope).
    pub(crate) fn try_lock(path: &Path, shared: bool) -> io::Result<Option<LockFile>> {
        let file = open(path, shared).map_err(|e| crate::PathError::wrap("", path, e))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => return Ok(None),
            Err(fs4::TryLockError::Error(e)) => return Err(e),
        }
        Ok(Some(LockFile { file, path: path.to_path_buf(), shared, wrote_pid: false }))
    }

    /// Records the holder's pid, for `status` to report, in `<app>.pid` beside the lock;
    /// not in a shared directory, where another user could have put a file, or a link to
    /// one, under that name.
    pub(crate) fn write_pid(&mut self) {
        if !self.shared {
            self.wrote_pid = write_pid_file(&pid_path(&self.path), &std::process::id().to_string()).is_ok();
        }
    }

    /// Records `record` in place of the pid (a primary handing over: see
    /// `instance::handover`), kept when the lock is let go.
    pub(crate) fn hand_over(&mut self, record: &str) {
        if !self.shared && write_pid_file(&pid_path(&self.path), record).is_ok() {
            self.wrote_pid = false;
        }
    }

    /// Volume serial number and file index of the locked file.
    pub(crate) fn file_id(&self) -> io::Result<FileId> {
        super::handle_file_id(&self.file)
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // The recorded pid goes with the primacy (the lock is still held here, so no
        // successor has written its own yet). Only the holder that wrote it removes it.
        if self.wrote_pid {
            let _ = std::fs::remove_file(pid_path(&self.path));
        }
    }
}

/// Where the primary records its pid: `<app>.pid` beside the lock file.
fn pid_path(lock: &Path) -> PathBuf {
    lock.with_extension("pid")
}

/// Writes this process's pid into `path`, opened without following a reparse point and
/// only if it is a plain file with one name (or new): never through a hard link planted
/// under that name, which would truncate the file it names.
fn write_pid_file(path: &Path, record: &str) -> io::Result<()> {
    use std::io::Write;
    let mut file = open_plain(path, true)?;
    file.set_len(0)?;
    write!(file, "{record}")
}

/// Opens `path` (for writing, created if missing, with `write`; else for reading) without
/// following a reparse point, and only if it is a plain file with one name (a hard link
/// planted under the name is refused: `InvalidData`).
pub(super) fn open_plain(path: &Path, write: bool) -> io::Result<File> {
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
    if !meta.is_file() || meta.file_type().is_symlink() || super::link_count(&file)? != 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a plain file"));
    }
    Ok(file)
}

/// The pid the primary recorded beside its lock file `lock` (`<app>.pid`), if any. Read
/// only if it is a plain file, at most 32 bytes.
pub(crate) fn read_pid(lock: &Path) -> Option<u32> {
    read_record(lock)?.0.trim().parse().ok()
}

/// What the primary recorded beside its lock file `lock` (a pid, or a hand-over), and
/// when.
pub(crate) fn read_record(lock: &Path) -> Option<(String, SystemTime)> {
    let file = open_plain(&pid_path(lock), false).ok()?;
    super::super::record_of(file)
}

/// Whether no lock file can exist at `lock`: Linux's System scope only (a read-only
/// `/tmp`); Windows makes the directory if missing, so never.
pub(crate) fn lock_cannot_exist(_lock: &Path) -> bool {
    false
}

impl LockFile {
    /// What the held lock records (see [`read_record`]: the `<app>.pid` beside it).
    pub(crate) fn read_record(&self) -> Option<(String, SystemTime)> {
        read_record(&self.path)
    }
}
