//! Unix: where a single-instance app's files live. The socket's name (a path that fits
//! `sun_path`, else one in a private fallback directory), the user's directory (the
//! runtime directory, else a private one in the cache directory, else under the temp
//! dir), the System scope's base (`/tmp`), and Linux's abstract System-scope name.

use std::io;
use std::path::{Path, PathBuf};

use crate::name::{short_hash, short_hash_bytes, MADE_UP};
use crate::Error;

use super::dir::ensure_dir;

#[cfg(test)]
mod tests;

/// The abstract socket names of the System scope (Linux): `solo-instance-system/<app_id>`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const SYSTEM_ABSTRACT_PREFIX: &str = "solo-instance-system/";

/// The System scope's lock file and abstract socket name, where the System scope has no
/// directory (Linux; `None` elsewhere).
///
/// A shared directory is one that some user owns (and may clean) or where one user's
/// stale socket cannot be removed by the next. An abstract socket is shared by every user
/// and vanishes with its process. An abstract name is per network namespace, though: a
/// container, `unshare -n` or systemd's `PrivateNetwork=` would each get a primary of
/// their own. So a lock file decides across them, where they share `/tmp`:
/// `/tmp/solo-instance-system@<name>.lock`, right in `/tmp` (root's, sticky), so that only
/// its creator may remove it, and every user can open it (0644, read-only for the others)
/// and `flock` it. The lock frees with its process as the name does: a dead primary
/// blocks nobody.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn system_abstract(app_id: &str) -> Option<(PathBuf, PathBuf)> {
    let mut name = app_id.to_owned();
    if SYSTEM_ABSTRACT_PREFIX.len() + name.len() > crate::MAX_SOCKET_PATH {
        name = format!("{MADE_UP}{}", short_hash(app_id));
    }
    let lock = system_base().join(format!("solo-instance-system{MADE_UP}{name}.lock"));
    Some((lock, PathBuf::from(format!("{SYSTEM_ABSTRACT_PREFIX}{name}"))))
}

/// The System scope's lock file and abstract socket name: Linux only; elsewhere the
/// System scope has a directory.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn system_abstract(_app_id: &str) -> Option<(PathBuf, PathBuf)> {
    None
}

/// The login session's id, for the Session scope: `$XDG_SESSION_ID` when it is made of
/// letters, digits, `_` and `-`; `None` without one (then Session is User).
pub(crate) fn login_session() -> Option<String> {
    std::env::var("XDG_SESSION_ID")
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

/// What binding adds to the socket's directory: the private directory `/.XXXXXX` and the
/// socket `/s` in it (see `sys::unix::listener`). That path must fit `sun_path` too.
const BIND_EXTRA: usize = "/.XXXXXX/s".len();

/// Whether `path` can be a socket: it fits `sun_path`, and so does the temporary path it is
/// bound at first; and it is UTF-8 (the socket API takes names as strings, as Qt's QString).
pub(super) fn fits(path: &Path) -> bool {
    // The directory's length: up to the last `/` (the root's own `/` kept), as `parent`
    // gives it for the paths made here, without walking the components.
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let dir_len = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i.max(1));
    path.as_os_str().len() <= crate::MAX_SOCKET_PATH
        && dir_len + BIND_EXTRA <= crate::MAX_SOCKET_PATH
        && path.to_str().is_some()
}

/// The name launches connect to, for the lock `<stem>.lock` in `base`: the socket beside
/// the lock, `<stem>.sock`, else `@<hash of stem>.sock`. When neither
/// fits, the scope's own directory under the temp dir (per user and private for `User` and
/// `Session`: never a name another user could take first) holds `<hash of dir and
/// stem>.sock` (`@dir-<hash>.sock`); when not even that fits, a clear error.
pub(crate) fn server_name(base: &Path, stem: &str, system: bool) -> Result<PathBuf, Error> {
    let (short, fit) = socket_name(base, stem);
    if fit {
        return Ok(short);
    }
    let fallback = fallback_dir(system, base)?;
    let path = fallback.join(format!("{}.sock", fallback_stem(base, stem)));
    if !fits(&path) {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "no socket path fits the {}-byte limit of sun_path: neither in {} nor in {}; \
                 use a shorter directory (or TMPDIR)",
                crate::MAX_SOCKET_PATH,
                base.display(),
                fallback.display()
            ),
        )));
    }
    ensure_dir(&fallback, system)?;
    Ok(path)
}

