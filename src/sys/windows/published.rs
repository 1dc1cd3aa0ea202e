//! Windows: where the primary is published. In the User and Session scopes, the file
//! `<stem>.pipe` beside the lock, in which the primary publishes the name of its pipe; the
//! System scope's pipe has a fixed name, and nothing publishes it.
//!
//! A pipe name derived from public facts (the SID, the directory, the app id) can be
//! created first by another user, who then keeps the app from ever starting. So the
//! primary, once it holds the lock, creates its pipe under a fresh random name (see
//! [`random_pipe_name`](super::random_pipe_name)) and only then writes that name here: to a temporary file
//! first, renamed over the old one, so that a launch reads either the old name or the new
//! one, whole. The directory is this user's, and no one else may add or replace files in
//! it (`sys::ensure_dir`); a launch still checks the pipe it names (owner, integrity
//! label) before a byte is written, and treats a pipe that fails as no primary.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::lock::open_plain;

/// The file that publishes the primary's pipe name, where there is one: outside the System
/// scope the location's name (`server_name`) is that file, not a pipe.
pub(crate) fn file(name: &Path) -> Option<&Path> {
    (!name.to_string_lossy().starts_with(r"\\.\pipe\")).then_some(name)
}

/// The first line of the file: what it is, and the version of its format.
const MAGIC: &str = "solo-instance pipe 1";

/// What a primary published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    /// The pipe's name, `\\.\pipe\solo-instance-<32 hex digits>`.
    pub(crate) name: PathBuf,
    /// The primary's integrity level (the RID of its label).
    pub(crate) integrity: u32,
}

/// Publishes this primary's `pipe` in `file`, with this process's integrity level.
pub(crate) fn publish_own(file: &Path, pipe: &Path) -> io::Result<()> {
    publish(file, pipe, super::own_integrity()?)
}

/// Publishes `pipe` in `file`: written to `<file>.<pid>.tmp`, then renamed over `file`.
pub(crate) fn publish(file: &Path, pipe: &Path, integrity: u32) -> io::Result<()> {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // Left over by a process of this pid that died: its content is stale.
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = open_plain(&tmp, true)?;
        f.set_len(0)?;
        write!(f, "{MAGIC}\n{}\n{integrity}\n", pipe.display())?;
        f.flush()
    })();
    let renamed = written.and_then(|()| std::fs::rename(&tmp, file));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// What `file` publishes, if it is there, a plain file, and well-formed.
pub(crate) fn read(file: &Path) -> Option<Published> {
    let f = open_plain(file, false).ok()?;
    let mut s = String::new();
    f.take(512).read_to_string(&mut s).ok()?;
    let mut lines = s.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let pipe = lines.next()?;
    if !super::is_random_pipe_name(pipe) {
        return None;
    }
    let integrity = lines.next()?.parse().ok()?;
    Some(Published { name: PathBuf::from(pipe), integrity })
}

/// Removes `file` if it still publishes `pipe` (the primary, going away, with its lock
/// still held).
pub(crate) fn withdraw(file: &Path, pipe: &Path) {
    if read(file).is_some_and(|p| p.name == pipe) {
        let _ = std::fs::remove_file(file);
    }
}
