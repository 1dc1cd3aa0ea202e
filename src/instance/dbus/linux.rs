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
use crate::instance::context::{Context, Event};
use crate::instance::{Request, Scope, SingleInstance, HELD_BUDGET};
use crate::protocol;

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
    pub(crate) fn start(config: &SingleInstance, ctx: &Arc<Context>) -> Dbus {
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
        let (setup, app_ctx) = (Arc::clone(shared), Arc::clone(ctx));
        let thread = std::thread::Builder::new().name("solo-instance D-Bus".into());
        // With the app's signals blocked, as the crate's own threads (zbus's threads,
        // started from this one, inherit the mask).
        let spawned =
            crate::sys::with_signals_blocked(|| thread.spawn(move || setup_thread(&setup, &bus, app_ctx)));
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

/// Whether `n` more file descriptors can be opened now.
fn fds_free(n: usize) -> io::Result<()> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?);
    }
    Ok(())
}

/// The D-Bus thread: sets the bus up, and waits for the name while another connection
/// owns it. A panic inside zbus or async-io turns into the status.
fn setup_thread(shared: &Arc<Shared>, bus: &DbusBus, ctx: Arc<Context>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup(shared, bus, ctx)));
    let status = match outcome {
        Ok(Some(status)) => status,
        Ok(None) => return,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            DbusStatus::Failed(format!("D-Bus failed: {why}"))
        }
    };
    if !matches!(status, DbusStatus::Active { .. }) {
        shared.released.set();
    }
    shared.set(status);
}

/// Sets the bus up; the final status, or `None` once it is set already.
fn setup(shared: &Arc<Shared>, bus: &DbusBus, ctx: Arc<Context>) -> Option<DbusStatus> {
    let address = match bus {
        DbusBus::Address(a) => a.parse::<zbus::Address>(),
        _ => zbus::Address::session(),
    };
    let address = match address {
        Ok(a) => a,
        Err(e) => return Some(DbusStatus::NoBus(e.to_string())),
    };
    let app = Limited { app: Application { ctx, shared: Arc::clone(shared) }, limit: shared.limit };
    let builder = match unix_target(&address) {
        Some(target) => {
            // Blocking, on this thread: a bus that does not accept holds up only this.
            let stream = match UnixStream::connect_addr(&target) {
                Ok(s) => s,
                Err(e) => return Some(DbusStatus::NoBus(e.to_string())),
            };
            *shared.socket.lock().unwrap_or_else(|p| p.into_inner()) = stream.try_clone().ok();
            if shared.stopping.load(Ordering::SeqCst) {
                return Some(DbusStatus::Off);
            }
            let io = match Async::new(stream) {
                Ok(io) => Arc::new(io),
                Err(e) => return Some(DbusStatus::Failed(format!("D-Bus failed: {e}"))),
            };
            Ok(zbus::blocking::connection::Builder::socket(BusSocket { io, limit: shared.limit }))
        }
        // Another transport (tcp, unixexec, launchd): zbus connects.
        None => zbus::blocking::connection::Builder::address(address),
    };
    let conn = builder
        .and_then(|b| {
            // No method timeout: each call's timer would wake the idle primary once, a
            // timeout after the start. A frozen bus is cut off at the stop instead, and
            // hand-offs have their own deadline.
            b.max_queued(MAX_QUEUED).serve_at(shared.path.as_str(), app)
        })
        .and_then(|b| b.build());
    let conn = match conn {
        Ok(c) => c,
        Err(_) if shared.stopping.load(Ordering::SeqCst) => return Some(DbusStatus::Off),
        Err(e) => return Some(DbusStatus::NoBus(e.to_string())),
    };
    {
        let mut slot = shared.conn.lock().unwrap_or_else(|p| p.into_inner());
        if shared.stopping.load(Ordering::SeqCst) {
            drop(slot);
            let _ = conn.close();
            return Some(DbusStatus::Off);
        }
        *slot = Some(conn.clone());
    }
    let name = shared.name.as_str();
    let proxy = match zbus::blocking::fdo::DBusProxy::new(&conn) {
        Ok(p) => p,
        Err(e) => return Some(DbusStatus::Failed(format!("cannot own {name}: {e}"))),
    };
    // Watched before asking, so that the signal cannot pass unseen.
    let acquired = proxy.receive_name_acquired();
    // Queued (no `DoNotQueue`): a name another connection holds is taken when it frees.
    // Never `ReplaceExisting` (zbus' default flags have all three): an owner that allows
    // replacement keeps its name.
    match conn.request_name_with_flags(name, no_flags(zbus::fdo::RequestNameFlags::DoNotQueue.into())) {
        Ok(fdo::RequestNameReply::PrimaryOwner | fdo::RequestNameReply::AlreadyOwner) => {
            shared.released.reset();
            Some(DbusStatus::Active { name: name.to_owned(), path: shared.path.clone() })
        }
        Ok(_) => {
            let owner = name
                .try_into()
                .ok()
                .and_then(|n| proxy.get_name_owner(n).ok())
                .map_or_else(|| "another connection".to_owned(), |o| o.to_string());
            shared.set(DbusStatus::NameTaken(owner));
            let Ok(acquired) = acquired else { return None };
            drop(proxy);
            drop(conn);
            // Ends when the connection closes (the primary stops, or the bus goes).
            for signal in acquired {
                if signal.args().is_ok_and(|a| a.name() == name) {
                    let mut status = shared.lock();
                    if !shared.stopping.load(Ordering::SeqCst) {
                        shared.released.reset();
                        *status = DbusStatus::Active { name: name.to_owned(), path: shared.path.clone() };
                        shared.changed.notify_all();
                    }
                    return None;
                }
            }
            None
        }
        Err(e) => Some(DbusStatus::Failed(format!("cannot own {name}: {e}"))),
    }
}

