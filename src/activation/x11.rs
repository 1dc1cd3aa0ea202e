//! `_NET_ACTIVE_WINDOW` through x11rb, on a connection of its own to `$DISPLAY` (window
//! ids are the server's, so any client may name the app's window).

use x11rb::protocol::xproto::{AtomEnum, ClientMessageEvent, ConnectionExt, EventMask};
use x11rb::rust_connection::RustConnection;

use super::{ActivationError, ActivationErrorKind};

/// EWMH source indication: the request comes from an application.
const SOURCE_APPLICATION: u32 = 1;

fn x11_error(what: &str, e: impl std::fmt::Display) -> ActivationError {
    ActivationError::new(ActivationErrorKind::Connection, format!("X11: {what}: {e}"))
}

/// Asks the window manager to activate `window`: a `_NET_ACTIVE_WINDOW` client message to
/// the root window, as EWMH says (mask SubstructureRedirect | SubstructureNotify, source
/// indication 1, the user's `timestamp`, no currently active window of the app's own).
pub(super) fn activate(window: u32, timestamp: u32) -> Result<(), ActivationError> {
    let (conn, _) = x11rb::connect(None).map_err(|e| x11_error("cannot connect to $DISPLAY", e))?;
    // The window's own root, which also checks that it exists on this server.
    let root = conn
        .query_tree(window)
        .map_err(|e| x11_error("query_tree", e))?
        .reply()
        .map_err(|e| x11_error(&format!("no window {window:#x} on $DISPLAY"), e))?
        .root;
    let net_active_window = atom(&conn, b"_NET_ACTIVE_WINDOW")?;
    let net_supported = atom(&conn, b"_NET_SUPPORTED")?;
    let supported = conn
        .get_property(false, root, net_supported, AtomEnum::ATOM, 0, 4096)
        .map_err(|e| x11_error("get_property", e))?
        .reply()
        .map_err(|e| x11_error("_NET_SUPPORTED", e))?;
    if !supported.value32().into_iter().flatten().any(|a| a == net_active_window) {
        return Err(ActivationError::new(
            ActivationErrorKind::NoProtocol,
            "X11: the window manager does not support _NET_ACTIVE_WINDOW (none runs, or its _NET_SUPPORTED lacks it)",
        ));
    }
    let event =
        ClientMessageEvent::new(32, window, net_active_window, [SOURCE_APPLICATION, timestamp, 0, 0, 0]);
    conn.send_event(false, root, EventMask::SUBSTRUCTURE_REDIRECT | EventMask::SUBSTRUCTURE_NOTIFY, event)
        .map_err(|e| x11_error("send_event", e))?
        .check()
        .map_err(|e| x11_error("send_event", e))?;
    Ok(())
}

fn atom(conn: &RustConnection, name: &[u8]) -> Result<u32, ActivationError> {
    Ok(conn
        .intern_atom(false, name)
        .map_err(|e| x11_error("intern_atom", e))?
        .reply()
        .map_err(|e| x11_error("intern_atom", e))?
        .atom)
}
