//! Where the lock file and the socket live: per user by default (the runtime directory,
//! else a private directory in the cache directory), with the Flatpak and Snap rules; the
//! README's "Where the files live" has the table.

use std::io;
use std::path::{Path, PathBuf};

use crate::Error;

/// Who shares one primary instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// One primary per user (the default). The files live in `$XDG_RUNTIME_DIR` (inside
    /// Flatpak, `$XDG_RUNTIME_DIR/app/$FLATPAK_ID`), else in a private 0700 directory
    /// `solo-instance-<uid>` in the user's cache directory (`$XDG_CACHE_HOME`, else
    /// `~/.cache`; on macOS under the user's own `$TMPDIR`), else under the temp dir; the
    /// socket is user-only and clients of another uid are dropped before a byte is read.
    /// On Windows the lock lives in `%LOCALAPPDATA%\solo-instance`; the primary's pipe has a
    /// fresh random name, which it publishes in `<app_id>.pipe` beside the lock; its DACL
    /// allows that user only and it is labelled at the primary's integrity level; a launch
    /// ignores a pipe another user owns or one below its own integrity level, and refuses a
    /// primary in another Terminal Services session; the primary drops clients of another
    /// SID, or below its integrity level, before reading. An app inside an AppContainer
    /// cannot be a primary others reach, nor reach one.
    #[default]
    User,
    /// One primary per user and login session (`$XDG_SESSION_ID`; on Windows the Terminal
    /// Services session; on systems without one, the same as [`User`](Self::User)).
    Session,
    /// One primary for the whole machine, shared by all users, and anyone may connect. On
    /// Linux it is an abstract socket, `solo-instance-system/<app_id>`, and a lock file
    /// any user may lock, `/tmp/solo-instance-system@<app_id>.lock`: the primary holds
    /// both, and both go with its process, so any user can take over after another user's
    /// primary died. A launch in another network namespace (a container, `unshare -n`)
    /// that shares `/tmp` cannot reach the primary's name: it fails with an error saying
    /// so, and never becomes a second primary. Should the lock file be removed under the
    /// running primary (by its creator, root or a tmp cleaner), the primary locks a fresh
    /// one at once (an inotify watch on the file itself, not on `/tmp`; once a second
    /// without inotify); if a launch in another network namespace locked it first, the
    /// primary steps down ([`Health::SteppedDown`](crate::Health::SteppedDown)).
    /// Elsewhere the files live
    /// in `/tmp/solo-instance-system` (mode 1777, owned by root or this user; `%ProgramData%`
    /// on Windows). Any local user may be the primary and read the launches of all: ask for
    /// it only when that is what you mean. On Windows the pipe's name is hashed from the
    /// directory's identity (volume and file id), and `%ProgramData%` is where Windows
    /// keeps it (`SHGetKnownFolderPath`), whatever the environment says.
    System,
}

/// The files of one app id in one scope.
#[derive(Clone, Debug)]
pub(crate) struct Location {
    pub(crate) lock: PathBuf,
    /// The server name: a socket path on Unix, a pipe name on Windows, an abstract
    /// socket name on Linux for the system scope.
    pub(crate) socket: PathBuf,
    /// The socket is in Linux's abstract namespace (see [`Scope::System`]): the primary
    /// binds the name and holds `lock`, a file in `/tmp` that any user may lock, which
    /// decides across network namespaces.
    pub(crate) abstract_ns: bool,
}

/// The abstract socket names of the system scope (Linux): `solo-instance-system/<app_id>`.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SYSTEM_ABSTRACT_PREFIX: &str = "solo-instance-system/";

/// What starts or separates every name the crate makes up (a shortened name, a scope's
/// suffix): a character no app id has (see [`validate_app_id`]), so that no app id, in
/// any scope, names another's socket or lock. Without it, app `L` shortened to
/// `<fnv64(L)>.sock` would be the app whose id is `fnv64(L)`, and Session-scope `org.x`
/// in session 7 the User-scope app `org.x.session-7`.
const MADE_UP: char = '@';

/// Checks an app id: 1 to 200 bytes of ASCII letters, digits, `.`, `_` and `-`, not
/// starting with `.` or `-`. Reverse-DNS ids (`org.example.Editor`) fit.
pub(crate) fn validate_app_id(id: &str) -> Result<(), Error> {
    let why = if id.is_empty() {
        "it is empty"
    } else if id.len() > 200 {
        "it is longer than 200 bytes"
    } else if id.starts_with(['.', '-']) {
        "it starts with '.' or '-'"
    } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidAppId(format!("{id:?}: {why}").into()))
}

