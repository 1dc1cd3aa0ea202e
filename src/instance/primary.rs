//! [`Primary`]: the running primary instance and the stream of requests it hands the app
//! (served by its loop, `serve`, on Unix; what it shares with its threads is in
//! `context`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::context::{Context, Event};
use super::launch::far_deadline;

use super::location::Location;
use super::lock::LockFile;
use super::serve;
use super::{Request, Scope, SingleInstance, MAX_READERS, MAX_REQUEST_DEADLINE};
use crate::{LocalServer, Result, SocketOptions};

/// What a receive call found in the queue.
pub(super) enum Taken {
    Request(Box<Request>),
    /// An abandoned request, dropped: look again.
    Again,
    /// Stopped, or the queue is gone.
    End,
    Empty,
}

/// The running primary instance. It serves launches until dropped or
/// [released](Self::release); then its socket is removed and its lock freed, in that
/// order.
///
/// On Unix it serves its socket from the app's own thread while that thread waits in
/// [`recv`](Self::recv) or [`requests`](Self::requests) ([`try_recv`](Self::try_recv):
/// one turn that does not wait), or from one thread of its own once a
/// [waker](Self::set_waker) is set or `recv_async` is called. Until then launches wait in
/// the socket's backlog (one that finds it full retries until its timeout), as they wait
/// for any app that has not reached its event loop yet: call one of these as soon as the
/// app can take requests. Windows serves from an accept thread that the first of these
/// calls (or [`on_request`](Self::on_request)) starts; until then launches wait for a free
/// pipe instance.
///
/// ```
/// use solo_instance::{Reply, SingleInstance, Start};
/// # let dir = std::env::temp_dir().join(format!("doc-primary-{}", std::process::id()));
/// let app = || SingleInstance::new("org.example.Player").unwrap().directory(&dir);
/// let Start::Primary(primary) = app().start()? else { unreachable!() };
/// let stopper = primary.stopper(); // e.g. for a quit action on another thread
///
/// let launch = app().argv(["player", "song.ogg"]);
/// let launcher = std::thread::spawn(move || launch.send());
/// // A GUI would call try_recv() when its waker fires; a tool can block.
/// for request in primary.requests() {
///     request.reply(Reply::exit(0))?;
///     stopper.stop(); // ends requests()
/// }
/// assert_eq!(launcher.join().unwrap()?.exit_code(), 0);
/// primary.release(); // socket closed, then the lock freed: a new launch may be primary
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Primary {
    /// Unix: the server that bound the socket (the loop accepts on it); locked only to
    /// close. Boxed: a `Primary` is a variant of [`Start`](super::Start), whose other
    /// variant is small.
    pub(super) server: Box<Mutex<LocalServer>>,
    /// The lock, until the loop holds it (to take a fresh one should a cleaner remove its
    /// file).
    pub(super) lock: Option<LockFile>,
    pub(super) lock_path: PathBuf,
    pub(super) rx: Receiver<Event>,
    pub(super) ctx: Arc<Context>,
    pub(super) socket: PathBuf,
    /// Windows, outside the System scope: the file that publishes the pipe's name, withdrawn
    /// before the lock is let go.
    #[cfg(windows)]
    pub(super) published: Option<PathBuf>,
    pub(super) app_id: String,
    /// The D-Bus name and object, released before the lock.
    #[cfg(feature = "dbus")]
    pub(super) dbus: super::dbus::Dbus,
    /// Linux: children forked without exec get no copy of the listening socket (see
    /// `sys::ForkGuard`): one never keeps an abstract name bound (the System scope), nor
    /// a socket that no longer answers after the primary was killed.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(super) fork_guard: Option<crate::sys::ForkGuard>,
}

impl fmt::Debug for Primary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Primary").field("app_id", &self.app_id).field("socket", &self.socket).finish()
    }
}

