//! How a request came ([`Origin`]), and with the `dbus` feature the primary's second
//! channel: `org.freedesktop.Application` on the session bus (Linux), each call a
//! [`Request`] in the same queue as the socket's launches.
//!
//! Everything D-Bus lives here, so that `mod.rs` only gains: `Request::{origin, answer}`,
//! `Primary::dbus`, `SingleInstance::dbus_bus`, and the calls that fill and drop them.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::{Reply, Request};

/// How a [`Request`] reached the primary: [`Request::origin`].
///
/// A launch over the socket carries argv, cwd and environment; the other kinds are calls
/// to `org.freedesktop.Application` on the session bus (feature `dbus`, Linux), whose
/// requests have an empty [`argv`](Request::argv), no [`cwd`](Request::cwd), and the
/// call's data here. Their `platform_data` (the `a{sv}` the caller passed) is JSON:
/// strings as strings, numbers, booleans, arrays, dictionaries as objects (keys as text),
/// structures as arrays, a variant as its value, anything else `null`. Its
/// `activation-token` (Wayland) and `desktop-startup-id` (X11) are what
/// [`Request::activation_token`] returns.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// A launch over the socket (or the wire protocol): see [`Request::argv`].
    Launch,
    /// `Activate(a{sv} platform_data)`: bring the app forward.
    Activate {
        /// The caller's platform data.
        platform_data: Map<String, Value>,
    },
    /// `Open(as uris, a{sv} platform_data)`: open these URIs (`file:///...` for files).
    Open {
        /// The URIs, as the caller sent them.
        uris: Vec<String>,
        /// The caller's platform data.
        platform_data: Map<String, Value>,
    },
    /// `ActivateAction(s action_name, av parameter, a{sv} platform_data)`: run an action
    /// of the desktop file's `Actions=` (a quick list entry, say).
    ActivateAction {
        /// The action's name.
        action: String,
        /// Its parameter: empty, or one value.
        parameter: Vec<Value>,
        /// The caller's platform data.
        platform_data: Map<String, Value>,
    },
}

impl Origin {
    /// The D-Bus method (`"Activate"`, `"Open"`, `"ActivateAction"`); `None` for a launch.
    pub fn dbus_method(&self) -> Option<&'static str> {
        match self {
            Origin::Launch => None,
            Origin::Activate { .. } => Some("Activate"),
            Origin::Open { .. } => Some("Open"),
            Origin::ActivateAction { .. } => Some("ActivateAction"),
        }
    }

    /// The D-Bus call's platform data; `None` for a launch.
    pub fn platform_data(&self) -> Option<&Map<String, Value>> {
        match self {
            Origin::Launch => None,
            Origin::Activate { platform_data }
            | Origin::Open { platform_data, .. }
            | Origin::ActivateAction { platform_data, .. } => Some(platform_data),
        }
    }

    /// The call as one compact JSON object, keys in the method's argument order:
    /// `{"platform_data":{...}}`, `{"uris":[...],"platform_data":{...}}`,
    /// `{"action":"...","parameter":[...],"platform_data":{...}}`. What
    /// [`Request::raw_json`] gives for a D-Bus request.
    pub fn to_json(&self) -> String {
        // `Value`'s `Display` is compact JSON; the object is written by hand for the order.
        let pd = |m: &Map<String, Value>| Value::Object(m.clone()).to_string();
        match self {
            Origin::Launch => "null".to_owned(),
            Origin::Activate { platform_data } => format!("{{\"platform_data\":{}}}", pd(platform_data)),
            Origin::Open { uris, platform_data } => {
                format!("{{\"uris\":{},\"platform_data\":{}}}", Value::from(uris.clone()), pd(platform_data))
            }
            Origin::ActivateAction { action, parameter, platform_data } => format!(
                "{{\"action\":{},\"parameter\":{},\"platform_data\":{}}}",
                Value::from(action.as_str()),
                Value::Array(parameter.clone()),
                pd(platform_data)
            ),
        }
    }
}

