//! `PathError`: an I/O error on a path, and the path.

use std::fmt;
use std::io;

/// An I/O error on a path: what the OS said, and the file or directory it concerns. It
/// travels inside [`Error::Io`](crate::Error::Io) (an [`io::Error`] of the same kind, whose
/// [`get_ref`](io::Error::get_ref) is this), so matching on the kind stays simple, and
/// the OS error keeps its code: [`source`](std::error::Error::source) gives it back.
///
/// ```
/// use std::error::Error as _;
/// use solo_instance::{Error, PathError, SingleInstance};
/// // A directory under a plain file cannot be made.
/// let file = std::env::temp_dir().join(format!("doc-path-error-{}", std::process::id()));
/// std::fs::write(&file, b"")?;
/// let e = SingleInstance::new("org.example.Doc")?.directory(file.join("x")).status().unwrap_err();
/// let Error::Io(io) = &e else { panic!("{e:?}") };
/// let p = io.get_ref().and_then(|r| r.downcast_ref::<PathError>()).expect("a PathError");
/// assert!(p.path().starts_with(&file));
/// assert!(p.source().is_some()); // the OS error, code and all
/// std::fs::remove_file(&file)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PathError {
    what: &'static str,
    path: std::path::PathBuf,
    err: io::Error,
}

impl PathError {
    /// An [`io::Error`] of `err`'s kind that says what was done to which path, with `err`
    /// as its source.
    pub(crate) fn wrap(what: &'static str, path: impl Into<std::path::PathBuf>, err: io::Error) -> io::Error {
        io::Error::new(err.kind(), PathError { what, path: path.into(), err })
    }

    /// The path concerned.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// What the OS said.
    pub fn io_error(&self) -> &io::Error {
        &self.err
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.what.is_empty() {
            write!(f, "{}: {}", self.path.display(), self.err)
        } else {
            write!(f, "{} {}: {}", self.what, self.path.display(), self.err)
        }
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.err)
    }
}