/// Whether a [`Primary`] is still the primary, and how it stays reachable when a cleaner
/// removes its files: see [`Primary::health`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Its directory is watched (inotify on Linux; a kqueue on macOS, where this is
    /// unproven: written and built, never run by the crate's tests): a socket file, lock
    /// file or directory
    /// removed under the running primary is put back at once (the directory 0700, a fresh
    /// lock, then the socket), so launches keep reaching it. The watch is set 100 ms after
    /// the start. The System scope on Linux (an abstract name, which nothing removes)
    /// watches its lock file in `/tmp` itself instead, from the first turn: removed or
    /// replaced, a fresh one is locked at once, so a launch in another network namespace
    /// still finds it held.
    Watched,
    /// No watch could be set (the text says why: most often the user's inotify instances
    /// are used up, `/proc/sys/fs/inotify/max_user_instances`): the files are looked at
    /// every second while the primary serves instead (a removed socket is bound again
    /// within a second, and launches wait for it within their timeout), and the watch is
    /// tried again each time. The primary then wakes once a second while idle.
    Checked(String),
    /// Nothing is watched: Windows' pipes cannot be removed, and the BSDs have no watch (a
    /// removed socket leaves launches failing with `NoReply` until the primary exits).
    Unwatched,
    /// Not the primary any more (the text says why): its files were removed and another
    /// process locked a fresh lock file first (for the System scope on Linux: a launch in
    /// another network namespace, which held it for good), or they could not be put back. It serves
    /// nothing more: the receive calls return `None`, and the launches it held (queued
    /// for the app too) were told to start over, so they reach the new primary. A request
    /// the app holds may still be answered. Drop it; nothing else of it is of use.
    SteppedDown(String),
}

/// Makes a [`Primary`]'s blocking receive calls return, from any thread (a signal
/// handler thread, a GUI's quit action).
#[derive(Clone)]
pub struct Stopper(Arc<Context>);

/// A primary whose requests go to a callback; see [`Primary::on_request`].
#[derive(Debug)]
pub struct CallbackPrimary {
    pub(super) stopper: Stopper,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for CallbackPrimary {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stopper")
    }
}

impl Stopper {
    /// Ends [`Primary::requests`] and wakes [`Primary::recv`] with `None`.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        // A full queue needs no wake-up: the receiver is busy and sees the flag next.
        let _ = self.0.tx.try_send(Event::Stop);
        // A thread waiting in the primary's loop (`recv` on Unix) returns.
        self.0.wake_loop();
        #[cfg(feature = "tokio")]
        self.0.notify.notify_waiters();
    }
}