impl Request {
    /// How this request came: a launch over the socket, or (feature `dbus`) a D-Bus call.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// Where a D-Bus request's reply goes: the method call waiting for it. Sent once, by
/// [`Request::reply`] or by the request's drop (an error then).
#[cfg_attr(not(all(feature = "dbus", target_os = "linux")), allow(dead_code))]
pub(crate) struct Answer(Arc<Mutex<Slot>>);

#[cfg_attr(not(all(feature = "dbus", target_os = "linux")), allow(dead_code))]
#[derive(Default)]
struct Slot {
    value: Option<Result<Reply, String>>,
    waker: Option<std::task::Waker>,
    sent: bool,
}

impl Answer {
    /// Hands the outcome to the waiting method call.
    pub(crate) fn send(self, outcome: Result<Reply, String>) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.value = Some(outcome);
        slot.sent = true;
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !slot.sent {
            slot.sent = true;
            slot.value = Some(Err("the primary instance dropped the request without answering".into()));
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }
}

#[cfg(feature = "dbus")]
pub use public::*;

#[cfg(feature = "dbus")]
mod public {
    use std::fmt;
    use std::path::Path;

    use crate::{Error, Primary, Result, SingleInstance};

    /// Which bus a primary answers `org.freedesktop.Application` on:
    /// [`SingleInstance::dbus_bus`]. Feature `dbus`.
    #[non_exhaustive]
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub enum DbusBus {
        /// The session bus (`DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`).
        #[default]
        Session,
        /// The bus at this D-Bus address (`unix:path=/run/user/1000/bus`).
        Address(String),
        /// None: the primary answers its socket only.
        Off,
    }

    /// Whether the primary answers on D-Bus, and if not, why: [`Primary::dbus_status`].
    /// In every case but `Active` the primary still serves its socket. Feature `dbus`.
    #[non_exhaustive]
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum DbusStatus {
        /// It owns the well-known name `name` and serves `org.freedesktop.Application`
        /// at `path`.
        Active {
            /// The app id, as a bus name.
            name: String,
            /// The object path derived from it ([`dbus_object_path`]).
            path: String,
        },
        /// Not asked for ([`DbusBus::Off`]), or the [`System`](crate::Scope::System)
        /// scope, whose primary serves several users and so no one session.
        Off,
        /// Not on this platform (D-Bus is served on Linux only).
        Unsupported,
        /// The app id is not a bus name (it needs two or more dot-separated elements,
        /// none starting with a digit).
        InvalidName(String),
        /// No bus to connect to (none running, or unreachable): the error.
        NoBus(String),
        /// Another connection owns the name (another program, or a process that is no
        /// primary of this app): the bus' owner of it, when known.
        NameTaken(String),
        /// Connected, but the bus refused (the error).
        Failed(String),
    }

