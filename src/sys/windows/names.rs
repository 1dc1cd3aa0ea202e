//! Windows: the facts of server names. Servers are named pipes; a path's bytes are its
//! UTF-8 form (lossy), as far as the Unix name rules are applied at all.

use std::ffi::{OsStr, OsString};

/// The longest socket path `bind`/`connect` take, in bytes, not counting the terminating
/// NUL (`sun_path` is 108 bytes on Linux, 104 on macOS and the BSDs). Windows has no
/// `sun_path`: the bound of macOS and the BSDs, so that names made for Unix stay the same.
pub const MAX_SOCKET_PATH: usize = 103;

/// Whether sockets may have abstract names: not on Windows.
pub(crate) const ABSTRACT_NAMES: bool = false;

/// Whether servers are named pipes (`\\.\pipe\name`) rather than socket paths.
pub(crate) const NAMES_ARE_PIPES: bool = true;

/// The bytes of an OS string: its UTF-8 form, lossy.
pub(crate) fn os_bytes(s: &OsStr) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}

/// The OS string of these bytes, read as UTF-8, lossy.
pub(crate) fn os_from_bytes(b: Vec<u8>) -> OsString {
    OsString::from(String::from_utf8_lossy(&b).into_owned())
}
