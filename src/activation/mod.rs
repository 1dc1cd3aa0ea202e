//! Bringing the app's existing window to the front for a request (feature `activation`).
//!
//! A launch that finds the primary usually exists to show the running window. The desktop
//! lets a window take the focus only when the user asked for it, and the launch carries
//! that proof; [`raise`] hands it to the window system for the window the app already
//! has, which it takes through [`raw-window-handle`](raw_window_handle) (winit, eframe,
//! Slint and iced hand it out):
//!
//! | window on | what [`raise`] does |
//! |---|---|
//! | Wayland | `xdg_activation_v1.activate` on the window's own surface, with the launch's token ([`Request::activation_token`]) |
//! | X11 | `_NET_ACTIVE_WINDOW` to the root window (mask SubstructureRedirect and SubstructureNotify), source indication 1 (an application), the timestamp from `DESKTOP_STARTUP_ID`'s `_TIME<n>` (0 when there is none) |
//! | Windows | `SetForegroundWindow` (restored first if minimized); the launch handed its foreground right to this process (`AllowSetForegroundWindow`) before it sent the request |
//! | macOS, others | nothing: an [`ActivationErrorKind::Unsupported`] error (winit's `focus_window` does it on macOS) |
//!
//! A Wayland surface is an object of one client connection, so the request goes out on the
//! app's own: the `wl_display` its display handle names, through wayland-backend's system
//! backend (libwayland-client, loaded at run time). A connection of the crate's own could
//! not name the window.
//!
//! A launch on Wayland with no `XDG_ACTIVATION_TOKEN` asks the compositor for a token
//! (`xdg_activation_v1.get_activation_token`) and forwards that, as GApplication's
//! launchers do; it waits at most [`LAUNCH_TOKEN_TIMEOUT`] for it, so a frozen compositor
//! never holds a launch up, and forwards none when there is none.
//!
//! Neither protocol answers the activation itself: a compositor that refuses it (a token
//! it does not know, already used or expired; or its focus policy, e.g. sway's default
//! `focus_on_window_activation urgent`, which only marks the window) says nothing, and
//! neither does a window manager. [`raise`] returns `Ok` once the request was delivered,
//! and an error only for what it can see: no token, no such protocol, a window system
//! that refused the call, a broken connection.
//!
//! GTK 4 and Qt 6 apps need none of this: `gtk_window_present` after
//! `gtk_window_set_startup_id` with the token, or `QWindow::requestActivate` with
//! `XDG_ACTIVATION_TOKEN` set to it.
//!
//! ```no_run
//! use raw_window_handle::{HasDisplayHandle, HasWindowHandle};
//!
//! // `window`: a winit `Window`, an eframe `Frame`, ...
//! pub fn serve<W: HasWindowHandle + HasDisplayHandle>(window: &W, primary: &solo_instance::Primary) {
//!     while let Ok(request) = primary.try_recv() {
//!         // ... open what it asks for ...
//!         if let Err(e) = solo_instance::activation::raise(window, &request) {
//!             eprintln!("the window was not raised: {e}");
//!         }
//!         let _ = request.reply(solo_instance::Reply::ok());
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! [`Request::activation_token`]: crate::Request::activation_token

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::time::Duration;

#[cfg(target_os = "linux")]
use raw_window_handle::RawDisplayHandle;
#[cfg(any(target_os = "linux", windows))]
use raw_window_handle::RawWindowHandle;
use raw_window_handle::{HasDisplayHandle, HasWindowHandle};

use crate::Request;

#[cfg(target_os = "linux")]
mod wayland;
#[cfg(windows)]
mod windows;
#[cfg(target_os = "linux")]
mod x11;

/// How long a launch on Wayland with no token waits for the compositor to give it one.
pub const LAUNCH_TOKEN_TIMEOUT: Duration = Duration::from_millis(500);

/// The longest token [`raise`] passes on, in bytes. A Wayland message is at most 4096
/// bytes, and one that does not fit would break the app's own connection; real tokens are
/// tens of bytes.
pub const MAX_TOKEN_LEN: usize = 1024;