/// FNV-1a, for shortening names that would not fit `sun_path`. Stable across versions:
/// every launch of every version must compute the same name.
pub(crate) fn short_hash(s: &str) -> String {
    short_hash_bytes(s.as_bytes())
}

/// [`short_hash`] of raw bytes (a path that need not be UTF-8).
pub(crate) fn short_hash_bytes(s: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn scope_suffix(scope: Scope) -> String {
    match scope {
        // Windows: the Terminal Services session this process runs in (one per login, fast
        // user switching and remote desktop included).
        #[cfg(windows)]
        Scope::Session => {
            crate::sys::session_id().map(|id| format!("{MADE_UP}session-{id}")).unwrap_or_default()
        }
        #[cfg(not(windows))]
        Scope::Session => std::env::var("XDG_SESSION_ID")
            .ok()
            .filter(|s| {
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .map(|s| format!("{MADE_UP}session-{s}"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Resolves (and creates, privately) the directory and names for `app_id`.
pub(crate) fn resolve(app_id: &str, scope: Scope, dir: Option<&Path>) -> Result<Location, Error> {
    // The system scope on Linux has no directory and no socket file: a shared directory is
    // one that some user owns (and may clean) or where one user's stale socket cannot be
    // removed by the next. An abstract socket is shared by every user and vanishes with its
    // process.
    //
    // An abstract name is per network namespace, though: a container, `unshare -n` or
    // systemd's `PrivateNetwork=` would each get a primary of their own. So a lock file
    // decides across them, where they share `/tmp`: `/tmp/solo-instance-system@<name>.lock`,
    // right in `/tmp` (root's, sticky), so that only its creator may remove it, and every
    // user can open it (0644, read-only for the others) and `flock` it. The lock frees
    // with its process as the name does: a dead primary blocks nobody.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if scope == Scope::System && dir.is_none() {
        let mut name = app_id.to_owned();
        if SYSTEM_ABSTRACT_PREFIX.len() + name.len() > crate::MAX_SOCKET_PATH {
            name = format!("{MADE_UP}{}", short_hash(app_id));
        }
        return Ok(Location {
            lock: system_base().join(format!("solo-instance-system{MADE_UP}{name}.lock")),
            socket: PathBuf::from(format!("{SYSTEM_ABSTRACT_PREFIX}{name}")),
            abstract_ns: true,
        });
    }
    let base = match dir {
        Some(d) => {
            ensure_dir(d, scope)?;
            d.to_path_buf()
        }
        None => default_dir(scope)?,
    };
    let stem = format!("{app_id}{}", scope_suffix(scope));
    let lock = base.join(format!("{stem}.lock"));
    #[cfg(unix)]
    let socket = unix_socket_name(&base, &stem, scope)?;
    #[cfg(windows)]
    let socket = socket_name(&base, &stem, scope)?;
    Ok(Location { socket, lock, abstract_ns: false })
}

/// What binding adds to the socket's directory: the private directory `/.XXXXXX` and the
/// socket `/s` in it (see `sys::unix::listener`). That path must fit `sun_path` too.
#[cfg(unix)]
const BIND_EXTRA: usize = "/.XXXXXX/s".len();

/// Whether `path` can be a socket: it fits `sun_path`, and so does the temporary path it is
/// bound at first; and it is UTF-8 (the socket API takes names as strings, as Qt's QString).
#[cfg(unix)]
fn fits(path: &Path) -> bool {
    let dir_len = path.parent().map_or(0, |d| d.as_os_str().len());
    path.as_os_str().len() <= crate::MAX_SOCKET_PATH
        && dir_len + BIND_EXTRA <= crate::MAX_SOCKET_PATH
        && path.to_str().is_some()
}

/// The socket beside the lock: `<stem>.sock`, else `@<hash of stem>.sock`. When neither
/// fits, the scope's own directory under the temp dir (per user and private for `User` and
/// `Session`: never a name another user could take first) holds `<hash of dir and
/// stem>.sock` (`@dir-<hash>.sock`); when not even that fits, a clear error.
#[cfg(unix)]
fn unix_socket_name(base: &Path, stem: &str, scope: Scope) -> Result<PathBuf, Error> {
    let short = socket_name(base, stem, scope);
    if fits(&short) {
        return Ok(short);
    }
    let fallback = fallback_dir(scope, base)?;
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
    ensure_dir(&fallback, scope)?;
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
#[cfg(unix)]
fn fallback_dir(scope: Scope, base: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::MetadataExt;
    if scope == Scope::System {
        return Ok(system_base().join("solo-instance-system"));
    }
    let uid = crate::sys::euid();
    let mut file = format!("{MADE_UP}fallback");
    // Each burnt secret took another user a removal of this user's directory to learn.
    for _ in 0..16 {
        let secret = fallback_secret(&base.join(&file))?;
        let dir = crate::temp_dir().join(format!("solo-instance-{uid}{MADE_UP}{secret}"));
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
#[cfg(unix)]
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
        let tmp = base.join(format!("{MADE_UP}fallback.{}.{secret}", std::process::id()));
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
            use std::os::unix::fs::PermissionsExt;
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o1600));
        }
        let written = file.write_all(secret.as_bytes()).map_err(|e| wrap("cannot write", &tmp, e));
        let linked = written.and_then(|()| match std::fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(wrap("cannot create", &path, e)),
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
#[cfg(unix)]
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// A name per directory and app id, hashed byte for byte so no two directories share one.
#[cfg(unix)]
fn fallback_stem(base: &Path, stem: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    format!("{MADE_UP}dir-{}", short_hash_bytes(base.join(stem).as_os_str().as_bytes()))
}

/// `<stem>.sock` in `base`, or `@<hash>.sock` when that is too long (the caller checks it).
#[cfg(unix)]
fn socket_name(base: &Path, stem: &str, _scope: Scope) -> PathBuf {
    let path = base.join(format!("{stem}.sock"));
    if fits(&path) {
        return path;
    }
    base.join(format!("{MADE_UP}{}.sock", short_hash(stem)))
}

/// Windows. User and Session scopes: the file in which the primary publishes its pipe's
/// name, `<stem>.pipe` beside the lock (the primary creates its pipe under a fresh random
/// name, which no one can squat first; see `published.rs`). System scope, where any user
/// may be the primary and the directory may not be writable by this one: a fixed pipe
/// name, `\\.\pipe\solo-instance.system.<hash>.<stem>`, the hash taken of the directory's
/// identity (volume serial number and file id), not of how its path is spelled, so that
/// every spelling of one directory (case, slashes, `\\?\`, a trailing separator) finds
/// the same pipe.
#[cfg(windows)]
fn socket_name(base: &Path, stem: &str, scope: Scope) -> Result<PathBuf, Error> {
    if scope != Scope::System {
        return Ok(base.join(format!("{stem}.pipe")));
    }
    let facts = crate::sys::check_directory(base, None)
        .map_err(|e| Error::Io(crate::PathError::wrap("", base, e)))?;
    let (volume, file) = facts.identity;
    Ok(pipe_name("system", &format!("{volume:08x}:{file:016x}"), stem))
}

/// `\\.\pipe\solo-instance.<user>.<hash of dir>.<stem>`, or with the stem hashed in too
/// where that would pass the 256 characters Windows allows a pipe name.
#[cfg_attr(not(windows), allow(dead_code))]
fn pipe_name(user: &str, base: &str, stem: &str) -> PathBuf {
    let tag = short_hash(&format!("{base}|{user}"));
    let full = format!(r"\\.\pipe\solo-instance.{user}.{tag}.{stem}");
    if full.encode_utf16().count() <= 256 {
        return PathBuf::from(full);
    }
    PathBuf::from(format!(r"\\.\pipe\solo-instance.{user}.{}", short_hash(&format!("{base}|{user}|{stem}"))))
}

fn default_dir(scope: Scope) -> Result<PathBuf, Error> {
    let dir = match scope {
        // A fixed path: $TMPDIR is per user on macOS (and with pam_tmpdir).
        Scope::System => system_base().join("solo-instance-system"),
        Scope::User | Scope::Session => user_dir()?,
    };
    ensure_dir(&dir, scope)?;
    Ok(dir)
}

#[cfg(unix)]
fn system_base() -> PathBuf {
    PathBuf::from("/tmp")
}

/// `%ProgramData%` as Windows knows it (`SHGetKnownFolderPath`), not as the environment
/// says: another program (or the user's own environment) could point the variable at a
/// directory of its choosing.
#[cfg(windows)]
fn system_base() -> PathBuf {
    crate::sys::program_data().unwrap_or_else(|_| PathBuf::from(r"C:\ProgramData"))
}

#[cfg(unix)]
fn user_dir() -> Result<PathBuf, Error> {
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
    let uid = crate::sys::euid();
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
                match ensure_dir(&dir, Scope::User) {
                    Err(Error::Io(_)) => {}
                    _ => return Ok(dir),
                }
            }
        }
    }
    // No home either, or none to write: the temp dir, whose name another user could create first (then
    // `start` refuses it, `Error::Insecure`).
    Ok(crate::temp_dir().join(format!("solo-instance-{uid}")))
}

/// The user's cache directory, as the XDG Base Directory spec and GLib find it:
/// `$XDG_CACHE_HOME` when absolute, else `<home>/.cache`, where home is `$HOME` when set
/// and not empty, else the passwd entry's (getpwuid_r). What `directories` gave, without
/// the crate on Unix.
#[cfg(unix)]
fn cache_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Some(xdg);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(crate::sys::passwd_home)?;
    Some(home.join(".cache"))
}

#[cfg(windows)]
fn user_dir() -> Result<PathBuf, Error> {
    directories::BaseDirs::new()
        .map(|b| b.data_local_dir().join("solo-instance"))
        .ok_or_else(|| Error::Io(io::Error::new(io::ErrorKind::NotFound, "no local app data directory")))
}

/// Creates `dir` if missing (0700; 1777 for the system scope) and refuses one that is not
/// safe: owned by another user, or open to others for writing without the sticky bit.
#[cfg(unix)]
fn ensure_dir(dir: &Path, scope: Scope) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let system = scope == Scope::System;
    let mode = if system { 0o1777 } else { 0o700 };
    // Usually there already: one lstat, and mkdir only when it is missing.
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) => return Err(Error::Io(crate::PathError::wrap("cannot create", dir, e))),
            }
            std::fs::symlink_metadata(dir)
        }
        r => r,
    }
    .map_err(|e| Error::Io(crate::PathError::wrap("", dir, e)))?;
    if !meta.is_dir() {
        return Err(Error::Insecure(format!("{} is not a directory", dir.display()).into()));
    }
    let uid = crate::sys::euid();
    if system {
        if meta.uid() != uid && meta.uid() != 0 {
            return Err(Error::Insecure(
                format!("{} is owned by uid {}, neither root nor this user", dir.display(), meta.uid())
                    .into(),
            ));
        }
        if meta.uid() == uid && meta.mode() & 0o7777 != mode {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
        }
        let m = std::fs::symlink_metadata(dir)?.mode();
        if m & 0o002 != 0 && m & 0o1000 == 0 {
            return Err(Error::Insecure(
                format!("{} is world-writable without the sticky bit", dir.display()).into(),
            ));
        }
        return Ok(());
    }
    if meta.uid() != uid {
        return Err(Error::Insecure(
            format!("{} is owned by uid {}, not by this user (uid {uid})", dir.display(), meta.uid()).into(),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::Insecure(
            format!("{} is writable by others (mode {:o})", dir.display(), meta.mode() & 0o7777).into(),
        ));
    }
    Ok(())
}

