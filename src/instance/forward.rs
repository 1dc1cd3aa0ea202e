//! One hand-over: connect to the primary, check who it is, send this launch's request and
//! read the reply. Part of the launch (`launch.rs`), which decides when to try.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::launch::{connect_options, is_disconnect, RequestLine};
use super::location::Location;
use super::lock::LockFile;
use super::published;
use super::transport::read_line;
use super::{Reply, Scope, SingleInstance};
use crate::sys::ServerCheck;
use crate::{Error, LocalSocketError, Result};

/// How long a launch waits for a free instance of a published pipe before it looks at the
/// lock again.
const BUSY_WAIT: Duration = Duration::from_millis(250);

impl SingleInstance {
    /// One attempt to hand the request over. `Ok(None)`: no primary to talk to right now
    /// (not listening yet, or it went away before answering), so start over.
    /// `refused` is set to why a server that answered was not this launch's primary
    /// (Windows: another user's pipe, a less trusted process's).
    pub(super) fn forward(
        &self,
        loc: &Location,
        line: &mut RequestLine,
        version: u64,
        deadline: Instant,
        refused: &mut Option<String>,
    ) -> Result<Option<Reply>> {
        let left = deadline.saturating_duration_since(Instant::now());
        // Where a file publishes the name (Windows, outside the System scope): the pipe the
        // primary published; none yet means no primary right now.
        let (target, published_level) = match connect_target(loc) {
            Some(t) => t,
            None => return Ok(None),
        };
        let name = target.to_string_lossy();
        // A published pipe whose every instance is taken may be a squatter's at an old name
        // that never frees one: wait for an instance a moment only, and let the lock decide
        // in between (our own busy primary is simply asked again).
        let left = if published_level.is_some() { left.min(BUSY_WAIT) } else { left };
        let socket = match connect_options(loc)
            .timeout(Some(left.max(Duration::from_millis(1))))
            .connect(&name)
        {
            Ok(s) => s,
            Err(e) => {
                return match e.socket_error() {
                    Some(LocalSocketError::ServerNotFound | LocalSocketError::ConnectionRefused) => Ok(None),
                    Some(LocalSocketError::SocketTimeout) if published_level.is_some() => Ok(None),
                    Some(LocalSocketError::SocketTimeout) => Err(Error::NoReply(self.timeout)),
                    // What a refusal means is the platform's (`sys::refused`): on Windows our
                    // own elevated primary (said at once), or another user's pipe at an old
                    // or guessed name (not our primary, so the lock decides).
                    Some(LocalSocketError::SocketAccess) if self.scope != Scope::System => {
                        match crate::sys::refused(&name, published_level, || lock_is_held(loc)) {
                            Some(ServerCheck::Unusable(why)) => Err(Error::Insecure(why.into())),
                            Some(ServerCheck::Stranger(why)) => {
                                *refused = Some(why);
                                Ok(None)
                            }
                            Some(ServerCheck::Ours) | None => Err(e),
                        }
                    }
                    _ => Err(e),
                };
            }
        };
        // Who serves this launch, as the OS says, before a byte is written. Outside the
        // System scope only this user's primary (uid; on Windows the pipe's owner, integrity
        // label and session): a server that is not (another user's or a less trusted
        // process's pipe, at a name the file published once) is no primary, and the lock
        // decides; the reason is told if nothing better answers before the deadline. In the
        // System scope any user, whose texts are defused before anything here prints them.
        let kind = crate::sys::SERVER_KIND;
        let from_another_user = if self.scope == Scope::System {
            !crate::sys::served_by_this_user(&socket)
        } else {
            match crate::sys::check_primary(&socket) {
                ServerCheck::Ours => false,
                ServerCheck::Stranger(why) => {
                    *refused = Some(format!("the {kind} {name} is {why}"));
                    return Ok(None);
                }
                ServerCheck::Unusable(why) => {
                    return Err(Error::Insecure(format!("the {kind} {name} is {why}").into()));
                }
            }
        };
        // Windows gives the right to take the foreground to the launch the user just started;
        // hand it on, so that the primary can raise its window for this request: only to a
        // primary of this user (in the System scope any user may serve the pipe).
        if !from_another_user {
            crate::sys::hand_foreground(&socket);
        }
        let decode = |line: &[u8]| match Reply::decode(line) {
            Ok(r) if from_another_user => Ok(r.received_from_another_user()),
            Err(e) if from_another_user => Err(crate::protocol::defuse(e.message()).into_owned().into()),
            other => other,
        };
        // This launch's primary answers: a request it would refuse is not sent.
        if let Some(e) = line.too_large(self) {
            return Err(e);
        }
        // Bounded by the deadline itself, not by the time left before connecting: a
        // launch ends within its timeout however slowly the primary drains the request.
        let written = crate::sys::write_all_until(&socket, line.get(self, version), deadline);
        if let Err(e) = written {
            return match e.kind() {
                // A primary that takes no request within the timeout does not answer.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(Error::NoReply(self.timeout)),
                // The primary may have refused the request (too large) and closed: its
                // reply is still there to read. Otherwise it went away: start over.
                _ if is_disconnect(&e) => {
                    match read_line(&socket, deadline, self.max_message_size).map(|l| decode(&l)) {
                        Ok(Ok(r)) if !r.ok && !r.retry => Err(Error::Rejected(Box::new(r))),
                        _ => Ok(None),
                    }
                }
                _ => Err(e.into()),
            };
        }
        // Frames (protocol version 2) until the reply.
        self.converse(&socket, deadline, from_another_user, &decode)
    }
}

/// The name to connect to: the location's, or where a file publishes it (Windows, outside
/// the System scope) the name the primary published, with the integrity level it
/// published (`None`: nothing published, so no primary right now).
fn connect_target(loc: &Location) -> Option<(PathBuf, Option<u32>)> {
    let Some(file) = published::file(&loc.socket) else { return Some((loc.socket.clone(), None)) };
    published::read(file).map(|p| (p.name, Some(p.integrity)))
}

/// Whether a process holds the lock now (a primary runs).
fn lock_is_held(loc: &Location) -> bool {
    matches!(LockFile::try_lock(&loc.lock, false), Ok(None))
}
