//! Why a receive call of a [`Primary`](crate::Primary) returned no request, in the shape of
//! `std::sync::mpsc`'s errors: stopped, empty, or timed out.

use std::fmt;

/// [`Primary::recv`](crate::Primary::recv) and `Primary::recv_async` return no request
/// any more: a [`Stopper`](crate::Stopper) stopped the primary, or it
/// [stepped down](crate::Health::SteppedDown) (see [`Primary::health`](crate::Primary::health)).
/// Every later receive call returns this too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecvError;

/// Why [`Primary::try_recv`](crate::Primary::try_recv) returned no request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TryRecvError {
    /// No request is waiting; one may come later.
    Empty,
    /// The primary is stopped or stepped down, as [`RecvError`] says: no request comes.
    Stopped,
}

/// Why [`Primary::recv_timeout`](crate::Primary::recv_timeout) returned no request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecvTimeoutError {
    /// No request came within the timeout; one may come later.
    Timeout,
    /// The primary is stopped or stepped down, as [`RecvError`] says: no request comes.
    Stopped,
}

impl From<RecvError> for TryRecvError {
    fn from(RecvError: RecvError) -> Self {
        TryRecvError::Stopped
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(RecvError: RecvError) -> Self {
        RecvTimeoutError::Stopped
    }
}

const STOPPED: &str = "the primary instance stopped serving";

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(STOPPED)
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no request is waiting"),
            TryRecvError::Stopped => f.write_str(STOPPED),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("no request came within the timeout"),
            RecvTimeoutError::Stopped => f.write_str(STOPPED),
        }
    }
}

impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}
