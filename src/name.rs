//! Server names: how a name a user passes becomes the full server name (a socket path or
//! a pipe name), by Qt's rules, so Qt and Rust programs meet by the same name.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::SocketOptions;

pub use crate::sys::MAX_SOCKET_PATH;

/// The directory a server name that is not a path goes in on Unix, as Qt puts it:
/// `$TMPDIR` (an empty one counting as unset), else `/tmp`, cleaned as `QDir::cleanPath`
/// does. Not `std::env::temp_dir`, which keeps an empty `$TMPDIR` and does not clean.
pub fn default_socket_dir() -> PathBuf {
    let tmp = std::env::var_os("TMPDIR").filter(|t| !t.is_empty()).unwrap_or_else(|| OsString::from("/tmp"));
    PathBuf::from(clean_path(&crate::sys::os_bytes(&tmp)))
}

/// Qt's Unix rule: a name starting with `/` is the path itself; any other name is
/// [`default_socket_dir()`] + `/` + name. Abstract names (Linux) stay as they are.
pub(crate) fn unix_full_name(name: &str, options: SocketOptions) -> PathBuf {
    if name.starts_with('/') || options.contains(SocketOptions::ABSTRACT_NAMESPACE) {
        PathBuf::from(name)
    } else {
        default_socket_dir().join(name)
    }
}

/// Whether a name may hold NUL bytes: only an abstract one on Linux, whose address has an
/// explicit length (Qt 6 binds `name\0` and `name` as two addresses). A path is cut at
/// its first NUL by the kernel, so there it would reach another server.
pub(crate) fn nul_allowed(options: SocketOptions) -> bool {
    crate::sys::ABSTRACT_NAMES && options.contains(SocketOptions::ABSTRACT_NAMESPACE)
}

/// What starts or separates every name the crate makes up for a single-instance app (a
/// shortened name, a scope's suffix): a character no app id has (see
/// `instance::location::validate_app_id`), so that no app id, in any scope, names
/// another's socket or lock. Without it, app `L` shortened to `<fnv64(L)>.sock` would be
/// the app whose id is `fnv64(L)`, and Session-scope `org.x` in session 7 the User-scope
/// app `org.x.session-7`.
pub(crate) const MADE_UP: char = '@';

/// FNV-1a, for shortening names that would not fit `sun_path` (or a pipe name). Stable
/// across versions: every launch of every version must compute the same name.
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

/// Qt's Windows rule: a name starting with `\\.\pipe\` is the pipe itself; any other is
/// put under `\\.\pipe\`.
pub(crate) fn windows_full_name(name: &str) -> PathBuf {
    const PIPE: &str = r"\\.\pipe\";
    if name.starts_with(PIPE) {
        PathBuf::from(name)
    } else {
        PathBuf::from(format!("{PIPE}{name}"))
    }
}

/// `dir` joined with the file name `file` (one plain component, never absolute), as
/// `Path::join` gives it, in one allocation of the right size.
pub(crate) fn file_in(dir: &std::path::Path, file: &str) -> PathBuf {
    let dir = dir.as_os_str();
    let mut out = OsString::with_capacity(dir.len() + 1 + file.len());
    out.push(dir);
    let ends_with_separator =
        dir.as_encoded_bytes().last().is_some_and(|&b| std::path::is_separator(b as char));
    if !dir.is_empty() && !ends_with_separator {
        out.push(std::path::MAIN_SEPARATOR_STR);
    }
    out.push(file);
    PathBuf::from(out)
}

/// [`full_name`], borrowing `name` where it is the full name already (an absolute path
/// or an abstract name, on Unix): no allocation for what a connect uses once.
pub(crate) fn full_name_ref(name: &str, options: SocketOptions) -> std::borrow::Cow<'_, std::path::Path> {
    if !crate::sys::NAMES_ARE_PIPES
        && (name.starts_with('/') || options.contains(SocketOptions::ABSTRACT_NAMESPACE))
    {
        std::borrow::Cow::Borrowed(std::path::Path::new(name))
    } else {
        std::borrow::Cow::Owned(full_name(name, options))
    }
}

/// The full server name for `name` on this platform.
pub(crate) fn full_name(name: &str, options: SocketOptions) -> PathBuf {
    if crate::sys::NAMES_ARE_PIPES {
        windows_full_name(name)
    } else {
        unix_full_name(name, options)
    }
}

/// `QDir::cleanPath` on bytes: no repeated or trailing `/`, no `.`, and `..` folded into
/// its parent where there is one.
pub(crate) fn clean_path(path: &[u8]) -> OsString {
    let absolute = path.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match parts.last() {
                Some(&last) if last != b".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(part),
            },
            _ => parts.push(part),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if absolute {
        out.push(b'/');
    }
    out.extend(parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    crate::sys::os_from_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_is_qdir_clean_path() {
        for (input, want) in [
            ("/tmp", "/tmp"),
            ("/tmp/", "/tmp"),
            ("//tmp//x/", "/tmp/x"),
            ("/tmp/./a/../b", "/tmp/b"),
            ("/..", "/"),
            ("/", "/"),
            ("a/../..", ".."),
            ("", "."),
        ] {
            assert_eq!(clean_path(input.as_bytes()), OsString::from(want), "{input}");
        }
    }

    #[test]
    fn file_in_is_path_join() {
        // Compared as strings: `Path`'s `==` compares components, so it would take
        // `/run/user/0//app.lock` for `/run/user/0/app.lock`.
        let mut dirs = vec!["/run/user/0", "/run/user/0/", "/", "rel", "", "a//", "a/./", "/a/.."];
        if cfg!(windows) {
            dirs.extend([r"C:\Users\me", r"C:\Users\me\", "C:/Users/me/", r"\\?\C:\x", r"\\.\pipe\"]);
        }
        for dir in dirs {
            let dir = std::path::Path::new(dir);
            assert_eq!(file_in(dir, "app.lock").as_os_str(), dir.join("app.lock").as_os_str(), "{dir:?}");
        }
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(short_hash(""), "cbf29ce484222325");
        assert_eq!(short_hash("a"), "af63dc4c8601ec8c");
        assert_eq!(short_hash_bytes(b"a"), short_hash("a"));
    }

    #[test]
    fn relative_and_absolute_names() {
        assert_eq!(unix_full_name("/run/x.sock", SocketOptions::empty()), PathBuf::from("/run/x.sock"));
        assert_eq!(unix_full_name("app", SocketOptions::empty()), default_socket_dir().join("app"));
        assert_eq!(unix_full_name("app", SocketOptions::ABSTRACT_NAMESPACE), PathBuf::from("app"));
        assert_eq!(windows_full_name("app"), PathBuf::from(r"\\.\pipe\app"));
        assert_eq!(windows_full_name(r"\\.\pipe\app"), PathBuf::from(r"\\.\pipe\app"));
    }
}
