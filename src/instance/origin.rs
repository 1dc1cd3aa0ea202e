//! How a request came ([`Origin`]: a launch, or a D-Bus call) and, for a D-Bus call,
//! where its reply goes ([`Answer`]): the request's side of the D-Bus channel (`dbus`),
//! which builds them.

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
/// [`Request::reply`] or by the request's drop (an error then, or while the primary shuts
/// down, a hand-off to its successor).
#[cfg_attr(not(all(feature = "dbus", target_os = "linux")), allow(dead_code))]
pub(crate) struct Answer(pub(crate) Arc<Mutex<Slot>>);

/// What a waiting method call is told.
#[cfg_attr(not(all(feature = "dbus", target_os = "linux")), allow(dead_code))]
pub(crate) enum Outcome {
    /// The app's reply.
    Reply(Reply),
    /// The call fails with this text.
    Error(String),
    /// The primary shuts down with the call unanswered: the call goes to whoever owns the
    /// name next (a successor, or one the bus starts).
    HandOff,
}

#[cfg_attr(not(all(feature = "dbus", target_os = "linux")), allow(dead_code))]
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) value: Option<Outcome>,
    pub(crate) waker: Option<std::task::Waker>,
    pub(crate) sent: bool,
    /// Counts the calls handed off (the primary's shutdown waits for them).
    pub(crate) handoffs: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl Answer {
    /// Hands the outcome to the waiting method call: [`Delivery::Abandoned`](super::Delivery)
    /// if nothing waits for it any more (the call's future was dropped: its connection
    /// ended, or the primary is shutting down).
    pub(crate) fn send(self, outcome: Result<Reply, String>) -> super::Delivery {
        // The call's `Wait` holds the other reference while it waits.
        let waiting = Arc::strong_count(&self.0) > 1;
        let put = self.put(match outcome {
            Ok(reply) => Outcome::Reply(reply),
            Err(why) => Outcome::Error(why),
        });
        match waiting && put {
            true => super::Delivery::Delivered,
            false => super::Delivery::Abandoned,
        }
    }

    /// The request was dropped unanswered: while the primary shuts down (`closing`) its
    /// call is handed to the successor, as a launch is told to start over; otherwise it
    /// fails.
    pub(crate) fn unanswered(self, closing: bool) {
        self.put(if closing {
            Outcome::HandOff
        } else {
            Outcome::Error("the primary instance dropped the request without answering".into())
        });
    }

    /// Gives the call its outcome; `false` when it had one already.
    fn put(&self, outcome: Outcome) -> bool {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.sent {
            return false;
        }
        if let (Outcome::HandOff, Some(n)) = (&outcome, &slot.handoffs) {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        slot.value = Some(outcome);
        slot.sent = true;
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
        true
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.put(Outcome::Error("the primary instance dropped the request without answering".into()));
    }
}
