//! The lock file that decides the primary: an exclusive lock (`flock` on Unix, `LockFileEx`
//! on Windows), held for the primary's life and freed by the OS when its process dies.
//! Whoever holds it is the primary, in every scope but one: Linux's System scope, whose
//! primary holds both a lock file in `/tmp` and an abstract socket name. There, binding
//! the name decides within a network namespace (an abstract name cannot be bound twice),
//! and the lock across the network namespaces that share `/tmp`.
//!
//! The platform provides the lock (`sys::LockFile`), where the holder's pid is recorded
//! (`sys::read_pid`: in the lock file; on Windows in `<app>.pid` beside it) and whether a
//! lock file cannot exist at all (`sys::lock_cannot_exist`).

pub(crate) use crate::sys::{lock_cannot_exist, read_pid, LockFile};
