//! Unix: where the primary is published is its socket's path itself: a launch connects to
//! the location's name, and no file records it. The items match Windows' (where a file
//! publishes the pipe's random name) and do nothing.

use std::io;
use std::path::{Path, PathBuf};

/// What a primary published: never made on Unix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    /// The name to connect to.
    pub(crate) name: PathBuf,
    /// The primary's integrity level (a Windows notion).
    pub(crate) integrity: u32,
}

/// The file that publishes the primary's name: none, the socket's path is the name.
pub(crate) fn file(_name: &Path) -> Option<&Path> {
    None
}

/// Publishes `name` in `file`: nothing to do.
#[allow(dead_code)] // the Windows tests publish names of their own
pub(crate) fn publish(_file: &Path, _name: &Path, _integrity: u32) -> io::Result<()> {
    Ok(())
}

/// Publishes this primary's `name` in `file`, with this process's level: nothing to do.
pub(crate) fn publish_own(_file: &Path, _name: &Path) -> io::Result<()> {
    Ok(())
}

/// What `file` publishes: nothing.
pub(crate) fn read(_file: &Path) -> Option<Published> {
    None
}

/// Removes `file` if it still publishes `name`: nothing to remove.
pub(crate) fn withdraw(_file: &Path, _name: &Path) {}
