//! Windows: no removal watch, and none needed. The primary holds its lock file open
//! without delete sharing, so neither the file nor its directory (not empty) can be removed
//! or renamed while it runs, and its pipe has no file at all. The items match Unix's:
//! [`new_watch`] always says why there is none, so the others are never reached.

use std::path::Path;

use super::FileId;

/// A watch on the files: never made on Windows.
pub(crate) enum Watch {}

impl Watch {
    /// What the loop's poller waits on for the watch's events: there is no watch.
    pub(crate) fn source(&self) -> &super::WatchSource {
        match *self {}
    }
}

/// Whether a directory can be watched here: no.
pub(crate) const WATCHES_DIRECTORIES: bool = false;

/// Whether a file can be watched itself: no.
pub(crate) const WATCHES_FILES: bool = false;

/// Why there is no watch.
pub(crate) fn new_watch() -> Result<Watch, String> {
    Err("no file watch on Windows: a held lock file and its directory cannot be removed".into())
}

/// Points the watch at a directory: there is no watch to point.
pub(crate) fn rewatch(w: &mut Watch, _dir: &Path, _id: FileId) -> Result<(), Option<String>> {
    match *w {}
}

/// Points the watch at a lock file: there is no watch to point.
pub(crate) fn rewatch_file(w: &mut Watch, _lock: &Path, _id: FileId) -> Result<(), Option<String>> {
    match *w {}
}

/// Whether the watch saw something that concerns the primary: there is no watch.
pub(crate) fn concerns_us(w: &Watch, _socket: &Path, _lock: &Path) -> bool {
    match *w {}
}

/// Whether `e` is the system's lack of handles or memory: `ERROR_NOT_ENOUGH_MEMORY`,
/// `ERROR_OUTOFMEMORY`, `ERROR_TOO_MANY_OPEN_FILES`, `ERROR_NO_SYSTEM_RESOURCES`.
pub(crate) fn is_out_of_resources(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(4 | 8 | 14 | 1450))
}