impl Primary {
    /// Becomes the primary, with the lock held (`lock`). An abstract name (the System scope
    /// on Linux) may be taken still, by a primary that holds no lock (an older version):
    /// then `AddressInUse` means that one runs.
    pub(super) fn serve(
        config: &SingleInstance,
        loc: Location,
        mut lock: Option<LockFile>,
    ) -> Result<Primary> {
        // An abstract name (the System scope on Linux) has no file to remove, and its lock
        // file, in `/tmp`, gets no pid.
        if let Some(lock) = lock.as_mut().filter(|_| !loc.abstract_ns) {
            lock.write_pid();
            // We hold the lock and nothing answers there: any socket file is a dead primary's.
            LocalServer::remove_server(&loc.socket.to_string_lossy())
                .map_err(|e| crate::PathError::wrap("cannot remove the stale socket", &loc.socket, e))?;
        }
        let mut server = LocalServer::new();
        let system = config.scope == Scope::System;
        let options = if loc.abstract_ns {
            SocketOptions::ABSTRACT_NAMESPACE
        } else if system {
            SocketOptions::WORLD_ACCESS
        } else {
            SocketOptions::USER_ACCESS
        };
        server.set_socket_options(options);
        // Windows: others may connect to the System scope's pipe, but not add instances of
        // their own to it (Qt's OTHER_ACCESS would let them, and so receive launches).
        // Otherwise the pipe is this user's only, labelled at this process's integrity level
        // (no write up: a less trusted process cannot write to an elevated primary), under
        // a fresh random name that is published only once the pipe exists (`published.rs`).
        #[cfg(windows)]
        let (pipe_name, published, sddl) = if system {
            (loc.socket.clone(), None, crate::sys::shared_pipe_sddl()?)
        } else {
            (crate::sys::random_pipe_name()?, Some(loc.socket.clone()), crate::sys::private_pipe_sddl()?)
        };
        #[cfg(not(windows))]
        let pipe_name = loc.socket.clone();
        server.set_max_pending_connections(MAX_READERS);
        // Requests wait here for the app; past this many, launches are told to retry, so
        // a flood holds at most this many requests (each at most the message limit).
        let (tx, rx) = mpsc::sync_channel(64);
        let ctx = Arc::new(Context {
            closing: Arc::new(AtomicBool::new(false)),
            stopped: AtomicBool::new(false),
            // A launch writes its request as soon as it connects: a client that takes longer
            // than this is broken or hostile, and must not hold a reader for a whole timeout.
            timeout: config.timeout.min(MAX_REQUEST_DEADLINE),
            limit: config.max_message_size,
            check_uid: !system,
            owner: Mutex::new(crate::sys::Owner::current().ok()),
            mux: serve::Mux::new(&loc.socket, options, lock.as_ref().map(|_| loc.lock.as_path()), system)?,
            held: Arc::new(AtomicUsize::new(0)),
            waker: Mutex::new(None),
            #[cfg(feature = "tokio")]
            notify: tokio::sync::Notify::new(),
            tx,
            #[cfg(all(feature = "dbus", target_os = "linux"))]
            dbus_waiting: Mutex::new(Default::default()),
            #[cfg(feature = "dbus")]
            on_step_down: Mutex::new(None),
            streams: Default::default(),
        });
        // The primary's loop (`serve`) accepts on the listening end itself, from the first
        // time it runs. Unix: a socket the `LocalServer` binds (and the removal watch
        // binds again). Windows: the pipe's instances, made by the loop's listener
        // (overlapped, for its completion port) with the same security descriptor.
        #[cfg(unix)]
        let acceptor = {
            server.listen(&pipe_name.to_string_lossy())?;
            server.sys_listener().and_then(crate::sys::Acceptor::of_listener)
        };
        #[cfg(windows)]
        let acceptor = Some(crate::sys::Acceptor::bind(&pipe_name, &sddl).map_err(|e| {
            let (kind, text) = crate::sys::server_error(&e);
            crate::Error::socket(kind, format!("QLocalServer::listen: {text}"), Some(e))
        })?);
        ctx.mux.attach(acceptor, server.sys_listener().cloned(), lock.take())?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let fork_guard = server.sys_listener().and_then(|l| crate::sys::ForkGuard::new(l.fd()));
        #[cfg(windows)]
        if let Some(file) = &published {
            let level = crate::sys::own_integrity()?;
            super::published::publish(file, &pipe_name, level)
                .map_err(|e| crate::PathError::wrap("cannot publish the pipe's name in", file, e))?;
        }
        // D-Bus last: only a primary that serves its socket owns the name. Bounded in time:
        // the bus is set up on a thread of its own, and waited for at most 2 s.
        #[cfg(feature = "dbus")]
        let dbus = super::dbus::Dbus::start(config, &ctx);
        // Set before the loop first runs (the app's first receive call, or its waker).
        #[cfg(all(target_os = "linux", feature = "dbus"))]
        {
            *ctx.on_step_down.lock().unwrap_or_else(|p| p.into_inner()) = dbus.release_on_step_down();
        }
        Ok(Primary {
            server: Box::new(Mutex::new(server)),
            lock,
            lock_path: loc.lock,
            rx,
            ctx,
            socket: pipe_name,
            #[cfg(windows)]
            published,
            app_id: config.app_id.clone(),
            #[cfg(feature = "dbus")]
            dbus,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            fork_guard,
        })
    }

    /// The socket path (a pipe name on Windows) launches connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The lock file this primary holds (for the System scope on Linux, whose socket is an
    /// abstract name, the one in `/tmp`).
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Whether this is still the primary, and how it keeps its files in place; see
    /// [`Health`]. A primary whose receive calls return `None` without a
    /// [`Stopper`] having stopped it has [stepped down](Health::SteppedDown).
    pub fn health(&self) -> Health {
        self.ctx.mux.health()
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// A blocking iterator over requests; it ends when a [`Stopper`] stops it, or when
    /// the primary [steps down](Health::SteppedDown).
    pub fn requests(&self) -> impl Iterator<Item = Request> + '_ {
        std::iter::from_fn(move || self.recv())
    }

    /// Waits for the next request; `None` once a [`Stopper`] stopped the primary, or once
    /// it [stepped down](Health::SteppedDown) (see [`health`](Self::health)).
    ///
    /// On Unix, unless a [waker](Self::set_waker) is set, the waiting thread serves the
    /// socket itself meanwhile (it accepts, checks and reads the launches), as an event
    /// loop would: no thread of the crate's runs.
    ///
    /// Requests whose launch gave up while they waited (it timed out, or was killed) are
    /// dropped here, unseen; see [`Request::is_abandoned`].
    pub fn recv(&self) -> Option<Request> {
        self.recv_until(None)
    }