/// No flag, in the set type zbus takes (enumflags2's `BitFlags`, no dependency of ours).
fn no_flags<T: std::ops::BitAnd<Output = T> + std::ops::Not<Output = T> + Copy>(flags: T) -> T {
    flags & !flags
}

/// The socket address of a `unix:path=` or `unix:abstract=` address.
fn unix_target(address: &zbus::Address) -> Option<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use zbus::address::transport::{Transport, UnixSocket};
    let Transport::Unix(unix) = address.transport() else { return None };
    match unix.path() {
        UnixSocket::File(path) => std::os::unix::net::SocketAddr::from_pathname(path).ok(),
        UnixSocket::Abstract(name) => {
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_encoded_bytes()).ok()
        }
        _ => None,
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

// ---------------------------------------------------------------------------------------
// The object
// ---------------------------------------------------------------------------------------

/// `org.freedesktop.Application`, answered by handing each call to the app's queue.
struct Application {
    ctx: Arc<Context>,
    shared: Arc<Shared>,
}

type PlatformData = HashMap<String, OwnedValue>;

/// A call's arguments, as they came: what a hand-off sends on.
enum Call {
    Activate((PlatformData,)),
    Open((Vec<String>, PlatformData)),
    ActivateAction((String, Vec<OwnedValue>, PlatformData)),
}

