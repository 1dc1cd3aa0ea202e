//! A `file://` URI's decoded path as a path here (the `dbus` feature's `Origin::file_paths`).

use std::path::PathBuf;

/// The decoded bytes of a `file://` URI's path: UTF-8, absolute, and `/C:/x` is the drive
/// path `C:/x`.
pub(crate) fn path_of_uri(decoded: Vec<u8>) -> Option<PathBuf> {
    let text = String::from_utf8(decoded).ok()?;
    let drive = text.len() >= 3 && text.as_bytes()[2] == b':' && text.as_bytes()[1].is_ascii_alphabetic();
    let path = PathBuf::from(if drive { &text[1..] } else { &text[..] });
    path.is_absolute().then_some(path)
}
