//! Keeping the primary reachable (Linux; macOS unproven): its socket file, its lock file
//! and their directory may be removed under it (a cleaner of `$XDG_RUNTIME_DIR` or
//! `/tmp`, a logout script's `rm -rf "$XDG_RUNTIME_DIR"; mkdir "$XDG_RUNTIME_DIR"`). A
//! watch on the directory reports it (`sys::watch`: inotify; a kqueue on macOS, written,
//! never run here); the primary then puts back what is missing: the directory (0700, this user's),
//! a lock on a fresh lock file, then its socket, in that order (the lock decides, as at
//! the start). If another process took the fresh lock first and is the primary now, this
//! one steps down: it stops serving, its launches start over (and reach the new
//! primary), its request stream ends and [`Health::SteppedDown`] says why.
//!
//! Linux's System scope has no directory of its own and no socket file (an abstract name,
//! which nothing removes), but its lock file, `/tmp/solo-instance-system@<app_id>.lock`,
//! decides across network namespaces and may be removed too (by its creator, root or a
//! tmp cleaner): a launch in another network namespace would lock a fresh one and be a
//! second primary. So there the lock file itself is watched (inotify: `IN_ATTRIB` as its
//! link count drops, `IN_MOVE_SELF`, `IN_DELETE_SELF`), never `/tmp`, whose every removal
//! would wake the primary; when the name no longer gives the locked file, a fresh one is
//! locked (0644, or another user's opened read-only), as above. A launch in this network
//! namespace holds that fresh lock only for a moment (it finds the name bound and lets
//! go); one that holds it through the waits up to [`MAX_RETRY`] is a primary in another
//! network namespace, and this one steps down.
//!
//! Without a watch (the user's inotify instances or watches used up), the files are
//! looked at every [`CHECK_PERIOD`] while the loop runs instead, and
//! [`Health::Checked`] says so; the watch is tried again each time.
//!
//! The watch is set [`WATCH_DELAY`] after the start (the files are checked then too):
//! closing an inotify descriptor that has a watch waits for an RCU grace period, 1.5 to
//! 14 ms on a busy machine, and a process pays it at exit; a primary that lives less than
//! that delay (`solo run APP --count 0`, an app that forwards and quits) never pays it.
//! The System scope's lock file is watched from the first turn on, though, and its
//! primary pays that at exit: until the watch is set, a launch in another network
//! namespace could lock a fresh file and be a second primary (in the User and Session
//! scopes such a launch finds the socket answering and forwards).

use std::io;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::inbox::Event;
use super::super::launch::socket_is_live;
use super::super::location::Location;
use super::super::lock::LockFile;
use super::super::Health;
use super::Context;
use super::{Mux, State};
use crate::sys::file_id;
pub(super) use crate::sys::watch::{concerns_us, Watch};
use crate::sys::watch::{new_watch, rewatch, rewatch_file};
use crate::LocalServer;

/// How long after the start the removal watch is set (see the module docs): one wake-up,
/// then none while idle.
pub(super) const WATCH_DELAY: Duration = Duration::from_millis(100);

/// How long after a removal the files are looked at: a cleaner's `rm -rf dir` of a few
/// dozen entries has finished by then, so the primary does not make the directory
/// non-empty under it, and its `mkdir` finds the name free; and a launch that comes
/// meanwhile, finding no socket, becomes the primary (and this one steps down) only in
/// that short time. (A slower `rm -rf` fails with "Directory not empty": the primary's
/// new lock file and socket stay, in the directory that stays.)
const SETTLE: Duration = Duration::from_millis(2);

/// Without a watch: how often the files are looked at while the loop runs.
const CHECK_PERIOD: Duration = Duration::from_secs(1);

/// The longest wait before looking again while a launch holds a fresh lock file for a
/// moment (it checks that this primary's socket answers, then lets the lock go).
const MAX_RETRY: Duration = Duration::from_secs(1);

