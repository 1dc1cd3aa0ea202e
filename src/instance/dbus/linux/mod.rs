//! The primary's `org.freedesktop.Application` object on Linux, on zbus: each call becomes a
//! `Request` in the primary's stream.
//!
//! The bus is set up on a thread of its own ("solo-instance D-Bus"), which `start` waits
//! for at most 2 s: a frozen or silent bus never holds up the primary, which serves its
//! socket meanwhile and says so in its status. The connection runs on a socket of ours
//! (`BusSocket`), connected by that thread: so zbus starts no `blocking` pool thread
//! (which wakes twice a second forever), a call larger than the message limit is cut off
//! as it is read (`Filter`) rather than held whole, and a frozen bus can be cut off by
//! shutting the socket down.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{self, Read};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use async_io::Async;
use serde_json::{Map, Value};
use zbus::connection::socket::{ReadHalf, Split, WriteHalf};
use zbus::fdo;
use zbus::object_server::{DispatchResult, Interface, SignalEmitter};
use zbus::zvariant::{OwnedValue, Value as Variant};

use super::{check_bus_name, dbus_object_path, Answer, DbusBus, DbusStatus, Origin, Outcome, Slot};
use crate::instance::inbox::{Event, Inbox, Refused};
use crate::instance::{Request, Scope, SingleInstance, HELD_BUDGET};
use crate::protocol;
use crate::protocol::BUSY;

mod json;
mod object;
mod setup;
mod socket;

use json::*;
use object::*;
use setup::*;
use socket::*;

const IFACE: &str = "org.freedesktop.Application";

/// The longest `start` waits for the bus (connect, authenticate, ask for the name); less
/// when the timeout is shorter.
const START_DEADLINE: Duration = Duration::from_secs(2);

/// The longest a primary that shuts down waits for the bus to take its name back before
/// it frees its lock anyway (and cuts the connection: the bus is frozen).
const RELEASE_DEADLINE: Duration = Duration::from_millis(500);

/// Most D-Bus calls that wait for room in the app's queue (64 requests); past it a call
/// fails with "busy". Their bytes count against the same budget as launches.
const MAX_WAITING: usize = 1024;

/// File descriptors D-Bus needs: async-io's reactor (an epoll instance and an eventfd),
/// the bus socket, and a few to spare for launches.
const FDS_NEEDED: usize = 6;

/// Messages zbus reads ahead of its handlers: the body of each cut to the message limit,
/// or 64 KiB if that is more (`Filter`).
const MAX_QUEUED: usize = 8;

/// Between two tries to hand a call to a successor that has not taken the name yet.
const HAND_OFF_RETRY: Duration = Duration::from_millis(100);

/// The primary's D-Bus side.
pub(crate) struct Dbus {
    shared: Arc<Shared>,
}

