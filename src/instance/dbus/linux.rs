//! The primary's `org.freedesktop.Application` object on Linux, on zbus's blocking API:
//! each call becomes a `Request` in the primary's stream.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use serde_json::{Map, Value};
use zbus::fdo;
use zbus::zvariant::{OwnedValue, Value as Variant};

use super::{check_bus_name, dbus_object_path, Answer, Dbus, DbusBus, DbusStatus, Origin, Slot};
use crate::instance::context::{Context, Event};
use crate::instance::{Request, Scope, SingleInstance, HELD_BUDGET};
use crate::protocol;

impl Dbus {
    /// Connects, serves the object, then asks for the name (in that order, so that a
    /// call the bus queued while it started us finds the object). Never fails: what
    /// went wrong is the status.
    pub(crate) fn start(config: &SingleInstance, ctx: &Arc<Context>) -> Dbus {
        let off = |status| Dbus { status, conn: None };
        let builder = match &config.dbus_bus {
            DbusBus::Off => return off(DbusStatus::Off),
            _ if config.scope == Scope::System => return off(DbusStatus::Off),
            DbusBus::Session => zbus::blocking::connection::Builder::session(),
            DbusBus::Address(a) => zbus::blocking::connection::Builder::address(a.as_str()),
        };
        let name = config.app_id.clone();
        if let Err(why) = check_bus_name(&name) {
            return off(DbusStatus::InvalidName(why));
        }
        let path = dbus_object_path(&name);
        let app = Application { ctx: Arc::clone(ctx) };
        // zbus starts its executor thread here: with the app's signals blocked, as the
        // crate's own threads.
        let conn = match crate::sys::with_signals_blocked(|| {
            builder
                .and_then(|b| b.method_timeout(config.timeout).serve_at(path.as_str(), app))
                .and_then(|b| b.build())
        }) {
            Ok(c) => c,
            Err(e) => return off(DbusStatus::NoBus(e.to_string())),
        };
        let flags = zbus::fdo::RequestNameFlags::DoNotQueue.into();
        match conn.request_name_with_flags(name.as_str(), flags) {
            Ok(fdo::RequestNameReply::PrimaryOwner | fdo::RequestNameReply::AlreadyOwner) => {
                Dbus { status: DbusStatus::Active { name, path }, conn: Some(conn) }
            }
            // zbus reports `Exists` (DoNotQueue, owned) as an error; `InQueue` cannot be.
            Ok(_) | Err(zbus::Error::NameTaken) => {
                let owner = zbus::blocking::fdo::DBusProxy::new(&conn)
                    .ok()
                    .and_then(|p| p.get_name_owner(name.as_str().try_into().ok()?).ok())
                    .map_or_else(|| "another connection".to_owned(), |o| o.to_string());
                let _ = conn.close();
                off(DbusStatus::NameTaken(owner))
            }
            Err(e) => {
                let _ = conn.close();
                off(DbusStatus::Failed(format!("cannot own {name}: {e}")))
            }
        }
    }

    /// What gives the name back when the primary steps down (`serve::watch`): it is no
    /// longer the lock holder, and a call to it could only fail. On a thread of its own,
    /// so that the primary's loop never waits on the bus; the connection stays open (the
    /// replies of calls still open), and closes when the `Primary` is dropped.
    pub(crate) fn release_on_step_down(&self) -> Option<Box<dyn FnOnce() + Send>> {
        let DbusStatus::Active { name, .. } = &self.status else { return None };
        let (conn, name) = (self.conn.clone()?, name.clone());
        Some(Box::new(move || {
            let thread = std::thread::Builder::new().name("solo-instance D-Bus release".into());
            let _ = crate::sys::with_signals_blocked(|| {
                thread.spawn(move || {
                    let _ = conn.release_name(name.as_str());
                })
            });
        }))
    }

    /// Gives the name back (before the lock is freed), then closes the connection
    /// once the replies of the calls still open are written: zbus' task for each call
    /// holds the connection until its reply is sent, and a graceful shutdown waits
    /// for them (a plain close could beat a reply the app just gave, found by
    /// `bus_activation_starts_the_example_as_primary_with_the_call`). At most 2 s:
    /// a request the app still holds elsewhere does not stall the drop; its
    /// connection closes when it is answered.
    pub(crate) fn stop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if let DbusStatus::Active { name, .. } = &self.status {
            let _ = conn.release_name(name.as_str());
        }
        let (done, closed) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("solo-instance D-Bus close".into());
        let closing = crate::sys::with_signals_blocked(|| {
            thread.spawn(move || {
                conn.graceful_shutdown();
                let _ = done.send(());
            })
        });
        if closing.is_ok() {
            let _ = closed.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// `org.freedesktop.Application`, answered by handing each call to the app's queue.
struct Application {
    ctx: Arc<Context>,
}

#[zbus::interface(name = "org.freedesktop.Application")]
impl Application {
    async fn activate(&self, platform_data: HashMap<String, OwnedValue>) -> fdo::Result<()> {
        let origin = Origin::Activate { platform_data: to_map(&platform_data) };
        self.call(origin).await
    }

    async fn open(&self, uris: Vec<String>, platform_data: HashMap<String, OwnedValue>) -> fdo::Result<()> {
        let origin = Origin::Open { uris, platform_data: to_map(&platform_data) };
        self.call(origin).await
    }

    async fn activate_action(
        &self,
        action_name: String,
        parameter: Vec<OwnedValue>,
        platform_data: HashMap<String, OwnedValue>,
    ) -> fdo::Result<()> {
        let origin = Origin::ActivateAction {
            action: action_name,
            parameter: parameter.iter().map(|v| to_json(v)).collect(),
            platform_data: to_map(&platform_data),
        };
        self.call(origin).await
    }
}

impl Application {
    /// Queues the call as a request and waits for the app's answer.
    async fn call(&self, origin: Origin) -> fdo::Result<()> {
        let ctx = &self.ctx;
        if ctx.closing.load(Ordering::SeqCst) {
            return Err(fdo::Error::Failed("the primary instance is shutting down".into()));
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
        let weight = 2 * raw.len() + 256;
        let before = ctx.held.fetch_add(weight, Ordering::SeqCst);
        let slot = Arc::new(Mutex::new(Slot::default()));
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
        };
        if before > 0 && before + weight > HELD_BUDGET {
            drop(request);
            return Err(fdo::Error::LimitsExceeded("the primary instance is busy".into()));
        }
        match ctx.tx.try_send(Event::Request(Box::new(request))) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(event)) => {
                if let Event::Request(mut r) = event {
                    if let Some(a) = r.answer.take() {
                        a.send(Err("the primary instance is busy".into()));
                    }
                }
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {}
        }
        ctx.announce();
        // An app waiting in its own `recv` serves the socket on its thread: wake it.
        ctx.wake_loop();
        match (Wait(slot)).await {
            Ok(reply) if reply.is_ok() => Ok(()),
            Ok(reply) => {
                Err(fdo::Error::Failed(reply.error_message().map(str::to_owned).unwrap_or_else(|| {
                    format!("the primary instance answered with exit code {}", reply.exit_code())
                })))
            }
            Err(why) => Err(fdo::Error::Failed(why)),
        }
    }
}

/// Waits for the [`Answer`].
struct Wait(Arc<Mutex<Slot>>);

impl Future for Wait {
    type Output = Result<crate::Reply, String>;

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

fn to_map(platform_data: &HashMap<String, OwnedValue>) -> Map<String, Value> {
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
