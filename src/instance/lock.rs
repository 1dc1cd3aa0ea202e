//! The lock file that decides the primary: an exclusive `fs4` (flock / LockFileEx) lock,
//! held for the primary's life and freed by the OS when its process dies.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// An exclusive lock on a file, released on drop (RAII, as `fd-lock`'s guards).
#[derive(Debug)]
pub(crate) struct LockFile {
    file: File,
    path: PathBuf,
}

fn open(path: &Path, shared: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // std opens with O_CLOEXEC, so children never inherit (and keep) the lock.
        opts.mode(if shared { 0o644 } else { 0o600 });
    }
    match opts.open(path) {
        // A system-scope lock created by another user: flock works on a read-only handle.
        Err(e) if shared && e.kind() == io::ErrorKind::PermissionDenied => File::open(path),
        r => r,
    }
}

impl LockFile {
    /// Takes the lock without blocking: `Ok(None)` when another process holds it.
    pub(crate) fn try_lock(path: &Path, shared_dir: bool) -> io::Result<Option<LockFile>> {
        let file = open(path, shared_dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(LockFile { file, path: path.to_path_buf() })),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            Err(fs4::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Records the holder's pid in the file, for `status` to report.
    pub(crate) fn write_pid(&mut self) {
        let _ = self.file.set_len(0).and_then(|()| {
            self.file.rewind()?;
            write!(self.file, "{}", std::process::id())?;
            self.file.flush()
        });
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid a primary wrote into its lock file, if any.
pub(crate) fn read_pid(path: &Path) -> Option<u32> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}
