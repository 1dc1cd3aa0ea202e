//! [`Primary`]: the running primary instance and the stream of requests it hands the app
//! (served by its loop, `serve`, on Unix; what it shares with its threads is in
//! `context`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use super::inbox::{Event, Inbox};
use super::serve::Context;
pub use super::serve::Health;

use super::location::Location;
use super::lock::LockFile;
use super::serve;
use super::{Request, Scope, SingleInstance, MAX_REQUEST_DEADLINE};
use crate::{LocalServer, Result, SocketOptions};

/// The running primary instance. It serves launches until dropped or
/// [released](Self::release); then its socket is removed and its lock freed, in that
/// order.
///
/// It serves its socket (a named pipe on Windows) from the app's own thread while that
/// thread waits in [`recv`](Self::recv) or [`requests`](Self::requests)
/// ([`try_recv`](Self::try_recv): one turn that does not wait), or from one thread of its
/// own once a [waker](Self::set_waker) is set or `recv_async` is called. Until then
/// launches wait in the socket's backlog, or for the pipe instance that listens (one that
/// waits too long retries until its timeout), as they wait for any app that has not
/// reached its event loop yet: call one of these as soon as the app can take requests.
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
    /// The file that publishes the pipe's name (Windows, outside the System scope; see
    /// `sys::published`), withdrawn before the lock is let go.
    pub(super) published: Option<PathBuf>,
    pub(super) app_id: String,
    /// The D-Bus name and object, released before the lock.
    #[cfg(feature = "dbus")]
    pub(super) dbus: super::dbus::Dbus,
    /// Children forked without exec get no copy of the listening socket (see
    /// `sys::ForkGuard`, Linux): one never keeps an abstract name bound (the System scope),
    /// nor a socket that no longer answers after the primary was killed.
    pub(super) fork_guard: Option<crate::sys::ForkGuard>,
}

impl fmt::Debug for Primary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Primary").field("app_id", &self.app_id).field("socket", &self.socket).finish()
    }
}