#[zbus::interface(name = "org.freedesktop.Application")]
impl Application {
    async fn activate(
        &self,
        platform_data: PlatformData,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<()> {
        let origin = Origin::Activate { platform_data: to_map(&platform_data) };
        if self.queue(origin).await? {
            self.hand_off(conn, Call::Activate((platform_data,))).await?;
        }
        Ok(())
    }

    async fn open(
        &self,
        uris: Vec<String>,
        platform_data: PlatformData,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<()> {
        let origin = Origin::Open { uris: uris.clone(), platform_data: to_map(&platform_data) };
        if self.queue(origin).await? {
            self.hand_off(conn, Call::Open((uris, platform_data))).await?;
        }
        Ok(())
    }

    async fn activate_action(
        &self,
        action_name: String,
        parameter: Vec<OwnedValue>,
        platform_data: PlatformData,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<()> {
        let origin = Origin::ActivateAction {
            action: action_name.clone(),
            parameter: parameter.iter().map(|v| to_json(v)).collect(),
            platform_data: to_map(&platform_data),
        };
        if self.queue(origin).await? {
            self.hand_off(conn, Call::ActivateAction((action_name, parameter, platform_data))).await?;
        }
        Ok(())
    }
}

impl Application {
    /// Queues the call as a request and waits for the app's answer: `true` when the
    /// primary shut down first, so that the call goes to the successor.
    async fn queue(&self, origin: Origin) -> fdo::Result<bool> {
        let ctx = &self.ctx;
        if ctx.closing.load(Ordering::SeqCst) {
            self.shared.handoffs.fetch_add(1, Ordering::SeqCst);
            return Ok(true);
        }
        let mut env = BTreeMap::new();
        if let Some(pd) = origin.platform_data() {
            for (key, var) in
                [("activation-token", "XDG_ACTIVATION_TOKEN"), ("desktop-startup-id", "DESKTOP_STARTUP_ID")]
            {
                if let Some(Value::String(token)) = pd.get(key) {
                    env.insert(var.to_owned(), token.into());
                }
            }
        }
        let raw = origin.to_json();
        // The JSON, the call's arguments and zbus' message, each about as large.
        let weight = 3 * raw.len() + 256;
        let before = ctx.held.fetch_add(weight, Ordering::SeqCst);
        let slot = Arc::new(Mutex::new(Slot {
            handoffs: Some(Arc::clone(&self.shared.handoffs)),
            ..Slot::default()
        }));
        let request = Request {
            head: protocol::Head { argv: Vec::new(), cwd: None, env, pid: None, data: None },
            data: std::sync::OnceLock::new(),
            message: std::sync::OnceLock::new(),
            raw,
            weight,
            held: Arc::clone(&ctx.held),
            peer: None,
            socket: None,
            closing: Arc::clone(&ctx.closing),
            origin,
            answer: Some(Answer(Arc::clone(&slot))),
            remote: None,
        };
        let mut request = Box::new(request);
        if before > 0 && before + weight > HELD_BUDGET {
            request.answer.take();
            return Err(fdo::Error::LimitsExceeded(format!(
                "the primary instance is busy: {} MiB of requests wait",
                HELD_BUDGET >> 20
            )));
        }
        if let Err((mut request, why)) = ctx.queue_dbus(request) {
            request.answer.take();
            return match why {
                Some(why) => Err(fdo::Error::LimitsExceeded(why.into())),
                // The primary began to shut down meanwhile.
                None => {
                    self.shared.handoffs.fetch_add(1, Ordering::SeqCst);
                    Ok(true)
                }
            };
        }
        ctx.announce();
        // An app waiting in its own `recv` serves the socket on its thread: wake it.
        ctx.wake_loop();
        match (Wait(slot)).await {
            Outcome::Reply(reply) if reply.is_ok() => Ok(false),
            Outcome::Reply(reply) => {
                Err(fdo::Error::Failed(reply.error_message().map(str::to_owned).unwrap_or_else(|| {
                    format!("the primary instance answered with exit code {}", reply.exit_code())
                })))
            }
            Outcome::Error(why) => Err(fdo::Error::Failed(why)),
            Outcome::HandOff => Ok(true),
        }
    }

    /// The primary shut down with this call unanswered: once its name is released, the
    /// call goes to the name's next owner (a successor, or a process the bus starts for
    /// a `DBusActivatable` app), which may take up to the timeout to appear. Gives back
    /// the call's count in `handoffs`, taken when it was handed off.
    async fn hand_off(&self, conn: &zbus::Connection, call: Call) -> fdo::Result<()> {
        let shared = &self.shared;
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&shared.handoffs);
        shared.released.wait().await;
        let deadline = Instant::now() + shared.timeout;
        loop {
            let (name, path) = (Some(shared.name.as_str()), shared.path.as_str());
            let forward = async {
                match &call {
                    Call::Activate(b) => conn.call_method(name, path, Some(IFACE), "Activate", b).await,
                    Call::Open(b) => conn.call_method(name, path, Some(IFACE), "Open", b).await,
                    Call::ActivateAction(b) => {
                        conn.call_method(name, path, Some(IFACE), "ActivateAction", b).await
                    }
                }
            };
            // The successor gets the timeout to answer, once it has the name.
            let Some(r) = within(deadline + shared.timeout, forward).await else {
                return Err(fdo::Error::NoReply(format!(
                    "the primary instance shut down, and its successor did not answer within {} ms",
                    shared.timeout.as_millis()
                )));
            };
            let unowned = |name: &zbus::names::OwnedErrorName| {
                matches!(
                    name.as_str(),
                    "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner"
                )
            };
            match r {
                Ok(_) => return Ok(()),
                Err(zbus::Error::MethodError(name, _, _)) if unowned(&name) && Instant::now() < deadline => {
                    async_io::Timer::after(HAND_OFF_RETRY).await;
                }
                Err(zbus::Error::MethodError(name, _, _)) if unowned(&name) => {
                    return Err(fdo::Error::ServiceUnknown(format!(
                        "the primary instance shut down, and no successor took {} within {} ms",
                        shared.name,
                        shared.timeout.as_millis()
                    )))
                }
                Err(zbus::Error::MethodError(name, text, _)) => {
                    return Err(fdo::Error::Failed(format!(
                        "the primary instance shut down; its successor answered {name}: {}",
                        text.unwrap_or_default()
                    )))
                }
                Err(e) => {
                    return Err(fdo::Error::Failed(format!(
                        "the primary instance shut down, and the call could not be handed on: {e}"
                    )))
                }
            }
        }
    }
}

/// `f`'s output, unless `deadline` comes first.
async fn within<F: Future>(deadline: Instant, f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut timer = async_io::Timer::at(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The event a send did not deliver.
fn unsent(e: TrySendError<Event>) -> Event {
    match e {
        TrySendError::Full(event) | TrySendError::Disconnected(event) => event,
    }
}

const BUSY: &str = "the primary instance is busy: the most D-Bus calls that may wait (1024) wait";

/// A call's request that was not queued, and why (`None`: the primary shuts down).
type Refused = (Box<Request>, Option<&'static str>);

impl Context {
    /// Queues a D-Bus call's request; while the queue is full it waits in line (calls
    /// cannot retry as launches do), up to [`MAX_WAITING`] calls. Refused with why, or
    /// `None` once the primary shuts down (its drop sets `closing`, then empties the
    /// line under this lock: a request let in here is never left behind).
    fn queue_dbus(&self, request: Box<Request>) -> std::result::Result<(), Refused> {
        let mut waiting = self.dbus_waiting.lock().unwrap_or_else(|p| p.into_inner());
        if self.closing.load(Ordering::SeqCst) {
            return Err((request, None));
        }
        let mut request = request;
        if waiting.is_empty() {
            match self.tx.try_send(Event::Request(request)) {
                Ok(()) => return Ok(()),
                Err(e) => match unsent(e) {
                    Event::Request(r) => request = r,
                    Event::Stop => return Ok(()),
                },
            }
        }
        if waiting.len() >= MAX_WAITING {
            return Err((request, Some(BUSY)));
        }
        waiting.push_back(request);
        Ok(())
    }

    /// The app took a request: the D-Bus calls that wait move into the queue, in order.
    pub(in crate::instance) fn dbus_refill(&self) {
        let mut waiting = self.dbus_waiting.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(request) = waiting.pop_front() {
            match self.tx.try_send(Event::Request(request)) {
                Ok(()) => {}
                Err(e) => {
                    if let Event::Request(r) = unsent(e) {
                        waiting.push_front(r);
                    }
                    break;
                }
            }
        }
    }
}

/// Waits for the [`Answer`].
struct Wait(Arc<Mutex<Slot>>);

impl Future for Wait {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// [`Application`], with calls over the message limit refused before zbus decodes them:
/// those `Filter` cut short (an empty body under a signature), and any larger than the
/// limit on a transport zbus reads itself.
struct Limited {
    app: Application,
    limit: usize,
}

#[async_trait::async_trait]
impl Interface for Limited {
    fn name() -> zbus::names::InterfaceName<'static> {
        <Application as Interface>::name()
    }

    fn spawn_tasks_for_methods(&self) -> bool {
        self.app.spawn_tasks_for_methods()
    }

    async fn get(
        &self,
        property_name: &str,
        server: &zbus::ObjectServer,
        connection: &zbus::Connection,
        header: Option<&zbus::message::Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<OwnedValue>> {
        self.app.get(property_name, server, connection, header, emitter).await
    }

    async fn get_all(
        &self,
        server: &zbus::ObjectServer,
        connection: &zbus::Connection,
        header: Option<&zbus::message::Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> fdo::Result<HashMap<String, OwnedValue>> {
        self.app.get_all(server, connection, header, emitter).await
    }

    async fn set_mut(
        &mut self,
        property_name: &str,
        value: &Variant<'_>,
        server: &zbus::ObjectServer,
        connection: &zbus::Connection,
        header: Option<&zbus::message::Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<()>> {
        self.app.set_mut(property_name, value, server, connection, header, emitter).await
    }

    fn call<'call>(
        &'call self,
        server: &'call zbus::ObjectServer,
        connection: &'call zbus::Connection,
        msg: &'call zbus::Message,
        name: zbus::names::MemberName<'call>,
    ) -> DispatchResult<'call> {
        let body = msg.body();
        let cut = body.is_empty() && *body.signature() != zbus::zvariant::Signature::Unit;
        if cut || body.len() > self.limit {
            let why = format!("the call is larger than the primary instance's limit of {} bytes", self.limit);
            return DispatchResult::new_async(connection, msg, async move {
                Err::<(), _>(fdo::Error::LimitsExceeded(why))
            });
        }
        Interface::call(&self.app, server, connection, msg, name)
    }

    fn call_mut<'call>(
        &'call mut self,
        server: &'call zbus::ObjectServer,
        connection: &'call zbus::Connection,
        msg: &'call zbus::Message,
        name: zbus::names::MemberName<'call>,
    ) -> DispatchResult<'call> {
        self.app.call_mut(server, connection, msg, name)
    }

    fn introspect_to_writer(&self, writer: &mut dyn std::fmt::Write, level: usize) {
        self.app.introspect_to_writer(writer, level)
    }
}

// ---------------------------------------------------------------------------------------
// The socket
// ---------------------------------------------------------------------------------------

/// The bus connection's socket, on async-io (as zbus's own), with three differences: its
/// close does not go through zbus's `blocking` thread pool (whose thread, once started,
/// wakes twice a second for good), it passes no file descriptors (none of our methods
/// takes any), and its read side cuts off message bodies over the limit (`Filter`).
#[derive(Debug)]
struct BusSocket {
    io: Arc<Async<UnixStream>>,
    limit: usize,
}

impl zbus::connection::socket::Socket for BusSocket {
    type ReadHalf = BusRead;
    type WriteHalf = BusWrite;

    fn split(self) -> Split<BusRead, BusWrite> {
        Split::new(
            // Never below 64 KiB, for the bus' own messages (a call's exact limit is
            // `Limited`'s).
            BusRead { io: Arc::clone(&self.io), filter: Filter::new(self.limit.max(64 << 10)) },
            BusWrite { io: self.io },
        )
    }
}

#[derive(Debug)]
struct BusRead {
    io: Arc<Async<UnixStream>>,
    filter: Filter,
}

#[async_trait::async_trait]
impl ReadHalf for BusRead {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        loop {
            let n = self.filter.emit(buf);
            if n > 0 || buf.is_empty() {
                return Ok((n, Vec::new()));
            }
            let BusRead { io, filter } = self;
            let read = io.read_with(|s| (&*s).read(&mut filter.input)).await?;
            if read == 0 {
                return Ok((0, Vec::new()));
            }
            filter.feed(read);
        }
    }
}

#[derive(Debug)]
struct BusWrite {
    io: Arc<Async<UnixStream>>,
}

#[async_trait::async_trait]
impl WriteHalf for BusWrite {
    async fn sendmsg(&mut self, buffer: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        if !fds.is_empty() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "no file descriptors on this connection"));
        }
        // MSG_NOSIGNAL: a bus that went away is an error, not a SIGPIPE.
        self.io
            .write_with(|s| {
                rustix::net::send(s, buffer, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from)
            })
            .await
    }

