//! Putting a listener's socket file in place: its identity, a private directory beside
//! it to bind in, moving it into place without replacing anything, and (Linux) binding
//! at its path with the mode set on the socket first.

use super::*;

pub(super) fn file_id(path: &Path) -> io::Result<FileId> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Moves `from` to `to` unless `to` exists (then `EEXIST`): never replaces a live socket.
pub(super) fn move_no_replace(from: &Path, to: &Path) -> io::Result<()> {
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
pub(super) fn private_dir(target: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let seed = super::super::forks::own_pid() as u64;
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
pub(super) fn bind_with_mode(fd: BorrowedFd<'_>, path: &Path, mode: u32, backlog: i32) -> io::Result<FileId> {
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