    /// Waits up to `timeout` for the next request (abandoned ones dropped, as by
    /// [`recv`](Self::recv)).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Request> {
        self.recv_until(Some(far_deadline(timeout)))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Option<Request> {
        // One turn of the loop at least, even with a deadline passed already: a
        // `recv_timeout(Duration::ZERO)` serves what is ready, as `try_recv` does.
        let mut turned = false;
        loop {
            if self.ctx.stopped.load(Ordering::SeqCst) {
                return None;
            }
            match self.try_take() {
                Taken::Request(r) => return Some(*r),
                Taken::Again => continue,
                Taken::End => return None,
                Taken::Empty => {}
            }
            if turned && deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            turned = true;
            // Serve on this thread until something happens; where a thread serves, wait
            // for what it queues.
            if Context::drive(&self.ctx, deadline) {
                continue;
            }
            let event = match deadline {
                None => self.rx.recv().map_err(|_| true),
                Some(d) => self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                    .map_err(|e| e == RecvTimeoutError::Disconnected),
            };
            match self.take(event) {
                Taken::Request(r) => return Some(*r),
                Taken::Again | Taken::Empty => continue,
                Taken::End => return None,
            }
        }
    }

    /// The app sleeps elsewhere from now on (its event loop, an async runtime): a thread
    /// serves the socket (the serve thread).
    pub(super) fn serving_from_a_thread(&self) {
        Context::start_driver(&self.ctx);
    }

    /// What the queue holds now, without waiting.
    pub(super) fn try_take(&self) -> Taken {
        self.take(self.rx.try_recv().map_err(|e| e == TryRecvError::Disconnected))
    }

    /// What a receive took from the queue (`Err(true)`: disconnected, `Err(false)`: empty).
    fn take(&self, event: std::result::Result<Event, bool>) -> Taken {
        if self.ctx.mux.stepped_down() {
            // Not the primary any more: what waits is handed over (each request dropped
            // tells its launch to start over, and it reaches the new primary).
            drop(event);
            while let Ok(event) = self.rx.try_recv() {
                drop(event);
            }
            return Taken::End;
        }
        // A slot is free: D-Bus calls waiting for one move in.
        #[cfg(all(feature = "dbus", target_os = "linux"))]
        if let Ok(Event::Request(_)) = &event {
            self.ctx.dbus_refill();
        }
        match event {
            Ok(Event::Request(r)) if r.is_abandoned() => Taken::Again,
            Ok(Event::Request(r)) => {
                // A version-2 launch learns that its request is taken.
                if let Some(remote) = &r.remote {
                    remote.taken(&self.ctx.streams);
                }
                Taken::Request(r)
            }
            Ok(Event::Stop) | Err(true) => Taken::End,
            Err(false) => Taken::Empty,
        }
    }

