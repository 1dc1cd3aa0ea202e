//! The launch: find the primary through the lock and the socket, hand it this launch's
//! request and wait for its reply, or become the primary.

use std::io::{self};
use std::time::{Duration, Instant};

use super::location::Location;
use super::lock::LockFile;
use super::transport::read_line;
#[cfg(windows)]
use super::transport::set_timeout;
use super::{Primary, Reply, Scope, SingleInstance, Start};
use crate::{ConnectOptions, Error, LocalSocket, LocalSocketError, Result, SocketOptions};
#[cfg(windows)]
use std::io::Write;

impl SingleInstance {
    pub(super) fn run(self, may_become_primary: bool) -> Result<Start> {
        // The timeout counts from here: everything below, connects included, fits in it.
        let deadline = far_deadline(self.timeout);
        // The directory is checked before anything is connected to: the peer check proves
        // only that a socket is served by this user, not that it is this app's primary. A
        // name in a directory others can write to may be a symlink or hard link to any
        // other service of this user's (any root daemon's, for root), which would be sent
        // the request (test `launch_writes_nothing_through_an_unsafe_directory`).
        let mut loc = self.located(deadline)?;
        let line = self.request_lines();
        // Checked only when forwarding: a launch that becomes the primary sends nothing.
        let too_large = (line.v2.len() > self.max_message_size).then(|| {
            Error::Protocol(
                format!("message too large ({} bytes, limit {} bytes)", line.v2.len(), self.max_message_size)
                    .into(),
            )
        });
        let mut backoff = Duration::from_micros(200);
        let mut too_large = too_large;
        // System scope on Linux: the last look found the lock held, and the name not
        // answering (see below).
        let mut held_elsewhere = false;
        // Why the last pipe this launch found was not its primary (Windows: another user's,
        // a less trusted process's), told at the deadline if nothing better answered.
        let mut refused = None;
        loop {
            if loc.abstract_ns {
                // The System scope on Linux: the lock file decides across network namespaces,
                // and binding the name within this one.
                held_elsewhere = false;
                let taken = match LockFile::try_lock(&loc.lock, true) {
                    Ok(lock) => lock,
                    // No lock file, and none can be made: this launch sees `/tmp` read-only
                    // (`ProtectSystem=strict`). The name alone would decide only within this
                    // network namespace, which may be a private one: say so instead.
                    Err(e) if lock_cannot_exist(&loc.lock) => {
                        return Err(Error::Io(io::Error::new(
                            e.kind(),
                            format!(
                                "the System scope's lock file {} does not exist and cannot be made: \
                                 this process sees {} read-only (systemd's ProtectSystem=strict?); \
                                 launch once where it is writable, or give this one a writable \
                                 {} (ReadWritePaths=)",
                                loc.lock.display(),
                                loc.lock.parent().unwrap_or(std::path::Path::new("/")).display(),
                                loc.lock.parent().unwrap_or(std::path::Path::new("/")).display(),
                            ),
                        )))
                    }
                    Err(e) => return Err(e.into()),
                };
                match taken {
                    Some(lock) if may_become_primary => {
                        match Primary::serve(&self, loc.clone(), Some(lock)) {
                            Ok(primary) => return Ok(Start::Primary(primary)),
                            // Taken by a primary that holds no lock (an older version): ask it.
                            Err(e) if e.socket_error() == Some(LocalSocketError::AddressInUse) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Some(_) => {}
                    None => held_elsewhere = true,
                }
            }
            // A launch usually finds a primary: ask it first, and look at the lock only
            // when nothing answers (becoming the primary still takes the lock). A request
            // too large to send checks the lock first, to refuse it without a round trip.
            let forwarded_first = !loc.abstract_ns && too_large.is_none();
            if forwarded_first {
                if let Some(reply) = self.forward_any(&loc, &line, deadline, &mut refused)? {
                    return Ok(Start::Forwarded(reply));
                }
            }
            let free = if loc.abstract_ns {
                None
            } else {
                match LockFile::try_lock(&loc.lock, self.scope == Scope::System) {
                    Ok(free) => free,
                    // The directory or the lock file removed as it was opened (a cleaner;
                    // the primary puts them back): made again if need be, and looked at
                    // again, within the timeout.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        loc = self.located(deadline)?;
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            if let Some(lock) = free {
                // Holding the lock proves no primary runs, unless the lock file was replaced
                // under a running one (a cleaner removed it): a socket that answers is
                // alive, and is never taken over. A primary that handed over (a replace)
                // leaves the lock to the launch it handed over to.
                if !socket_is_live(&loc, deadline) && !super::handover::pending(&loc, self.scope) {
                    if !may_become_primary {
                        return Err(Error::NoPrimary);
                    }
                    match Primary::serve(&self, loc.clone(), Some(lock)) {
                        // Its directory removed under it as it started (a cleaner): again.
                        Err(e) if vanished(&e) => {}
                        r => return r.map(Start::Primary),
                    }
                } else {
                    drop(lock);
                }
            }
            if let Some(e) = too_large.take() {
                // A primary runs and would refuse it: say so now rather than after a round trip.
                return Err(e);
            }
            let forwarded = if forwarded_first {
                // Asked already this turn; the primary is coming up or going away.
                Ok(None)
            } else {
                self.forward_any(&loc, &line, deadline, &mut refused)
            };
            match forwarded {
                Ok(Some(reply)) => return Ok(Start::Forwarded(reply)),
                // The lock was free: nothing answering the name means no primary.
                Ok(None) if loc.abstract_ns && !held_elsewhere && !may_become_primary => {
                    return Err(Error::NoPrimary)
                }
                // The primary is coming up or going away: look again.
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline {
                if held_elsewhere {
                    // Held all along by a primary whose name this launch cannot reach.
                    return Err(Error::Io(io::Error::other(format!(
                        "the System scope's primary of {} holds {} but does not answer in this \
                         network namespace: it runs in another one (a container, `unshare -n`, \
                         systemd's PrivateNetwork=), where the abstract socket {} is not shared; \
                         launch from that namespace, or share the host's network",
                        self.app_id,
                        loc.lock.display(),
                        loc.socket.display()
                    ))));
                }
                // Windows: only pipes that were not this launch's primary answered (another
                // user's, a less trusted process's): say which, not just "no reply".
                if let Some(why) = refused.take() {
                    return Err(Error::Insecure(why.into()));
                }
                return Err(Error::NoReply(self.timeout));
            }
            std::thread::sleep(backoff.min(deadline - now));
            backoff = (backoff * 2).min(Duration::from_millis(20));
        }
    }

    /// The location, its directory made if missing; a directory that a cleaner removes or
    /// makes at that very moment (`NotFound`, `AlreadyExists`) is looked at again, within
    /// the timeout.
    fn located(&self, deadline: Instant) -> Result<Location> {
        let mut backoff = Duration::from_micros(200);
        loop {
            match self.location() {
                Err(e) if vanished(&e) && Instant::now() < deadline => {}
                // Still coming and going at the deadline: nothing answered in time.
                Err(e) if vanished(&e) => return Err(Error::NoReply(self.timeout)),
                r => return r,
            }
            std::thread::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())));
            backoff = (backoff * 2).min(Duration::from_millis(20));
        }
    }

    /// One attempt to hand the request over. `Ok(None)`: no primary to talk to right now
    /// (not listening yet, or it went away before answering), so start over.
    /// `refused` is set to why a pipe that answered was not this launch's primary (Windows).
    pub(super) fn forward(
        &self,
        loc: &Location,
        line: &[u8],
        deadline: Instant,
        #[cfg_attr(not(windows), allow(unused_variables))] refused: &mut Option<String>,
    ) -> Result<Option<Reply>> {
        let left = deadline.saturating_duration_since(Instant::now());
        // Windows, outside the System scope: the pipe the primary published; none yet
        // means no primary right now.
        #[cfg(windows)]
        let (target, published_level) = match pipe_target(loc) {
            Some(t) => t,
            None => return Ok(None),
        };
        #[cfg(windows)]
        let name = target.to_string_lossy();
        #[cfg(not(windows))]
        let name = loc.socket.to_string_lossy();
        // Windows: a published pipe whose every instance is taken may be a squatter's at an
        // old name that never frees one: wait for an instance a moment only, and let the
        // lock decide in between (our own busy primary is simply asked again).
        #[cfg(windows)]
        let left = if published_level.is_some() { left.min(BUSY_WAIT) } else { left };
        let socket = match connect_options(loc)
            .timeout(Some(left.max(Duration::from_millis(1))))
            .connect(&name)
        {
            Ok(s) => s,
            Err(e) => {
                return match e.socket_error() {
                    Some(LocalSocketError::ServerNotFound | LocalSocketError::ConnectionRefused) => Ok(None),
                    #[cfg(windows)]
                    Some(LocalSocketError::SocketTimeout) if published_level.is_some() => Ok(None),
                    Some(LocalSocketError::SocketTimeout) => Err(Error::NoReply(self.timeout)),
                    // Windows: our own primary's pipe lets us in, unless it runs elevated
                    // and we do not (it published its level): then Windows' integrity
                    // rule keeps us out, and that is said at once. Any other refusal is
                    // another user's pipe at an old or guessed name (or this launch is in
                    // an AppContainer): not our primary, so the lock decides.
                    #[cfg(windows)]
                    Some(LocalSocketError::SocketAccess) if self.scope != Scope::System => {
                        if let (Some(level), Ok(own)) = (published_level, crate::sys::own_integrity()) {
                            // Only while a primary holds the lock: else the file is a dead
                            // (crashed) elevated primary's, and the pipe that refuses us at
                            // its name, which anyone can list, is a squatter's: the lock
                            // decides, as for any stranger's pipe.
                            if level > own && lock_is_held(loc) {
                                let why = crate::sys::elevated_message(level, own);
                                return Err(Error::Insecure(format!("the pipe {name} is {why}").into()));
                            }
                        }
                        *refused = Some(if crate::sys::in_app_container() {
                            format!(
                                "the pipe {name} refuses this launch: it runs inside an AppContainer, \
                                 which a primary's pipe (this user's only) does not admit"
                            )
                        } else {
                            format!("the pipe {name} refuses this user: another user created it")
                        });
                        Ok(None)
                    }
                    _ => Err(e),
                };
            }
        };
        // Who serves this launch, as the OS says. Outside the System scope only this user;
        // in it any user, whose texts are defused before anything here prints them.
        // In the System scope, a uid that proves nothing (see `uid_is_overflow`) counts as
        // another user's: defusing the texts of this user's own primary costs only colours.
        #[cfg(not(windows))]
        let from_another_user = !same_user(&socket) || (self.scope == Scope::System && uid_is_overflow());
        #[cfg(not(windows))]
        if self.scope != Scope::System && from_another_user {
            let whose = "served by another user";
            return Err(Error::Insecure(format!("the socket {} is {whose}", loc.socket.display()).into()));
        }
        // Windows: the pipe's owner, integrity label and session, before a byte is written.
        // A pipe that is not this launch's primary (another user's or a less trusted
        // process's, at a name the file published once) is no primary: the lock decides,
        // and the reason is told if nothing better answers before the deadline.
        #[cfg(windows)]
        let ours = if self.scope == Scope::System {
            same_user(&socket)
        } else {
            match crate::sys::check_server(socket.as_stream(), true) {
                crate::sys::ServerCheck::Ours => true,
                crate::sys::ServerCheck::Stranger(why) => {
                    *refused = Some(format!("the pipe {name} is {why}"));
                    return Ok(None);
                }
                crate::sys::ServerCheck::Unusable(why) => {
                    return Err(Error::Insecure(format!("the pipe {name} is {why}").into()));
                }
            }
        };
        // Windows gives the right to take the foreground to the launch the user just started;
        // hand it on, so that the primary can raise its window for this request: only to a
        // primary of this user (in the System scope any user may serve the pipe).
        #[cfg(windows)]
        if ours {
            if let Some(pid) = crate::sys::server_pid(socket.as_stream()) {
                crate::sys::allow_foreground(pid);
            }
        }
        #[cfg(windows)]
        let from_another_user = !ours;
        let decode = |line: &[u8]| match Reply::decode(line) {
            Ok(r) if from_another_user => Ok(r.received_from_another_user()),
            Err(e) if from_another_user => Err(crate::protocol::defuse(e.message()).into_owned()),
            Ok(r) => Ok(r),
            Err(e) => Err(e.message().to_owned()),
        };
        let mut out = Vec::with_capacity(line.len() + 1);
        out.extend_from_slice(line);
        out.push(b'\n');
        // Bounded by the deadline itself, not by the time left before connecting: a
        // launch ends within its timeout however slowly the primary drains the request.
        #[cfg(unix)]
        let written = crate::sys::write_all_until(&socket, &out, deadline);
        #[cfg(windows)]
        let written = {
            let left = deadline.saturating_duration_since(Instant::now());
            set_timeout(&socket, false, left)?;
            let _deadline = crate::sys::IoDeadline::arm(socket.as_stream(), deadline);
            (&socket).write_all(&out)
        };
        if let Err(e) = written {
            return match e.kind() {
                // A primary that takes no request within the timeout does not answer.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(Error::NoReply(self.timeout)),
                // The primary may have refused the request (too large) and closed: its
                // reply is still there to read. Otherwise it went away: start over.
                _ if is_disconnect(&e) => {
                    match read_line(&socket, deadline, self.max_message_size).map(|l| decode(&l)) {
                        Ok(Ok(r)) if !r.ok && !r.retry => {
                            Err(Error::Rejected(r.error.unwrap_or_default().into()))
                        }
                        _ => Ok(None),
                    }
                }
                _ => Err(e.into()),
            };
        }
        // Frames (version 2) until the reply.
        self.converse(&socket, deadline, from_another_user, &decode)
    }
}

/// The System scope on Linux: whether `lock` is missing and its directory read-only for
/// this process (EROFS), so that no lock file can exist there.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn lock_cannot_exist(lock: &std::path::Path) -> bool {
    let missing = matches!(std::fs::symlink_metadata(lock), Err(e) if e.kind() == io::ErrorKind::NotFound);
    let dir = lock.parent().unwrap_or(std::path::Path::new("/"));
    missing && rustix::fs::access(dir, rustix::fs::Access::WRITE_OK) == Err(rustix::io::Errno::ROFS)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn lock_cannot_exist(_: &std::path::Path) -> bool {
    false
}

/// `now + timeout`, or a deadline too far away to matter when that overflows.
pub(super) fn far_deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).or_else(|| now.checked_add(Duration::from_secs(1 << 32))).unwrap_or(now)
}