/// The directory for sockets whose own directory is too long: the shared system one, or
/// one private to the user, `$TMPDIR/solo-instance-<uid>@<secret>`. The secret (random,
/// kept in `base`, which is private) is what stops another user from creating that
/// directory first: a name anyone can work out (`solo-instance-<uid>`) can be taken by
/// anyone, and its owner refused, locking the user out. Launches that share `base` share
/// the secret, so they meet.
///
/// The name is secret only until first used, though: the temp dir's listing shows it, and
/// `/proc/net/unix` too while a socket is bound there. Once the directory is gone (a temp
/// cleaner; a reboot, where `base` is a persistent cache directory), another user who saw
/// the name may create it first. Such a secret is burnt: the next one is kept in
/// `base/@fallback-<burnt secret>`, made by the first launch that finds the name taken,
/// so that every launch sharing `base` walks the same chain to the same directory.
pub(super) fn fallback_dir(system: bool, base: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::MetadataExt;
    if system {
        return Ok(system_base().join("solo-instance-system"));
    }
    let uid = super::euid();
    let mut file = format!("{MADE_UP}fallback");
    // Each burnt secret took another user a removal of this user's directory to learn.
    for _ in 0..16 {
        let secret = fallback_secret(&base.join(&file))?;
        let dir = crate::default_socket_dir().join(format!("solo-instance-{uid}{MADE_UP}{secret}"));
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if !m.is_dir() || m.uid() != uid => file = format!("{MADE_UP}fallback-{secret}"),
            _ => return Ok(dir),
        }
    }
    Err(Error::Insecure(
        format!("the fallback directories named in {} keep being taken by other users", base.display())
            .into(),
    ))
}

/// A secret of [`fallback_dir`]: 16 hex digits in `path` (`base/@fallback`, beside the
/// lock files, sticky as they are), made by the first launch that needs them. Written to a
/// file of its own first and linked into place, so a launch never reads half of one, and
/// two launches that race agree on the first.
fn fallback_secret(path: &Path) -> Result<String, Error> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let base = path.parent().unwrap_or(Path::new("."));
    let path = path.to_path_buf();
    let flags = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32;
    let wrap = |what: &'static str, p: &Path, e: io::Error| Error::Io(crate::PathError::wrap(what, p, e));
    // A second round only follows another launch's link, which stays (the directory is
    // this user's): a few rounds are plenty.
    for _ in 0..4 {
        match std::fs::OpenOptions::new().read(true).custom_flags(flags).open(&path) {
            Ok(file) => {
                let mut text = String::new();
                if !file.metadata().map_err(|e| wrap("", &path, e))?.is_file() {
                    return Err(Error::Insecure(format!("{} is not a plain file", path.display()).into()));
                }
                file.take(64).read_to_string(&mut text).map_err(|e| wrap("cannot read", &path, e))?;
                let text = text.trim();
                if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Error::Io(crate::PathError::wrap(
                        "",
                        &path,
                        io::Error::new(io::ErrorKind::InvalidData, "not 16 hex digits; remove it"),
                    )));
                }
                return Ok(text.to_owned());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(wrap("", &path, e)),
        }
        let secret = random_hex();
        let tmp = base.join(format!("{MADE_UP}fallback.{}.{secret}", super::forks::own_pid()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(flags)
            .open(&tmp)
            .map_err(|e| wrap("cannot create", &tmp, e))?;
        // XDG: files in $XDG_RUNTIME_DIR with the sticky bit set are not cleaned up (a new
        // secret would lose the way to a running primary's socket), as for the lock files.
        #[cfg(target_os = "linux")]
        {
            let _ = rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(0o1600));
        }
        let written = file.write_all(secret.as_bytes()).map_err(|e| wrap("cannot write", &tmp, e));
        let linked = written.and_then(|()| match rustix::fs::link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(wrap("cannot create", &path, e.into())),
        });
        let _ = std::fs::remove_file(&tmp);
        if linked? {
            return Ok(secret);
        }
        // Another launch linked its own first: read that one.
    }
    Err(wrap("cannot create", &path, io::Error::other("it keeps vanishing")))
}

/// 16 hex digits no other user can guess: std's hasher keys come from the OS's random
/// source.
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// A name per directory and app id, hashed byte for byte so no two directories share one.
fn fallback_stem(base: &Path, stem: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    format!("{MADE_UP}dir-{}", short_hash_bytes(base.join(stem).as_os_str().as_bytes()))
}