fn dir_of(socket: &Path) -> &Path {
    socket.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Drops a watch that poll(2) reports as unusable (`POLLERR`, `POLLNVAL`): the files are
/// looked at every [`CHECK_PERIOD`] instead, as without a watch, and without trying one
/// again (it would fail the same way).
pub(super) fn unusable(ctx: &Arc<Context>, st: &mut State) {
    st.watch = None;
    st.watch_failed = true;
    ctx.mux.set_health(Health::Checked("poll(2) cannot wait on the directory's watch".into()));
    st.check_at = Some(Instant::now() + CHECK_PERIOD);
}

/// Looks at the files soon (after [`SETTLE`]): an event concerned them.
pub(super) fn check_soon(st: &mut State) {
    let at = Instant::now() + SETTLE;
    st.check_at = Some(st.check_at.map_or(at, |t| t.min(at)));
}

/// The watch's first setting, [`WATCH_DELAY`] after the start (at the first turn for the
/// System scope's lock file): then the files are looked
/// at, since they may have gone before it.
pub(super) fn start(ctx: &Arc<Context>, st: &mut State) {
    st.watch_at = None;
    st.check_at = Some(Instant::now());
    upkeep(ctx, st);
}

/// Puts back what was removed of the directory, the lock file and the socket, or steps
/// down (see the module docs).
pub(super) fn upkeep(ctx: &Arc<Context>, st: &mut State) {
    let mux = &ctx.mux;
    st.check_at = None;
    if ctx.inbox.closing.load(Ordering::SeqCst) || mux.stepped_down() {
        return;
    }
    let Some(lock_path) = mux.lock_path.clone() else { return };
    if mux.lock_only {
        return upkeep_lock_file(ctx, st, &lock_path);
    }
    let dir = dir_of(&mux.socket);
    // The directory, made again if missing (this user's, 0700).
    let dir_id = match crate::sys::repair_dir(dir, mux.shared) {
        Ok(Some(id)) => id,
        // Removed again as it was made (a cleaner striking twice): look again soon.
        Ok(None) => return retry_soon(st),
        Err(why) => return step_down(ctx, st, why),
    };
    // The lock file's, if the socket had to go elsewhere (a path too long for
    // `sun_path`): not watched, but made again too before a fresh lock is taken there.
    let lock_dir = dir_of(&lock_path);
    if lock_dir != dir {
        match crate::sys::repair_dir(lock_dir, mux.shared) {
            Ok(Some(_)) => {}
            Ok(None) => return retry_soon(st),
            Err(why) => return step_down(ctx, st, why),
        }
    }
    // The watch, on the directory the name now gives; without one, the next look is a
    // period away (and the watch is tried again then).
    match set_watch(st, |w| rewatch(w, dir, dir_id)) {
        Ok(()) => mux.set_health(Health::Watched),
        // The directory removed again as the watch was set (a cleaner striking twice):
        // not a lack of watches; look again soon.
        Err(None) => return retry_soon(st),
        Err(_) if file_id(dir).ok() != Some(dir_id) => return retry_soon(st),
        Err(Some(why)) => {
            mux.set_health(Health::Checked(why));
            st.check_at = Some(Instant::now() + CHECK_PERIOD);
        }
    }
    // The lock first: it decides who is the primary.
    if relock(ctx, st, &lock_path).is_break() {
        return;
    }
    // Then the socket.
    if !socket_is_ours(st, &mux.socket) {
        match put_socket_back(mux, st, &lock_path) {
            Ok(()) => st.retry = Duration::ZERO,
            Err(Fail::Again) => return retry_soon(st),
            Err(Fail::StepDown(why)) => return step_down(ctx, st, why),
        }
    }
    // All of it where the watch is: a directory replaced since it was looked at (a
    // cleaner striking again; the watch may even sit on the removed one, should the
    // removal have raced with setting it, and then never report anything) is looked at
    // again soon.
    if file_id(dir).ok() != Some(dir_id) {
        retry_soon(st);
    }
}

/// Linux's System scope (see the module docs): a fresh lock if the lock file was removed,
/// then the watch on the file locked.
fn upkeep_lock_file(ctx: &Arc<Context>, st: &mut State, lock_path: &Path) {
    if relock(ctx, st, lock_path).is_break() {
        return;
    }
    let Some(id) = st.lock.as_ref().and_then(|l| l.file_id().ok()) else { return retry_soon(st) };
    match set_watch(st, |w| rewatch_file(w, lock_path, id)) {
        Ok(()) => ctx.mux.set_health(Health::Watched),
        // Removed again as the watch was set: look again soon.
        Err(None) => return retry_soon(st),
        Err(_) if file_id(lock_path).ok() != Some(id) => return retry_soon(st),
        Err(Some(why)) => {
            ctx.mux.set_health(Health::Checked(why));
            st.check_at = Some(Instant::now() + CHECK_PERIOD);
        }
    }
    // Removed again before the watch was on it (which may then sit on another file):
    // look again soon.
    if file_id(lock_path).ok() != Some(id) {
        retry_soon(st);
    }
}

/// Takes the watch (a new one if there is none) and points it with `point`; kept only if
/// that worked.
/// `Err(None)`: what it was to watch is gone (removed again).
fn set_watch(
    st: &mut State,
    point: impl FnOnce(&mut Watch) -> Result<(), Option<String>>,
) -> Result<(), Option<String>> {
    let mut w = match st.watch.take() {
        Some(w) => w,
        None if st.watch_failed => return Err(Some("poll(2) cannot wait on the watch".into())),
        None => new_watch().map_err(Some)?,
    };
    point(&mut w)?;
    st.watch = Some(w);
    Ok(())
}

/// Locks a fresh lock file if the one held is no longer at its name (removed, replaced).
/// `Break`: not now; a look soon is due, or the primary stepped down.
fn relock(ctx: &Arc<Context>, st: &mut State, lock_path: &Path) -> ControlFlow<()> {
    let mux = &ctx.mux;
    let held = st.lock.as_ref().and_then(|l| l.file_id().ok());
    if held.is_some() && held == file_id(lock_path).ok() {
        return ControlFlow::Continue(());
    }
    match LockFile::try_lock(lock_path, mux.shared) {
        Ok(Some(mut lock)) => {
            // Not into the System scope's, in `/tmp` (as at the start).
            if !mux.lock_only {
                lock.write_pid();
            }
            // The old one, on a removed file, is let go.
            st.lock = Some(lock);
            st.retry = Duration::ZERO;
            ControlFlow::Continue(())
        }
        // Another process holds the fresh lock file. A launch does so for a moment, while
        // it checks that this primary's socket answers: look again soon. Otherwise that
        // process is the primary now.
        Ok(None) if launch_may_hold(mux, st) => {
            retry_soon(st);
            ControlFlow::Break(())
        }
        Ok(None) => {
            let why = format!(
                "the lock file {} was removed, and another process locked a new one first: it is the \
                 primary now{}",
                lock_path.display(),
                if mux.lock_only {
                    " (in another network namespace, where this one's abstract name does not reach)"
                } else {
                    ""
                }
            );
            step_down(ctx, st, why);
            ControlFlow::Break(())
        }
        // Out of descriptors or memory for a moment (the app's own load): try again.
        Err(e) if transient(&e) => {
            retry_soon(st);
            ControlFlow::Break(())
        }
        Err(e) => {
            step_down(ctx, st, format!("the lock file {} could not be made again: {e}", lock_path.display()));
            ControlFlow::Break(())
        }
    }
}

/// Whether the process holding the fresh lock file may be a launch checking that this
/// primary answers, rather than another primary. With a socket file: while that file is
/// ours (a launch that finds it answering lets go). With an abstract name (nothing
/// removes it): a launch in this network namespace finds it bound and lets go at once,
/// while one in another namespace, where it does not reach, is a primary there and holds
/// the lock for good: held through the doubling waits up to [`MAX_RETRY`] (about two
/// seconds in all), it is that.
fn launch_may_hold(mux: &Mux, st: &State) -> bool {
    if mux.lock_only {
        st.retry < MAX_RETRY
    } else {
        socket_is_ours(st, &mux.socket)
    }
}

/// Why the socket could not be put back.
enum Fail {
    /// For a moment (descriptors, memory, the directory removed again): look again soon.
    Again,
    StepDown(String),
}

/// Binds the socket again at its name, unless another process serves it there.
fn put_socket_back(mux: &Mux, st: &mut State, lock_path: &Path) -> Result<(), Fail> {
    if file_id(&mux.socket).is_ok() {
        // Another file at the name: one that answers is another primary's, never removed.
        let loc = Location { lock: lock_path.to_owned(), socket: mux.socket.clone(), abstract_ns: false };
        if socket_is_live(&loc, Instant::now() + Duration::from_millis(200)) {
            return Err(Fail::StepDown(format!(
                "another process serves the socket {}",
                mux.socket.display()
            )));
        }
        let _ = crate::sys::remove_server(&mux.socket);
    }
    match bind_again(mux, st) {
        Ok(()) => Ok(()),
        Err(e) if transient(&e) => Err(Fail::Again),
        Err(e) => {
            Err(Fail::StepDown(format!("the socket {} could not be bound again: {e}", mux.socket.display())))
        }
    }
}

/// Looks at the files again after a wait that doubles each time, from [`SETTLE`] up to
/// [`MAX_RETRY`].
fn retry_soon(st: &mut State) {
    st.retry = (st.retry * 2).clamp(SETTLE, MAX_RETRY);
    let at = Instant::now() + st.retry;
    st.check_at = Some(st.check_at.map_or(at, |t| t.min(at)));
}

/// Whether `e` (or an error it wraps) passes, and is not a reason to step down: the
/// system's lack of descriptors or memory, or a file or directory not found (ENOENT: the
/// directory, just made or checked, was removed again by a cleaner that struck twice, or
/// the lock file as it was opened; the next look makes them again).
fn transient(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::OutOfMemory
                || io.kind() == io::ErrorKind::NotFound
                || crate::sys::watch::is_out_of_resources(io)
            {
                return true;
            }
            // An io::Error's source skips its own payload: look into that too.
            if let Some(inner) = io.get_ref() {
                if transient(inner) {
                    return true;
                }
            }
        }
        cause = e.source();
    }
    false
}