/// Whether the app's socket may belong to a running server. Only a connect refused
/// (nothing listens: a dead primary's file) or one finding no socket proves it dead; a
/// connect that times out (a frozen primary, a full backlog) or fails otherwise leaves the
/// socket live, so that it is never removed under a primary that still runs.
pub(super) fn socket_is_live(loc: &Location, deadline: Instant) -> bool {
    // No file, nothing to connect to: one stat instead of a socket, a connect and a close.
    #[cfg(unix)]
    if !loc.abstract_ns
        && matches!(std::fs::symlink_metadata(&loc.socket), Err(e) if e.kind() == io::ErrorKind::NotFound)
    {
        return false;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let options =
        connect_options(loc).timeout(Some(left.clamp(Duration::from_millis(1), Duration::from_millis(200))));
    // Windows, outside the System scope: the published pipe, and only if it is this
    // user's primary: another user's pipe at an old name, or one that never frees an
    // instance, is no reason not to become the primary. Taking over cannot hurt a live
    // pipe here: the new primary creates a new name, and with the lock free (it cannot be
    // deleted while held) no primary of ours runs.
    #[cfg(windows)]
    if let Some(file) = published_file(loc) {
        let Some(p) = super::published::read(file) else { return false };
        return match options.connect(&p.pipe.to_string_lossy()) {
            Ok(s) => {
                !matches!(crate::sys::check_server(s.as_stream(), true), crate::sys::ServerCheck::Stranger(_))
            }
            // Refused: another user's pipe, unless our primary runs elevated above us.
            Err(e) if e.socket_error() == Some(LocalSocketError::SocketAccess) => {
                crate::sys::own_integrity().is_ok_and(|own| p.integrity > own)
            }
            Err(_) => false,
        };
    }
    match options.connect(&loc.socket.to_string_lossy()) {
        Ok(_) => true,
        Err(e) => !is_dead(&e),
    }
}

/// Windows: how long a launch waits for a free instance of a published pipe before it
/// looks at the lock again.
#[cfg(windows)]
const BUSY_WAIT: Duration = Duration::from_millis(250);

/// Windows: the file that publishes the primary's pipe name, where there is one (outside
/// the System scope `Location::socket` is that file, not a pipe).
#[cfg(windows)]
pub(super) fn published_file(loc: &Location) -> Option<&std::path::Path> {
    (!loc.socket.to_string_lossy().starts_with(r"\\.\pipe\")).then_some(loc.socket.as_path())
}

/// Windows: the pipe to connect to: the System scope's fixed name, else the one the
/// primary published, with the integrity level it published (`None`: nothing published).
#[cfg(windows)]
fn pipe_target(loc: &Location) -> Option<(std::path::PathBuf, Option<u32>)> {
    let Some(file) = published_file(loc) else { return Some((loc.socket.clone(), None)) };
    super::published::read(file).map(|p| (p.pipe, Some(p.integrity)))
}

/// Whether `e` is a file or directory that vanished, or appeared, under the launch (a
/// cleaner's `rm -rf dir; mkdir dir` at that moment): worth another look.
fn vanished(e: &Error) -> bool {
    matches!(e, Error::Io(io) if matches!(io.kind(), io::ErrorKind::NotFound | io::ErrorKind::AlreadyExists))
}

/// Windows: whether a process holds the lock now (a primary runs).
#[cfg(windows)]
fn lock_is_held(loc: &Location) -> bool {
    matches!(LockFile::try_lock(&loc.lock, false), Ok(None))
}

/// Whether a failed connect proves nobody serves the name: refused, or nothing there.
pub(super) fn is_dead(e: &Error) -> bool {
    matches!(e.socket_error(), Some(LocalSocketError::ServerNotFound | LocalSocketError::ConnectionRefused))
}

/// How to connect to the location's socket.
pub(super) fn connect_options(loc: &Location) -> ConnectOptions {
    let options = ConnectOptions::new();
    // The launch waits with poll(2) (`transport::read_line`, `sys::write_all_until`).
    #[cfg(unix)]
    let options = options.keep_nonblocking();
    if loc.abstract_ns {
        options.socket_options(SocketOptions::ABSTRACT_NAMESPACE)
    } else {
        options
    }
}

pub(super) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// Linux: whether this process's uid reads as the kernel's overflow uid (65534 unless
/// changed): it runs in a user namespace that does not map it (`unshare -U`), or it is a
/// `nobody`. Then a peer in a user namespace of its own, or whose uid this namespace does
/// not map (any other user's, from a container's), reads as that same uid, whoever it is.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn uid_is_overflow() -> bool {
    let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(65534);
    crate::sys::euid() == overflow
}

#[cfg(not(any(target_os = "linux", target_os = "android", windows)))]
fn uid_is_overflow() -> bool {
    false
}

#[cfg(unix)]
pub(super) fn same_user(socket: &LocalSocket) -> bool {
    let me = crate::sys::euid();
    socket.peer_credentials().ok().and_then(|c| c.uid) == Some(me)
}

/// Windows: whether the pipe's owner is this process's user. Only the user who created a
/// pipe (or a privileged process) can make a SID its owner, so another user's pipe shows
/// that user's SID. Unknown counts as another.
#[cfg(windows)]
pub(super) fn same_user(socket: &LocalSocket) -> bool {
    let owner = crate::sys::peer_sid(socket.as_stream());
    matches!((owner, crate::sys::current_user()), (Some(o), Ok(me)) if o == me)
}