/// `<stem>.sock` in `base`, or `@<hash>.sock` when that is too long (the caller checks it).
/// `<stem>.sock` in `base` if it fits, else `@<hash of stem>.sock`; and whether that fits.
fn socket_name(base: &Path, stem: &str) -> (PathBuf, bool) {
    let mut name = String::with_capacity(stem.len() + 5);
    name.push_str(stem);
    name.push_str(".sock");
    let path = crate::name::file_in(base, &name);
    if fits(&path) {
        return (path, true);
    }
    let path = base.join(format!("{MADE_UP}{}.sock", short_hash(stem)));
    let fit = fits(&path);
    (path, fit)
}
/// The System scope's base: `/tmp`, a fixed path ($TMPDIR is per user on macOS, and with
/// pam_tmpdir).
pub(crate) fn system_base() -> PathBuf {
    PathBuf::from("/tmp")
}

/// The User and Session scopes' directory (made private if missing, by the caller).
pub(crate) fn user_dir() -> Result<PathBuf, Error> {
    // Read here, not through `directories`, which ignores it when it finds no home
    // directory (HOME unset and no passwd entry): then two launches of one user could pick
    // two places. Only an absolute path counts (the XDG spec). macOS has no runtime dir.
    let runtime = if cfg!(any(target_os = "macos", target_os = "ios")) {
        None
    } else {
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute())
    };
    if let Some(runtime) = runtime {
        // Inside Flatpak the app's instances share $XDG_RUNTIME_DIR/app/$FLATPAK_ID; a Snap's
        // $XDG_RUNTIME_DIR is already its own.
        if let Some(id) = std::env::var_os("FLATPAK_ID").filter(|i| !i.is_empty()) {
            return Ok(runtime.join("app").join(id));
        }
        return Ok(runtime);
    }
    let uid = super::euid();
    // No runtime directory (su, cron, ssh without a systemd session, a container): as
    // GLib, the user's cache directory (`$XDG_CACHE_HOME`, else `~/.cache`), where no other
    // user can create the name first, as one could under the shared temp dir. The uid in
    // the name: a root that kept the user's HOME (sudo) does not take the user's name.
    // macOS keeps its `$TMPDIR`, which is the user's own there.
    if cfg!(not(any(target_os = "macos", target_os = "ios"))) {
        if let Some(cache) = cache_dir() {
            if cache.is_absolute() {
                let dir = cache.join(format!("solo-instance-{uid}"));
                // A home this user cannot write (a service account's `/nonexistent`, one
                // owned by root, a read-only one) has no room for it: the temp dir then, as
                // for no home. Every launch of the user finds the same. A directory that is
                // there but unsafe is refused instead (`default_dir`), never worked around.
                match ensure_dir(&dir, false) {
                    Err(Error::Io(_)) => {}
                    _ => return Ok(dir),
                }
            }
        }
    }
    // No home either, or none to write: the temp dir, whose name another user could create first (then
    // `start` refuses it, `Error::Insecure`).
    Ok(crate::default_socket_dir().join(format!("solo-instance-{uid}")))
}

/// The user's cache directory, as the XDG Base Directory spec and GLib find it:
/// `$XDG_CACHE_HOME` when absolute, else `<home>/.cache`, where home is `$HOME` when set
/// and not empty, else the passwd entry's (getpwuid_r). What `directories` gave, without
/// the crate on Unix.
fn cache_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Some(xdg);
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).or_else(passwd_home)?;
    Some(home.join(".cache"))
}

/// The home directory of this process's real user in the passwd database
/// (getpwuid_r), for when `$HOME` is unset or empty: what `dirs-sys` and std's
/// `home_dir` fall back to. `None` without an entry or with an empty or relative one.
fn passwd_home() -> Option<std::path::PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `passwd` is plain data that getpwuid_r fills; zeroed is a valid value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `pw` and `result` are locals, `buf`
        // is writable for `buf.len()` bytes; the strings it fills point into `buf`.
        let rc = unsafe {
            libc::getpwuid_r(
                rustix::process::getuid().as_raw(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pw.pw_dir.is_null() {
            return None;
        }
        // SAFETY: a non-null `pw_dir` from a successful call is a NUL-terminated string in
        // `buf`, which outlives this borrow.
        let dir = unsafe { CStr::from_ptr(pw.pw_dir) };
        let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
        return path.is_absolute().then_some(path);
    }
}