#[cfg(windows)]
fn ensure_dir(dir: &Path, scope: Scope) -> Result<(), Error> {
    let io_err = |e: io::Error| Error::Io(crate::PathError::wrap("", dir, e));
    if std::fs::symlink_metadata(dir).is_err() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        // Created with an explicit, protected DACL, never what the parent would pass on.
        // The System scope's directory is shared: others may read (and lock) what is in it
        // but not add, replace or remove anything. The user's own: this user, SYSTEM and
        // Administrators only.
        let made = if scope == Scope::System {
            crate::sys::create_shared_dir(dir)
        } else {
            crate::sys::create_private_dir(dir)
        };
        match made {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::Io(crate::PathError::wrap("cannot create", dir, e))),
        }
    }
    // Not a junction or a symbolic link (which could lead this process's writes and removals
    // anywhere), and owned by this user or by the machine's administrators: a directory
    // another user owns is theirs to rearrange under us. Its DACL must not let anyone else
    // add, delete or rename what is in it (a held lock deleted, the directory swapped for a
    // junction, a hard link planted as the pid file): in the System scope its owner, who
    // may be another user, is the exception.
    let insecure = |e: io::Error| match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::PermissionDenied => {
            Error::Insecure(format!("{}: {e}", dir.display()).into())
        }
        _ => io_err(e),
    };
    let owner = crate::sys::directory_owner(dir).map_err(insecure)?;
    // The System scope's directory may be another user's (the first to launch made it):
    // then the lock file there is only opened, never created or written (see `lock.rs`).
    if scope != Scope::System && !crate::sys::is_trusted_owner(&owner) {
        return Err(Error::Insecure(
            format!(
                "{} is owned by {owner}, neither this user nor the machine's administrators",
                dir.display()
            )
            .into(),
        ));
    }
    let extra: &[crate::Sid] = if scope == Scope::System { std::slice::from_ref(&owner) } else { &[] };
    crate::sys::check_directory(dir, Some(extra)).map_err(insecure)?;
    // Nor may anyone else rename or delete the directory itself through its parent (and
    // put a junction in its place): no delete-child right on the parent for others.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::sys::check_parent_directory(parent).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => Error::Insecure(format!("{}: {e}", parent.display()).into()),
            _ => Error::Io(crate::PathError::wrap("", parent, e)),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids() {
        for ok in ["org.example.Editor", "a", "my_app-2"] {
            assert!(validate_app_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "ü", &"x".repeat(201)] {
            assert!(matches!(validate_app_id(bad), Err(Error::InvalidAppId(_))), "{bad}");
        }
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(short_hash(""), "cbf29ce484222325");
        assert_eq!(short_hash("a"), "af63dc4c8601ec8c");
    }

    #[cfg(unix)]
    #[test]
    fn long_names_are_shortened() {
        let base = Path::new("/tmp");
        let long = "x".repeat(150);
        let p = unix_socket_name(base, &long, Scope::User).unwrap();
        assert!(p.as_os_str().len() <= crate::MAX_SOCKET_PATH);
        assert_eq!(p, unix_socket_name(base, &long, Scope::User).unwrap());
        assert_ne!(p, unix_socket_name(base, &"y".repeat(150), Scope::User).unwrap());
    }

    /// A fresh private directory `/tmp/solo-location-<pid>-<n>/<name>`, removed on drop
    /// together with the fallback directory its secret names (if one was made).
    #[cfg(unix)]
    struct Scratch(PathBuf, PathBuf);

    #[cfg(unix)]
    impl Scratch {
        fn new(name: &[u8]) -> Scratch {
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::fs::DirBuilderExt;
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let top = PathBuf::from(format!("/tmp/solo-location-{}-{n}", std::process::id()));
            let base = top.join(std::ffi::OsStr::from_bytes(name));
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&base).unwrap();
            Scratch(top, base)
        }
    }

    #[cfg(unix)]
    impl Drop for Scratch {
        fn drop(&mut self) {
            if self.1.join(format!("{MADE_UP}fallback")).exists() {
                let _ = std::fs::remove_dir_all(fallback_dir(Scope::User, &self.1).unwrap());
            }
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Issue 11, item 7: the temporary bind path (`dir/.XXXXXX/s`) must fit as well, and
    /// a directory too long for either moves the socket to a private directory, never to
    /// a shared name.
    #[cfg(unix)]
    #[test]
    fn every_chosen_socket_path_can_be_bound() {
        for len in 60..140 {
            let base = Scratch::new("d".repeat(len - 30).as_bytes());
            let p = unix_socket_name(&base.1, "org.example.App", Scope::User).unwrap();
            assert!(fits(&p), "{len}: {}", p.display());
            let dir = p.parent().unwrap();
            assert!(
                dir == base.1 || dir == fallback_dir(Scope::User, &base.1).unwrap(),
                "{len}: {}",
                p.display()
            );
        }
    }

    /// The long-path fallback is per user and secret: named after a random secret kept in
    /// the (private) base directory, the same for every launch that shares it, another for
    /// another base.
    #[cfg(unix)]
    #[test]
    fn the_long_path_fallback_has_a_secret_name() {
        let a = Scratch::new("d".repeat(100).as_bytes());
        let b = Scratch::new("d".repeat(100).as_bytes());
        let pa = unix_socket_name(&a.1, "org.example.App", Scope::User).unwrap();
        assert_eq!(pa, unix_socket_name(&a.1, "org.example.App", Scope::User).unwrap());
        let pb = unix_socket_name(&b.1, "org.example.App", Scope::User).unwrap();
        assert_ne!(pa.parent(), pb.parent());
        let dir = pa.parent().unwrap().file_name().unwrap().to_str().unwrap().to_owned();
        let secret = std::fs::read_to_string(a.1.join(format!("{MADE_UP}fallback"))).unwrap();
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                std::fs::metadata(a.1.join(format!("{MADE_UP}fallback"))).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o1600, "XDG's clean-up must leave the secret alone");
        }
        assert_eq!(dir, format!("solo-instance-{}{MADE_UP}{secret}", crate::sys::euid()));
        // Nothing left behind but the secret.
        let names: Vec<_> = std::fs::read_dir(&a.1).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from(format!("{MADE_UP}fallback"))]);
    }

    /// The fallback directory's name is secret only until it is first used: `ls /tmp`
    /// shows it, and so does `/proc/net/unix` while a socket is bound there. Once a temp
    /// cleaner (or a reboot, with the secret kept in a persistent cache directory) removes
    /// the directory, another user who saw the name can create it first. That must not
    /// lock the user out for good, as issue 20 item 15 forbade: a squatted name burns the
    /// secret, and the launches that share the base all move on to the same next one.
    #[cfg(unix)]
    #[test]
    fn a_squatted_fallback_name_is_left_for_a_new_secret() {
        use std::os::unix::fs::MetadataExt;
        if crate::sys::euid() != 0 {
            eprintln!("skipping: needs root (to give the squatted directory another owner)");
            return;
        }
        let base = Scratch::new("q".repeat(100).as_bytes());
        let first = unix_socket_name(&base.1, "org.example.App", Scope::User).unwrap();
        let seen = first.parent().unwrap().to_path_buf();
        // The directory goes (a temp cleaner), and a stranger who read its name makes it.
        std::fs::remove_dir_all(&seen).unwrap();
        std::fs::create_dir(&seen).unwrap();
        std::os::unix::fs::chown(&seen, Some(4299), Some(4299)).unwrap();
        let squatted = Squat(seen.clone());
        let again = unix_socket_name(&base.1, "org.example.App", Scope::User);
        let again = again.unwrap_or_else(|e| panic!("locked out by a stranger's {}: {e}", seen.display()));
        assert_ne!(again.parent().unwrap(), seen, "still the stranger's directory");
        assert_eq!(std::fs::metadata(again.parent().unwrap()).unwrap().uid(), crate::sys::euid());
        // Every launch that shares the base meets there.
        assert_eq!(again, unix_socket_name(&base.1, "org.example.App", Scope::User).unwrap());
        let _ = std::fs::remove_dir_all(again.parent().unwrap());
        drop(squatted);

        /// Removes the stranger's directory, whatever the test did.
        struct Squat(PathBuf);
        impl Drop for Squat {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    /// Every name the crate makes up is one no app id can be: a shortened socket name, the
    /// fallback directory's, a scope's suffix (as `scope_suffix` makes it), a shortened
    /// System-scope name.
    #[cfg(unix)]
    #[test]
    fn made_up_names_are_no_app_id() {
        let long = "x".repeat(150);
        let stem_of =
            |p: PathBuf| p.file_name().unwrap().to_str().unwrap().trim_end_matches(".sock").to_owned();
        let short = stem_of(unix_socket_name(Path::new("/tmp"), &long, Scope::User).unwrap());
        let deep = Scratch::new("d".repeat(100).as_bytes());
        let fallback = stem_of(unix_socket_name(&deep.1, "org.example.App", Scope::User).unwrap());
        for name in [short, fallback] {
            assert!(validate_app_id(&name).is_err(), "{name} is a valid app id");
        }
        let session = format!("org.x{MADE_UP}session-7");
        assert!(validate_app_id(&session).is_err(), "{session} is a valid app id");
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let loc = resolve(&"y".repeat(150), Scope::System, None).unwrap();
            let name = loc.socket.to_str().unwrap().strip_prefix(SYSTEM_ABSTRACT_PREFIX).unwrap().to_owned();
            assert!(validate_app_id(&name).is_err(), "{name} is a valid app id");
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_directories_get_a_usable_name() {
        let (da, db) = (Scratch::new(b"x\xff"), Scratch::new(b"x\xfe"));
        let a = unix_socket_name(&da.1, "app", Scope::User).unwrap();
        let b = unix_socket_name(&db.1, "app", Scope::User).unwrap();
        assert!(a.to_str().is_some() && b.to_str().is_some(), "{a:?} {b:?}");
        assert_ne!(a, b);
        // UTF-8 names are unchanged, and so is the hash of a long one.
        assert_eq!(
            unix_socket_name(Path::new("/run/x"), "app", Scope::User).unwrap(),
            Path::new("/run/x/app.sock")
        );
        assert_eq!(short_hash_bytes(b"a"), short_hash("a"));
    }
}
