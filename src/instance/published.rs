//! Where the primary is published: the name a launch connects to. On Unix that is the
//! socket's path itself, which nothing else records. On Windows, in the User and Session
//! scopes, a file beside the lock (`<stem>.pipe`) publishes the random name of the
//! primary's pipe, written once the pipe exists and withdrawn before the lock is let go;
//! the System scope's pipe has a fixed name. See `sys::published`.

pub(crate) use crate::sys::published::*;