/// What the primary, its D-Bus thread and its method calls share.
struct Shared {
    status: Mutex<DbusStatus>,
    changed: Condvar,
    /// The primary stops: the setup thread gives up.
    stopping: AtomicBool,
    /// The bus socket, to shut down when a frozen bus holds up the setup or the shutdown.
    socket: Mutex<Option<UnixStream>>,
    conn: Mutex<Option<zbus::blocking::Connection>>,
    /// The name is released (or was never owned): handed-off calls go to the bus.
    released: Flag,
    /// Calls being handed to a successor: counted as the request is dropped (`Slot`), so
    /// that `finish` knows before their tasks run.
    handoffs: Arc<AtomicUsize>,
    /// Set by the first `stop` (at a step-down, or at the drop), held while it runs: a
    /// second one waits for it and does nothing.
    stopped: Mutex<bool>,
    /// Told when the close thread is done (after `stop`), for `finish` to wait for.
    closed: Mutex<Option<mpsc::Receiver<()>>>,
    name: String,
    path: String,
    /// The largest call body taken, in bytes (`max_message_size`).
    limit: usize,
    timeout: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, DbusStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, status: DbusStatus) {
        *self.lock() = status;
        self.changed.notify_all();
    }

    /// Shuts the bus socket down: whatever waits on the bus fails at once.
    fn cut(&self) {
        if let Some(s) = &*self.socket.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Dbus {
    fn settled(status: DbusStatus, name: String, config: &SingleInstance) -> Dbus {
        let shared = Shared {
            status: Mutex::new(status),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            socket: Mutex::new(None),
            conn: Mutex::new(None),
            released: Flag::default(),
            handoffs: Arc::new(AtomicUsize::new(0)),
            stopped: Mutex::new(false),
            closed: Mutex::new(None),
            path: dbus_object_path(&name),
            name,
            limit: config.max_message_size,
            timeout: config.timeout,
        };
        shared.released.set();
        Dbus { shared: Arc::new(shared) }
    }

    /// Sets up the bus on a thread of its own: connect, serve the object, then ask for the
    /// name (in that order, so that a call the bus queued while it started us finds the
    /// object). Waits for it up to the timeout (at most 2 s). Never fails: what went
    /// wrong is the status.
    pub(crate) fn start(config: &SingleInstance, inbox: &Arc<Inbox>) -> Dbus {
        let name = config.app_id.clone();
        let off = |status| Dbus::settled(status, name.clone(), config);
        let bus = match &config.dbus_bus {
            DbusBus::Off => return off(DbusStatus::Off),
            _ if config.scope == Scope::System => return off(DbusStatus::Off),
            bus => bus.clone(),
        };
        if let Err(why) = check_bus_name(&name) {
            return off(DbusStatus::InvalidName(why));
        }
        // async-io panics when it cannot create its reactor: look first.
        if let Err(e) = fds_free(FDS_NEEDED) {
            return off(DbusStatus::Failed(format!("too few file descriptors left for D-Bus: {e}")));
        }
        let dbus = off(DbusStatus::Pending("connecting to the bus".into()));
        let shared = &dbus.shared;
        shared.released.reset();
        let (setup, app_inbox) = (Arc::clone(shared), Arc::clone(inbox));
        let thread = std::thread::Builder::new().name("solo-instance D-Bus".into());
        // With the app's signals blocked, as the crate's own threads (zbus's threads,
        // started from this one, inherit the mask).
        let spawned =
            crate::sys::with_signals_blocked(|| thread.spawn(move || setup_thread(&setup, &bus, app_inbox)));
        if let Err(e) = spawned {
            shared.released.set();
            shared.set(DbusStatus::Failed(format!("cannot start the D-Bus thread: {e}")));
            return dbus;
        }
        let wait = config.timeout.min(START_DEADLINE);
        let deadline = Instant::now() + wait;
        let mut status = shared.lock();
        while matches!(*status, DbusStatus::Pending(_)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                *status = DbusStatus::Pending(format!(
                    "the bus did not answer within {} ms; still trying",
                    wait.as_millis()
                ));
                break;
            }
            status = shared.changed.wait_timeout(status, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(status);
        dbus
    }

    pub(crate) fn status(&self) -> DbusStatus {
        self.shared.lock().clone()
    }

    /// What gives the name back when the primary steps down (`serve::watch`): it no longer
    /// holds the lock, and the name belongs to the lock holder, as at a release. The same
    /// as [`stop`](Self::stop) (the name released, or the queue left; the calls still
    /// open answered, and those the app never took handed to the next owner), on a thread
    /// of its own so that the primary's loop never waits on the bus. The drop's `finish`
    /// waits for it.
    pub(crate) fn release_on_step_down(&self) -> Option<Box<dyn FnOnce() + Send>> {
        let shared = Arc::clone(&self.shared);
        Some(Box::new(move || {
            let thread = std::thread::Builder::new().name("solo-instance D-Bus release".into());
            let _ = crate::sys::with_signals_blocked(|| thread.spawn(move || Dbus { shared }.stop()));
        }))
    }

    /// Gives the name back, before the lock is freed: at most 0.5 s, past which the bus
    /// counts as frozen and the connection is cut (the bus frees the name when it wakes).
    /// The replies of the calls still open, and the calls handed to the successor, are
    /// then seen to by a close thread that [`finish`](Self::finish) waits for.
    pub(crate) fn stop(&mut self) {
        let shared = &self.shared;
        let mut stopped = shared.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::replace(&mut *stopped, true) {
            return;
        }
        shared.stopping.store(true, Ordering::SeqCst);
        let conn = shared.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(conn) = conn else {
            // Still connecting (or never connected): cut it short.
            shared.cut();
            shared.released.set();
            return;
        };
        let queued = !matches!(self.status(), DbusStatus::Active { .. });
        let (released, was_released) = mpsc::channel();
        let (done, closed) = mpsc::channel();
        let closer = Arc::clone(shared);
        let thread = std::thread::Builder::new().name("solo-instance D-Bus close".into());
        let closing = crate::sys::with_signals_blocked(|| {
            thread.spawn(move || {
                if queued {
                    // Not the owner: closing leaves the queue (and ends the watch for
                    // the name, which holds the connection).
                    closer.released.set();
                    let _ = released.send(());
                    let _ = conn.close();
                } else {
                    let _ = conn.release_name(closer.name.as_str());
                    closer.released.set();
                    let _ = released.send(());
                    // Waits for the calls still open: zbus' task for each holds the
                    // connection until its reply is sent (a plain close could beat a
                    // reply the app just gave, found by
                    // `bus_activation_starts_the_example_as_primary_with_the_call`).
                    conn.graceful_shutdown();
                }
                let _ = done.send(());
            })
        });
        if closing.is_err() {
            shared.cut();
            shared.released.set();
            return;
        }
        if was_released.recv_timeout(RELEASE_DEADLINE).is_err() {
            shared.cut();
            shared.released.set();
        }
        *shared.closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(closed);
    }

    /// Waits for the close thread: up to 2 s for the replies still open, up to twice the
    /// timeout more while calls are handed to a successor (one for it to take the name,
    /// one for its answer). A request the app still holds
    /// elsewhere does not stall the drop; its connection closes when it is answered.
    pub(crate) fn finish(&mut self) {
        // After the stop (a step-down's may still run on its thread: waited for here).
        drop(self.shared.stopped.lock().unwrap_or_else(|p| p.into_inner()));
        let closed = self.shared.closed.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(closed) = closed else { return };
        let mut bound = Duration::from_secs(2);
        if self.shared.handoffs.load(Ordering::SeqCst) > 0 {
            bound += 2 * self.shared.timeout;
        }
        let _ = closed.recv_timeout(bound);
    }
}

/// A one-way flag that async code can wait for.
#[derive(Default)]
struct Flag(Mutex<(bool, Vec<Waker>)>);

impl Flag {
    fn set(&self) {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f.0 = true;
        for w in f.1.drain(..) {
            w.wake();
        }
    }

    fn reset(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0 = false;
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if f.0 {
                Poll::Ready(())
            } else {
                if !f.1.iter().any(|w| w.will_wake(cx.waker())) {
                    f.1.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}