    /// The next request if one is waiting; never blocks. For GUI loops that poll on
    /// each frame or after a [waker](Self::set_waker) call. Abandoned requests are
    /// dropped, as by [`recv`](Self::recv). On Unix, without a waker, it first serves
    /// what is ready on the socket (one turn that does not wait).
    pub fn try_recv(&self) -> Option<Request> {
        let mut served = false;
        loop {
            match self.try_take() {
                Taken::Request(r) => return Some(*r),
                Taken::Again => continue,
                Taken::End => return None,
                Taken::Empty if served => return None,
                Taken::Empty => {}
            }
            served = true;
            if self.ctx.waker.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                // The waker's thread failed to start: try again.
                Context::start_driver(&self.ctx);
            }
            if !Context::drive(&self.ctx, Some(Instant::now())) {
                return None;
            }
        }
    }

    /// Calls `waker` (from one of the primary's threads) each time a request is ready to
    /// be received: hand it a GUI event loop's wake-up (such as winit's
    /// `EventLoopProxy::send_event`) and call [`try_recv`](Self::try_recv) when woken.
    /// Drain with `try_recv` once after setting it, too: a request queued before (a D-Bus
    /// activation that started the app, with the `dbus` feature) is not announced again.
    ///
    /// The waker must not block: in particular it must not wait for a lock that the
    /// thread dropping the `Primary` holds, since dropping waits for the thread that calls
    /// the waker (on Unix the serve thread that `set_waker` starts; on Windows the accept
    /// thread). The waker itself may drop the primary (one it owns, say behind a mutex).
    pub fn set_waker(&self, waker: impl Fn() + Send + Sync + 'static) {
        *self.ctx.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(waker));
        // The app sleeps in its own event loop from now on.
        self.serving_from_a_thread();
    }

    /// Delivers each request to `callback` on a thread of its own, which owns the
    /// primary from now on. Dropping the returned handle stops that thread and releases
    /// the primary.
    pub fn on_request(self, mut callback: impl FnMut(Request) + Send + 'static) -> CallbackPrimary {
        let stopper = self.stopper();
        // It serves the socket (Unix): started with the app's signals blocked, as the
        // crate's other threads.
        let thread = std::thread::Builder::new().name("solo-instance callback".into());
        let thread = crate::sys::with_signals_blocked(|| {
            thread.spawn(move || {
                for request in self.requests() {
                    callback(request);
                }
            })
        })
        .expect("failed to spawn the primary's callback thread");
        CallbackPrimary { stopper, thread: Some(thread) }
    }

    /// Tests: makes this primary take itself for `sid`.
    #[cfg(all(test, windows))]
    pub(crate) fn pretend_user(&self, sid: Option<crate::Sid>) {
        let mut owner = self.ctx.owner.lock().unwrap();
        if let Some(o) = owner.as_mut() {
            o.user = sid.unwrap_or_else(|| crate::sys::current_user().unwrap());
        }
    }

    /// Tests: makes this primary take its integrity level for `level`.
    #[cfg(all(test, windows))]
    pub(crate) fn pretend_integrity(&self, level: Option<u32>) {
        let mut owner = self.ctx.owner.lock().unwrap();
        if let Some(o) = owner.as_mut() {
            o.integrity = level.unwrap_or_else(|| crate::sys::own_integrity().unwrap());
        }
    }

    /// A handle that makes the blocking receive calls return.
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.ctx))
    }

    /// Gives up being the primary now: the socket is closed and removed, then the lock
    /// is freed, so a new launch (such as this app restarting itself) becomes the
    /// primary. Requests not yet answered tell their launches to start over.
    ///
    /// A child forked without exec (which shares every descriptor) does not keep the
    /// primacy: the socket is shut down and the lock unlocked, for every process that
    /// holds them; on Linux such a child holds neither the lock nor a listening socket at
    /// all (`pthread_atfork` swaps them for an unbound socket in it; see the README).
    pub fn release(self) {
        drop(self)
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.ctx.closing.store(true, Ordering::SeqCst);
        self.ctx.shutdown();
        // Socket first, lock last: only the lock holder ever removes the socket.
        let server = self.server.get_mut().unwrap_or_else(|p| p.into_inner());
        // A child forked without exec shares the listening socket: shut down, it refuses
        // connections there too, and what waited in its backlog starts over.
        if let Some(listener) = server.sys_listener() {
            listener.shut_down();
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        drop(self.fork_guard.take());
        server.close();
        // Unanswered requests: launches are told to start over, D-Bus calls are handed to
        // the successor (once the name is released).
        while let Ok(event) = self.rx.try_recv() {
            drop(event);
        }
        // Launches waiting for a request the app took end their wait now.
        self.ctx.streams.cut_off();
        #[cfg(all(feature = "dbus", target_os = "linux"))]
        self.ctx.dbus_waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
        // The D-Bus name goes with the lock, before it (at most 0.5 s: a frozen bus does not
        // hold the lock): a successor can take both.
        #[cfg(feature = "dbus")]
        self.dbus.stop();
        #[cfg(windows)]
        if let Some(file) = &self.published {
            super::published::withdraw(file, &self.socket);
        }
        let mut lock = self.ctx.mux.take_lock().or_else(|| self.lock.take());
        // An accepted replace: launches that find the lock free wait for the new primary.
        if let (Some(lock), Some(pid)) = (lock.as_mut(), self.ctx.streams.handover()) {
            lock.write_handover(pid);
        }
        drop(lock);
        drop(self.lock.take());
        // Then the replies still open are written, and handed-off calls forwarded.
        #[cfg(feature = "dbus")]
        self.dbus.finish();
    }
}
