//! The launch: find the primary through the lock and the socket, hand it this launch's
//! request and wait for its reply (one hand-over is `forward.rs`), or become the primary.

use std::io;
use std::time::{Duration, Instant};

use super::location::Location;
use super::lock::{lock_cannot_exist, LockFile};
use super::published;
use super::{Primary, Scope, SingleInstance, Start};
use crate::protocol::frame;
use crate::{ConnectOptions, Error, LocalSocketError, Result, SocketOptions};

impl SingleInstance {
    pub(super) fn run(mut self, may_become_primary: bool) -> Result<Start> {
        // The timeout counts from here: everything below, connects included, fits in it.
        let deadline = far_deadline(self.timeout);
        // The directory is checked before anything is connected to: the peer check proves
        // only that a socket is served by this user, not that it is this app's primary. A
        // name in a directory others can write to may be a symlink or hard link to any
        // other service of this user's (any root daemon's, for root), which would be sent
        // the request (test `launch_writes_nothing_through_an_unsafe_directory`).
        let mut loc = self.located(deadline)?;
        // Built when first needed: a launch that becomes the primary sends nothing.
        let mut line = RequestLine::new(self.argv.take());
        let mut backoff = Duration::from_micros(200);
        // System scope on Linux: the last look found the lock held, and the name not
        // answering (see below).
        let mut held_elsewhere = false;
        // Why the last pipe this launch found was not its primary (Windows: another user's,
        // a less trusted process's), told at the deadline if nothing better answered.
        let mut refused = None;
        loop {
            // The process the last primary handed over to, when this look finds the lock
            // free and that process not serving yet (a replace in progress).
            let mut handing_over = None;
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
            // too large to send is refused once a primary answers, before it is sent.
            let forwarded_first = !loc.abstract_ns;
            if forwarded_first {
                if let Some(reply) = self.forward_any(&loc, &mut line, deadline, &mut refused)? {
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
                // alive, and is never taken over.
                // A primary that handed over (a replace) leaves the lock to the launch it
                // handed over to.
                handing_over = super::handover::pending(&lock, self.scope);
                if handing_over.is_none() && !socket_is_live(&loc, deadline) {
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
            if let Some(e) = line.too_large(&self) {
                // A primary runs and would refuse it: say so now rather than after a round trip.
                return Err(e);
            }
            let forwarded = if forwarded_first {
                // Asked already this turn; the primary is coming up or going away.
                Ok(None)
            } else {
                self.forward_any(&loc, &mut line, deadline, &mut refused)
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
                // Nobody holds the lock: the primary went, and the process it handed over to
                // has not taken it.
                if let Some(to) = handing_over {
                    return Err(Error::HandedOver { to, waited: self.timeout });
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
}

/// The launch's request line with its newline, built when first needed: a launch that
/// becomes the primary reads neither its working directory nor its environment for it.
/// In both versions: version 2 first, version 1 (made from it) for an older primary.
pub(super) struct RequestLine {
    /// The builder's argv, moved into the request when it is built.
    argv: Option<Vec<std::ffi::OsString>>,
    /// The version-2 line and its newline, and the length of its start the version-1 line
    /// shares (`None`: the line is the same in both versions).
    v2: Option<(Vec<u8>, Option<usize>)>,
    /// The version-1 line and its newline, made from the version-2 one when first needed.
    v1: Option<Vec<u8>>,
}

impl RequestLine {
    pub(super) fn new(argv: Option<Vec<std::ffi::OsString>>) -> Self {
        RequestLine { argv, v2: None, v1: None }
    }

    fn v2(&mut self, instance: &SingleInstance) -> &(Vec<u8>, Option<usize>) {
        let argv = &mut self.argv;
        self.v2.get_or_insert_with(|| {
            let mut line = instance.message(argv.take()).encode();
            let shared = frame::request_line(&mut line, instance.remote.ask());
            let mut line = line.into_bytes();
            line.push(b'\n');
            (line, shared)
        })
    }

    /// The line of protocol `version` (1 or 2) and its newline, built now if it was not.
    pub(super) fn get(&mut self, instance: &SingleInstance, version: u64) -> &[u8] {
        if version == frame::STREAM_VERSION {
            return &self.v2(instance).0;
        }
        if self.v1.is_none() {
            let (v2, shared) = self.v2(instance);
            let v1 = match *shared {
                Some(n) => [&v2[..n], frame::V1_END.as_bytes(), b"\n"].concat(),
                None => v2.clone(),
            };
            self.v1 = Some(v1);
        }
        self.v1.as_deref().unwrap_or_default()
    }

    /// Why the request cannot be sent: longer than the message limit (in version 2, the
    /// longer line).
    pub(super) fn too_large(&mut self, instance: &SingleInstance) -> Option<Error> {
        let len = self.v2(instance).0.len() - 1;
        (len > instance.max_message_size).then(|| {
            Error::Protocol(
                format!("message too large ({len} bytes, limit {} bytes)", instance.max_message_size).into(),
            )
        })
    }
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
    if !loc.abstract_ns && crate::sys::server_file_gone(&loc.socket) {
        return false;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let options =
        connect_options(loc).timeout(Some(left.clamp(Duration::from_millis(1), Duration::from_millis(200))));
    // Where a file publishes the name (Windows, outside the System scope): the published
    // pipe, and only if it is this user's primary: another user's pipe at an old name, or
    // one that never frees an instance, is no reason not to become the primary. Taking
    // over cannot hurt a live pipe here: the new primary creates a new name, and with the
    // lock free (it cannot be deleted while held) no primary of ours runs.
    if let Some(file) = published::file(&loc.socket) {
        let Some(p) = published::read(file) else { return false };
        return match options.connect(&p.name.to_string_lossy()) {
            Ok(s) => !matches!(crate::sys::check_primary(&s), crate::sys::ServerCheck::Stranger(_)),
            // Refused: another user's pipe, unless our primary runs elevated above us.
            Err(e) if e.socket_error() == Some(LocalSocketError::SocketAccess) => {
                crate::sys::elevated_above_us(p.integrity)
            }
            Err(_) => false,
        };
    }
    match options.connect(&loc.socket.to_string_lossy()) {
        Ok(_) => true,
        Err(e) => !is_dead(&e),
    }
}

/// Whether `e` is a file or directory that vanished, or appeared, under the launch (a
/// cleaner's `rm -rf dir; mkdir dir` at that moment): worth another look.
fn vanished(e: &Error) -> bool {
    matches!(e, Error::Io(io) if matches!(io.kind(), io::ErrorKind::NotFound | io::ErrorKind::AlreadyExists))
}

/// Whether a failed connect proves nobody serves the name: refused, or nothing there.
pub(super) fn is_dead(e: &Error) -> bool {
    matches!(e.socket_error(), Some(LocalSocketError::ServerNotFound | LocalSocketError::ConnectionRefused))
}

/// How to connect to the location's socket.
pub(super) fn connect_options(loc: &Location) -> ConnectOptions {
    let options = ConnectOptions::new();
    // On Unix the launch waits with poll(2) (`transport::read_line`, `sys::write_all_until`).
    let options = crate::sys::launch_options(options);
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
