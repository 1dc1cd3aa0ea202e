//! A `file://` URI's decoded path as a path here (the `dbus` feature's `Origin::file_paths`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// The decoded bytes of a `file://` URI's path, byte for byte (non-UTF-8 included).
pub(crate) fn path_of_uri(decoded: Vec<u8>) -> Option<PathBuf> {
    Some(PathBuf::from(OsString::from_vec(decoded)))
}