/// Whether the file at `socket` is the one this primary listens on.
fn socket_is_ours(st: &State, socket: &Path) -> bool {
    let current = match &st.replacement {
        Some(server) => server.sys_listener().and_then(|l| l.file_id()),
        None => st.listener.as_ref().and_then(|l| l.file_id()),
    };
    current.is_some() && current == file_id(socket).ok()
}

/// Binds the socket again; the new listener joins the loop's poll set (the old one,
/// unreachable now, stays in it until the end: what waits in its backlog is still
/// served).
fn bind_again(mux: &Mux, st: &mut State) -> crate::Result<()> {
    let mut server = LocalServer::new();
    server.set_socket_options(mux.options);
    server.listen(&mux.socket.to_string_lossy())?;
    // The one it replaces (removed as well) goes, its fork guard first.
    st.replacement_guard = None;
    st.replacement = Some(server);
    st.replacement_guard =
        st.replacement.as_ref().and_then(|s| s.sys_listener()).and_then(|l| crate::sys::fork_guard(l));
    Ok(())
}

/// Stops being the primary: launches held start over (they reach the new primary), the
/// sockets stop listening, the lock goes, and the app's receive calls end.
fn step_down(ctx: &Arc<Context>, st: &mut State, why: String) {
    let mux = &ctx.mux;
    // Requests dropped from now on (queued, or refused as they arrive) tell their
    // launches to start over.
    ctx.inbox.closing.store(true, Ordering::SeqCst);
    mux.set_health(Health::SteppedDown(why));
    // The bus name goes with the primacy (with `dbus`).
    #[cfg(feature = "dbus")]
    if let Some(release) = ctx.on_step_down.lock().unwrap_or_else(|p| p.into_inner()).take() {
        release();
    }
    if let Some(l) = &st.listener {
        l.shut_down();
        l.remove_own_file();
    }
    mux.close_all(st);
    st.watch = None;
    st.watch_at = None;
    st.check_at = None;
    drop(st.lock.take());
    // Wake whoever waits for requests: they find the stream ended.
    let _ = ctx.inbox.tx.try_send(Event::Stop);
    ctx.inbox.announce();
}