    async fn close(&mut self) -> io::Result<()> {
        match self.io.get_ref().shutdown(std::net::Shutdown::Both) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        }
    }
}

/// What zbus reads from the bus, with each message body over the limit cut off as it
/// arrives: the message reaches zbus with its header (body length 0) and no body, and
/// [`Limited`] refuses it. So a call of any size costs at most the limit in memory,
/// where zbus would read up to 128 MiB whole. The authentication lines before the first
/// message pass as they are.
#[derive(Debug)]
struct Filter {
    limit: usize,
    /// What the last read brought.
    input: Box<[u8]>,
    /// What zbus reads next, from `out[pos..]`.
    out: Vec<u8>,
    pos: usize,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Authentication lines; `true` at the start of one.
    Auth(bool),
    /// The 16 bytes of a message's fixed header, so far.
    Header(Vec<u8>),
    /// Passing `0` bytes, then dropping `1`.
    Pass(usize, usize),
    /// Dropping this many bytes.
    Skip(usize),
    /// Not D-Bus framing: passed as it is, for zbus to refuse.
    Raw,
}

impl Filter {
    fn new(limit: usize) -> Filter {
        Filter {
            limit,
            input: vec![0; 16 * 1024].into_boxed_slice(),
            out: Vec::new(),
            pos: 0,
            state: State::Auth(true),
        }
    }

