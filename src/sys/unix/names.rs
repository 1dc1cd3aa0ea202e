//! Unix: the facts of server names. Socket paths are bytes, bounded by `sun_path`; Linux
//! also has abstract names.

use std::ffi::{OsStr, OsString};

/// The longest socket path `bind`/`connect` take, in bytes, not counting the terminating
/// NUL (`sun_path` is 108 bytes on Linux, 104 on macOS and the BSDs).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const MAX_SOCKET_PATH: usize = 107;
/// The longest socket path `bind`/`connect` take, in bytes, not counting the terminating
/// NUL (`sun_path` is 108 bytes on Linux, 104 on macOS and the BSDs).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const MAX_SOCKET_PATH: usize = 103;

/// Whether sockets may have abstract names (Linux).
pub(crate) const ABSTRACT_NAMES: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Whether servers are named pipes (`\\.\pipe\name`) rather than socket paths.
pub(crate) const NAMES_ARE_PIPES: bool = false;

/// The bytes of an OS string, as they are.
pub(crate) fn os_bytes(s: &OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

/// The OS string of these bytes, as they are.
pub(crate) fn os_from_bytes(b: Vec<u8>) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(b)
}