    impl fmt::Display for DbusStatus {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                DbusStatus::Active { name, path } => write!(f, "owns {name}, serves {path}"),
                DbusStatus::Off => f.write_str("off"),
                DbusStatus::Unsupported => f.write_str("off: not supported on this platform"),
                DbusStatus::InvalidName(why) => write!(f, "off: the app id is no bus name: {why}"),
                DbusStatus::NoBus(why) => write!(f, "off: no bus: {why}"),
                DbusStatus::NameTaken(owner) => write!(f, "off: the name is owned by {owner}"),
                DbusStatus::Failed(why) => write!(f, "off: {why}"),
            }
        }
    }

    impl SingleInstance {
        /// The bus a primary answers `org.freedesktop.Application` on (feature `dbus`,
        /// Linux). Default: [`DbusBus::Session`].
        pub fn dbus_bus(mut self, bus: DbusBus) -> Self {
            self.dbus_bus = bus;
            self
        }
    }

    impl Primary {
        /// Whether this primary answers on D-Bus, and if not, why. Feature `dbus`.
        pub fn dbus_status(&self) -> &DbusStatus {
            &self.dbus.status
        }
    }

    /// The object path of an app id's `org.freedesktop.Application`, as the Desktop Entry
    /// Specification derives it: `/` first, each `.` a `/`, each `-` a `_`
    /// (`org.example.Editor` → `/org/example/Editor`). Feature `dbus`.
    pub fn dbus_object_path(app_id: &str) -> String {
        let mut path = String::with_capacity(app_id.len() + 1);
        path.push('/');
        path.extend(app_id.chars().map(|c| match c {
            '.' => '/',
            '-' => '_',
            c => c,
        }));
        path
    }

    /// The text of the D-Bus service file that lets the bus start the app
    /// (`DBusActivatable=true`): install it as
    /// `$XDG_DATA_DIRS/dbus-1/services/<app_id>.service` (`/usr/share/dbus-1/services/`,
    /// `~/.local/share/dbus-1/services/`). `exec` is the program and its arguments; each
    /// is quoted for the bus' shell-like `Exec=` parsing when it needs to be.
    /// Feature `dbus`.
    ///
    /// # Errors
    /// [`Error::InvalidAppId`] when `app_id` is not a bus name; [`Error::Io`]
    /// (`InvalidInput`) when `exec` is empty or not UTF-8 (a service file is text).
    pub fn dbus_service_file<S: AsRef<std::ffi::OsStr>>(app_id: &str, exec: &[S]) -> Result<String> {
        check_bus_name(app_id).map_err(|why| Error::InvalidAppId(why.into()))?;
        if exec.is_empty() {
            return Err(invalid("the service file needs a program to run".into()));
        }
        let mut line = Vec::new();
        for arg in exec {
            let arg = arg.as_ref();
            let Some(arg) = arg.to_str() else {
                return Err(invalid(format!(
                    "{} is not UTF-8: a service file is text",
                    Path::new(arg).display()
                )));
            };
            line.push(shell_quote(arg));
        }
        Ok(format!("[D-BUS Service]\nName={app_id}\nExec={}\n", line.join(" ")))
    }

    fn invalid(why: String) -> Error {
        Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, why))
    }

    fn shell_quote(arg: &str) -> String {
        let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
        if !arg.is_empty() && arg.chars().all(plain) {
            arg.to_owned()
        } else {
            format!("'{}'", arg.replace('\'', "'\\''"))
        }
    }

    /// Whether `name` is a well-known bus name: 2+ elements of `[A-Za-z0-9_-]`, none empty
    /// or starting with a digit, at most 255 bytes.
    pub(crate) fn check_bus_name(name: &str) -> std::result::Result<(), String> {
        let parts: Vec<&str> = name.split('.').collect();
        if name.len() > 255 {
            return Err(format!("{name:?} is longer than 255 bytes"));
        }
        if parts.len() < 2 {
            return Err(format!("{name:?} has no `.`: a bus name has two elements or more"));
        }
        for p in parts {
            if p.is_empty() || p.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!("{name:?} has an element that is empty or starts with a digit"));
            }
            if !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(format!("{name:?} has a character other than A-Z a-z 0-9 _ -"));
            }
        }
        Ok(())
    }
}

/// The primary's D-Bus side: its connection (which owns the name) and status.
#[cfg(feature = "dbus")]
pub(crate) struct Dbus {
    status: DbusStatus,
    #[cfg(target_os = "linux")]
    conn: Option<zbus::blocking::Connection>,
}

#[cfg(all(feature = "dbus", not(target_os = "linux")))]
impl Dbus {
    pub(crate) fn start(config: &super::SingleInstance, _ctx: &Arc<super::primary::Context>) -> Dbus {
        let status = match config.dbus_bus {
            DbusBus::Off => DbusStatus::Off,
            _ => DbusStatus::Unsupported,
        };
        Dbus { status }
    }

    pub(crate) fn stop(&mut self) {}
}

#[cfg(all(feature = "dbus", target_os = "linux"))]
mod linux {
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
    use crate::instance::primary::{Context, Event};
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
            let conn = match builder
                .and_then(|b| b.method_timeout(config.timeout).serve_at(path.as_str(), app))
                .and_then(|b| b.build())
            {
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
            let closing =
                std::thread::Builder::new().name("solo-instance D-Bus close".into()).spawn(move || {
                    conn.graceful_shutdown();
                    let _ = done.send(());
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

        async fn open(
            &self,
            uris: Vec<String>,
            platform_data: HashMap<String, OwnedValue>,
        ) -> fdo::Result<()> {
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
                for (key, var) in [
                    ("activation-token", "XDG_ACTIVATION_TOKEN"),
                    ("desktop-startup-id", "DESKTOP_STARTUP_ID"),
                ] {
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
            #[cfg(feature = "tokio")]
            ctx.notify.notify_waiters();
            let waker = ctx.waker.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(w) = waker {
                w();
            }
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
}