    /// Copies what is ready into `buf`.
    fn emit(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
        }
        n
    }

    /// Takes `input[..n]`.
    fn feed(&mut self, n: usize) {
        let input = std::mem::take(&mut self.input);
        let mut data = &input[..n];
        while !data.is_empty() {
            match &mut self.state {
                State::Auth(line_start) => {
                    // The server's lines are OK, REJECTED, DATA, ERROR, AGREE_UNIX_FD; a
                    // message starts with its byte order, `l` or `B`.
                    if *line_start && matches!(data[0], b'l' | b'B') {
                        self.state = State::Header(Vec::with_capacity(16));
                        continue;
                    }
                    let end = data.iter().position(|&b| b == b'\n').map_or(data.len(), |p| p + 1);
                    self.out.extend_from_slice(&data[..end]);
                    *line_start = data[end - 1] == b'\n';
                    data = &data[end..];
                }
                State::Header(h) => {
                    let take = (16 - h.len()).min(data.len());
                    h.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if h.len() == 16 {
                        let h = std::mem::take(h);
                        self.state = self.header(h);
                    }
                }
                State::Pass(left, then) => {
                    let take = (*left).min(data.len());
                    self.out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    *left -= take;
                    if *left == 0 {
                        self.state = match *then {
                            0 => State::Header(Vec::with_capacity(16)),
                            skip => State::Skip(skip),
                        };
                    }
                }
                State::Skip(left) => {
                    let take = (*left).min(data.len());
                    data = &data[take..];
                    *left -= take;
                    if *left == 0 {
                        self.state = State::Header(Vec::with_capacity(16));
                    }
                }
                State::Raw => {
                    self.out.extend_from_slice(data);
                    data = &[];
                }
            }
        }
        self.input = input;
    }

    /// A message's fixed header: passed on, with a body over the limit cut off.
    fn header(&mut self, mut h: Vec<u8>) -> State {
        let little = match h[0] {
            b'l' => true,
            b'B' => false,
            _ => {
                self.out.extend_from_slice(&h);
                return State::Raw;
            }
        };
        let word = |h: &[u8], at: usize| {
            let b = [h[at], h[at + 1], h[at + 2], h[at + 3]];
            (if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }) as usize
        };
        let (body, fields) = (word(&h, 4), word(&h, 12));
        // The header fields, padded to 8 bytes, then the body.
        let header = 16 + fields;
        let rest = fields + (8 - header % 8) % 8;
        let skip = if body > self.limit {
            h[4..8].copy_from_slice(&[0; 4]);
            body
        } else {
            0
        };
        self.out.extend_from_slice(&h);
        let pass = if skip == 0 { rest + body } else { rest };
        match (pass, skip) {
            (0, 0) => State::Header(Vec::with_capacity(16)),
            (0, skip) => State::Skip(skip),
            (pass, skip) => State::Pass(pass, skip),
        }
    }
}

fn to_map(platform_data: &PlatformData) -> Map<String, Value> {
    platform_data.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
}

/// A variant as JSON (see [`Origin`]).
fn to_json(v: &Variant<'_>) -> Value {
    match v {
        Variant::U8(n) => (*n).into(),
        Variant::Bool(b) => (*b).into(),
        Variant::I16(n) => (*n).into(),
        Variant::U16(n) => (*n).into(),
        Variant::I32(n) => (*n).into(),
        Variant::U32(n) => (*n).into(),
        Variant::I64(n) => (*n).into(),
        Variant::U64(n) => (*n).into(),
        Variant::F64(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Variant::Str(s) => s.as_str().into(),
        Variant::Signature(s) => s.to_string().into(),
        Variant::ObjectPath(p) => p.as_str().into(),
        Variant::Value(v) => to_json(v),
        Variant::Array(a) => a.iter().map(to_json).collect(),
        Variant::Dict(d) => Value::Object(
            d.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Variant::Structure(s) => s.fields().iter().map(to_json).collect(),
        _ => Value::Null,
    }
}