/// Brings `window` to the front for `request`, with the proof of user action the launch
/// forwarded (see the [module docs](self) for what each platform does).
///
/// Call it on the thread that runs the window's event loop (winit's, eframe's `update`):
/// on Wayland it sends on the app's own connection and waits for the compositor's answer
/// to a round trip, at most one second.
///
/// # Errors
/// [`ActivationErrorKind::NoToken`] when the request carried no usable token (Wayland);
/// [`ActivationErrorKind::NoProtocol`] when the compositor has no `xdg_activation_v1` or
/// the window manager does not list `_NET_ACTIVE_WINDOW` in `_NET_SUPPORTED`;
/// [`ActivationErrorKind::Refused`] when the window system refused the call
/// (`SetForegroundWindow`); [`ActivationErrorKind::Connection`] for a broken or
/// unanswering connection; [`ActivationErrorKind::Unsupported`] for a window this does not
/// know how to raise (macOS, a web canvas, no handle yet).
pub fn raise<W>(window: &W, request: &Request) -> Result<(), ActivationError>
where
    W: HasWindowHandle + HasDisplayHandle + ?Sized,
{
    let window_handle = window
        .window_handle()
        .map_err(|e| {
            ActivationError::new(ActivationErrorKind::Unsupported, format!("no window handle: {e}"))
        })?
        .as_raw();
    let display_handle = window
        .display_handle()
        .map_err(|e| {
            ActivationError::new(ActivationErrorKind::Unsupported, format!("no display handle: {e}"))
        })?
        .as_raw();
    match (window_handle, display_handle) {
        #[cfg(target_os = "linux")]
        (RawWindowHandle::Wayland(surface), RawDisplayHandle::Wayland(display)) => {
            let token = wayland_token(request.activation_token())?;
            wayland::activate(display.display, surface.surface, token)
        }
        #[cfg(target_os = "linux")]
        (RawWindowHandle::Xlib(w), _) => x11::activate(w.window as u32, startup_time(request.env())),
        #[cfg(target_os = "linux")]
        (RawWindowHandle::Xcb(w), _) => x11::activate(w.window.get(), startup_time(request.env())),
        #[cfg(windows)]
        (RawWindowHandle::Win32(w), _) => windows::activate(w.hwnd.get()),
        (other, _) => {
            let _ = request;
            Err(ActivationError::new(
                ActivationErrorKind::Unsupported,
                format!("cannot raise a window of this kind here: {other:?}"),
            ))
        }
    }
}

/// Asks the Wayland compositor (`$WAYLAND_DISPLAY`) for an activation token for
/// `app_id`, as a launcher does before it starts or hands over to an app: the token to
/// put in the started app's `XDG_ACTIVATION_TOKEN`. Waits at most `timeout`.
///
/// The request names no surface and no input event: a compositor may refuse it (no
/// `done` comes), or hand out a token that only marks the window instead of focusing it.
///
/// # Errors
/// [`ActivationErrorKind::Unsupported`] off Linux, or with no `WAYLAND_DISPLAY`;
/// [`ActivationErrorKind::NoProtocol`] when the compositor has no `xdg_activation_v1`;
/// [`ActivationErrorKind::Connection`] when it cannot be reached, breaks the connection or
/// does not answer within `timeout`.
pub fn request_token(app_id: &str, timeout: Duration) -> Result<String, ActivationError> {
    #[cfg(target_os = "linux")]
    {
        wayland::request_token(app_id.to_owned(), timeout)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (app_id, timeout);
        Err(ActivationError::new(ActivationErrorKind::Unsupported, "xdg-activation is Linux-only here"))
    }
}

/// The launch's hook: with `WAYLAND_DISPLAY` set and no `XDG_ACTIVATION_TOKEN` among the
/// variables it forwards, asks the compositor for a token and forwards that. Any failure
/// leaves `env` as it was: the launch goes on without a token.
pub(crate) fn add_launch_token(env: &mut BTreeMap<String, OsString>, app_id: &str) {
    const VAR: &str = "XDG_ACTIVATION_TOKEN";
    if env.contains_key(VAR) || std::env::var_os("WAYLAND_DISPLAY").map_or(true, |d| d.is_empty()) {
        return;
    }
    if let Ok(token) = request_token(app_id, LAUNCH_TOKEN_TIMEOUT) {
        env.insert(VAR.to_owned(), token.into());
    }
}