/// Makes a [`Primary`]'s blocking receive calls return, from any thread (a signal
/// handler thread, a GUI's quit action).
#[derive(Clone)]
pub struct Stopper(Arc<Inbox>);

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
    /// Ends [`Primary::requests`] and wakes [`Primary::recv`] with [`RecvError`](crate::RecvError); every
    /// receive call after it says the primary is stopped.
    pub fn stop(&self) {
        self.0.stop();
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
        }
        // We hold the lock and nothing answered there: any socket file is a dead primary's.
        // Removed only when the bind finds one (most starts find none: no unlink then).
        let stale_possible = lock.is_some() && !loc.abstract_ns;
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
        server.set_max_pending_connections(serve::BACKLOG);
        // Requests wait here for the app; past this many, launches are told to retry, so
        // a flood holds at most this many requests (each at most the message limit).
        let (tx, rx) = mpsc::sync_channel(64);
        let mux = serve::Mux::new(&loc.socket, options, lock.as_ref().map(|_| loc.lock.as_path()), system)?;
        let inbox = Arc::new(Inbox::new(tx, mux.waker()));
        let ctx = Arc::new(Context {
            // A launch writes its request as soon as it connects: a client that takes longer
            // than this is broken or hostile, and is not held for a whole timeout.
            timeout: config.timeout.min(MAX_REQUEST_DEADLINE),
            limit: config.max_message_size,
            check_uid: !system,
            owner: Mutex::new(crate::sys::Owner::current().ok()),
            mux,
            inbox: Arc::clone(&inbox),
            #[cfg(feature = "dbus")]
            on_step_down: Mutex::new(None),
        });
        // The primary's loop (`serve`) accepts on the listening end itself, from the first
        // time it runs (see `sys::listen_primary`).
        let listening = match crate::sys::listen_primary(&mut server, &loc.socket, system) {
            Err(e) if stale_possible && e.socket_error() == Some(crate::LocalSocketError::AddressInUse) => {
                LocalServer::remove_server(&loc.socket.to_string_lossy())
                    .map_err(|e| crate::PathError::wrap("cannot remove the stale socket", &loc.socket, e))?;
                crate::sys::listen_primary(&mut server, &loc.socket, system)?
            }
            r => r?,
        };
        let pipe_name = listening.name;
        let published = listening.published;
        ctx.mux.attach(listening.acceptor, server.sys_listener().cloned(), lock.take())?;
        let fork_guard = server.sys_listener().and_then(|l| crate::sys::fork_guard(l));
        if let Some(file) = &published {
            crate::sys::published::publish_own(file, &pipe_name)
                .map_err(|e| crate::PathError::wrap("cannot publish the pipe's name in", file, e))?;
        }
        // D-Bus last: only a primary that serves its socket owns the name. Bounded in time:
        // the bus is set up on a thread of its own, and waited for at most 2 s.
        #[cfg(feature = "dbus")]
        let dbus = super::dbus::Dbus::start(config, &inbox);
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
            published,
            app_id: config.app_id.clone(),
            #[cfg(feature = "dbus")]
            dbus,
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
    /// [`Health`]. A primary whose receive calls return [`RecvError`](crate::RecvError) without a
    /// [`Stopper`] having stopped it has [stepped down](Health::SteppedDown).
    pub fn health(&self) -> Health {
        self.ctx.mux.health()
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
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
        Stopper(Arc::clone(&self.ctx.inbox))
    }

    /// Gives up being the primary now: the socket is closed and removed, then the lock
    /// is freed, so a new launch (such as this app restarting itself) becomes the
    /// primary. Requests not yet received tell their launches to start over; the launches
    /// of requests the app took and holds unanswered are ended (one that waits for its
    /// reply fails, "went away before it answered"), and a reply to such a request
    /// afterwards is [`Delivery::Abandoned`](crate::Delivery::Abandoned). Their
    /// connections let go of the primary's name: on Windows, a request the app keeps
    /// holds no instance of the pipe (the System scope's name is fixed), so a successor
    /// binds it while the old `Request` still exists.
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
        self.ctx.inbox.closing.store(true, Ordering::SeqCst);
        self.ctx.shutdown();
        // Socket first, lock last: only the lock holder ever removes the socket.
        let server = self.server.get_mut().unwrap_or_else(|p| p.into_inner());
        // A child forked without exec shares the listening socket: shut down, it refuses
        // connections there too, and what waited in its backlog starts over.
        if let Some(listener) = server.sys_listener() {
            listener.shut_down();
        }
        self.fork_guard = None;
        server.close();
        // D-Bus calls waiting for room first, under their lock: a call let in before
        // `closing` was set has then reached the queue, which is emptied next.
        #[cfg(all(feature = "dbus", target_os = "linux"))]
        self.ctx.inbox.dbus_waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
        // Unanswered requests: launches are told to start over, D-Bus calls are handed to
        // the successor (once the name is released).
        while let Ok(event) = self.rx.try_recv() {
            drop(event);
        }
        // Launches waiting for a request the app took end their wait now, and the
        // connections of requests the app holds let go of the name (Windows' pipe
        // instances: the System scope's name is fixed, and a successor binds it next).
        self.ctx.inbox.streams.cut_off();
        // These connections close once the loop's poller has seen it (Windows).
        self.ctx.mux.settle();
        // The D-Bus name goes with the lock, before it (at most 0.5 s: a frozen bus does not
        // hold the lock): a successor can take both.
        #[cfg(feature = "dbus")]
        self.dbus.stop();
        if let Some(file) = &self.published {
            crate::sys::published::withdraw(file, &self.socket);
        }
        let mut lock = self.ctx.mux.take_lock().or_else(|| self.lock.take());
        // An accepted replace: launches that find the lock free wait for the new primary.
        if let (Some(lock), Some(pid)) = (lock.as_mut(), self.ctx.inbox.streams.handover()) {
            lock.hand_over(&super::handover::record(pid));
        }
        drop(lock);
        drop(self.lock.take());
        // Then the replies still open are written, and handed-off calls forwarded.
        #[cfg(feature = "dbus")]
        self.dbus.finish();
    }
}
