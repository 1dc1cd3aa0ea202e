//! With the `dbus` feature, the primary's second channel: `org.freedesktop.Application`
//! on the session bus (Linux), each call a [`Request`](super::Request) in the same queue
//! as the socket's launches, let in by the same [`Inbox`](super::inbox::Inbox). How a
//! request came and where a call's reply goes are the request's (`origin.rs`).

#[cfg(all(feature = "dbus", not(target_os = "linux")))]
use std::sync::Arc;

pub use super::origin::Origin;
#[cfg(all(feature = "dbus", target_os = "linux"))]
pub(crate) use super::origin::{Answer, Outcome, Slot};

#[cfg(feature = "dbus")]
pub use public::*;

#[cfg(feature = "dbus")]
mod public;

#[cfg(feature = "dbus")]
mod uri;

/// Elsewhere than Linux: the status only.
#[cfg(all(feature = "dbus", not(target_os = "linux")))]
pub(crate) struct Dbus {
    status: DbusStatus,
}

#[cfg(all(feature = "dbus", not(target_os = "linux")))]
impl Dbus {
    pub(crate) fn start(config: &super::SingleInstance, _inbox: &Arc<super::inbox::Inbox>) -> Dbus {
        let status = match config.dbus_bus {
            DbusBus::Off => DbusStatus::Off,
            _ => DbusStatus::Unsupported,
        };
        Dbus { status }
    }

    pub(crate) fn status(&self) -> DbusStatus {
        self.status.clone()
    }

    pub(crate) fn stop(&mut self) {}

    pub(crate) fn finish(&mut self) {}
}

#[cfg(all(feature = "dbus", target_os = "linux"))]
mod linux;
#[cfg(all(feature = "dbus", target_os = "linux"))]
pub(crate) use linux::Dbus;