/// A forwarded token as the Wayland request takes it: UTF-8, printable, bounded.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn wayland_token(token: Option<&OsStr>) -> Result<String, ActivationError> {
    let no = |why: &str| Err(ActivationError::new(ActivationErrorKind::NoToken, why.to_owned()));
    let Some(token) = token else {
        return no("the launch forwarded no XDG_ACTIVATION_TOKEN or DESKTOP_STARTUP_ID");
    };
    let Some(token) = token.to_str() else { return no("the launch's token is not UTF-8") };
    if token.is_empty() {
        return no("the launch's token is empty");
    }
    if token.len() > MAX_TOKEN_LEN {
        return no("the launch's token is longer than MAX_TOKEN_LEN");
    }
    if token.chars().any(char::is_control) {
        return no("the launch's token has control characters");
    }
    Ok(token.to_owned())
}

/// The X server time in `DESKTOP_STARTUP_ID`'s `_TIME<n>` suffix (the startup-notification
/// spec's), 0 (CurrentTime) when there is none or it is not a 32-bit number.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn startup_time(env: &BTreeMap<String, OsString>) -> u32 {
    let Some(id) = env.get("DESKTOP_STARTUP_ID").and_then(|id| id.to_str()) else { return 0 };
    let Some(at) = id.rfind("_TIME") else { return 0 };
    let digits = &id[at + "_TIME".len()..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().unwrap_or(0)
}

/// Why a window was not raised.
#[derive(Debug)]
pub struct ActivationError {
    kind: ActivationErrorKind,
    message: String,
}

/// The kinds of [`ActivationError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActivationErrorKind {
    /// This kind of window, or this platform, has no way here (macOS, a web canvas).
    Unsupported,
    /// The request carried no usable activation token (Wayland needs one).
    NoToken,
    /// The compositor has no `xdg_activation_v1`, or the window manager does not support
    /// `_NET_ACTIVE_WINDOW` (none running, or one without EWMH).
    NoProtocol,
    /// The window system refused the call (Windows: `SetForegroundWindow`).
    Refused,
    /// The connection to the window system failed, broke, or did not answer in time.
    Connection,
}

impl ActivationError {
    pub(crate) fn new(kind: ActivationErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// What went wrong.
    pub fn kind(&self) -> ActivationErrorKind {
        self.kind
    }
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ActivationError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str) -> BTreeMap<String, OsString> {
        BTreeMap::from([("DESKTOP_STARTUP_ID".to_owned(), OsString::from(id))])
    }

    #[test]
    fn startup_time_reads_the_time_suffix() {
        assert_eq!(startup_time(&env("gnome-shell/gedit/1234-0-host_TIME4242")), 4242);
        assert_eq!(startup_time(&env("a_TIME1_TIME77")), 77);
        assert_eq!(startup_time(&env("x_TIME123 y")), 123);
        assert_eq!(startup_time(&env("no-time")), 0);
        assert_eq!(startup_time(&env("x_TIME")), 0);
        assert_eq!(startup_time(&env("x_TIME99999999999")), 0);
        assert_eq!(startup_time(&BTreeMap::new()), 0);
    }

    #[test]
    fn wayland_token_refuses_what_would_break_the_connection() {
        assert_eq!(wayland_token(Some(OsStr::new("abc"))).unwrap(), "abc");
        for bad in [None, Some(""), Some("a\0b"), Some("a\nb")] {
            let e = wayland_token(bad.map(OsStr::new)).unwrap_err();
            assert_eq!(e.kind(), ActivationErrorKind::NoToken, "{bad:?}");
        }
        let long = "t".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(wayland_token(Some(OsStr::new(&long))).unwrap_err().kind(), ActivationErrorKind::NoToken);
    }
}
