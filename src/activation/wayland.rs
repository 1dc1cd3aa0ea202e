//! xdg-activation-v1 through Smithay's wayland-client: `activate` on the app's own
//! connection and surface, and `get_activation_token` on a connection of the launch's own.

use std::ffi::c_void;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use wayland_client::backend::{Backend, ObjectId};
use wayland_client::protocol::wl_callback::{self, WlCallback};
use wayland_client::protocol::wl_registry::{self, WlRegistry};
use wayland_client::protocol::wl_surface::WlSurface;
use wayland_client::{Connection, Dispatch, EventQueue, Proxy, QueueHandle};
use wayland_protocols::xdg::activation::v1::client::xdg_activation_token_v1::{self, XdgActivationTokenV1};
use wayland_protocols::xdg::activation::v1::client::xdg_activation_v1::XdgActivationV1;

use super::{ActivationError, ActivationErrorKind};

/// How long [`activate`] waits for the compositor's answers on the app's connection.
const ACTIVATE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the event handlers collect on this module's own event queue.
#[derive(Default)]
struct State {
    /// `xdg_activation_v1`'s global name and version, once the registry listed it.
    activation: Option<(u32, u32)>,
    /// The sync callbacks answered so far.
    synced: u32,
    /// The token the compositor gave.
    token: Option<String>,
}

fn connection_error(what: &str, e: impl std::fmt::Display) -> ActivationError {
    ActivationError::new(ActivationErrorKind::Connection, format!("Wayland: {what}: {e}"))
}

/// Sends `xdg_activation_v1.activate(token, surface)` on the app's own connection.
pub(super) fn activate(
    display: NonNull<c_void>,
    surface: NonNull<c_void>,
    token: String,
) -> Result<(), ActivationError> {
    if !wayland_sys::client::is_lib_available() {
        return Err(ActivationError::new(
            ActivationErrorKind::Unsupported,
            "Wayland: libwayland-client cannot be loaded, yet the window is on Wayland",
        ));
    }
    // SAFETY: `display` is the `wl_display` of the window's own connection, which the
    // caller's display handle borrows for this call; the backend made here neither
    // reads nor closes it after the call, and is dropped before the call returns. A
    // backend made from a foreign display never disconnects it.
    let backend = unsafe { Backend::from_foreign_display(display.as_ptr().cast()) };
    let conn = Connection::from_backend(backend);
    // SAFETY: `surface` is the window's `wl_surface` proxy on that same connection, alive
    // while the window handle is borrowed; `from_ptr` checks that its interface is
    // `wl_surface` and refuses anything else.
    let id = unsafe { ObjectId::from_ptr(WlSurface::interface(), surface.as_ptr().cast()) }
        .map_err(|e| connection_error("the window handle's surface", e))?;
    let surface = WlSurface::from_id(&conn, id).map_err(|e| connection_error("the window's surface", e))?;

    let deadline = Instant::now() + ACTIVATE_TIMEOUT;
    let mut queue = conn.new_event_queue::<State>();
    let mut state = State::default();
    let activation = bind_activation(&conn, &mut queue, &mut state, deadline)?;
    activation.activate(token, &surface);
    activation.destroy();
    // A round trip: the compositor has read the request once it answers.
    roundtrip(&conn, &mut queue, &mut state, deadline)
}

/// Asks the compositor at `$WAYLAND_DISPLAY` for a token for `app_id`, on a connection of
/// its own, on a thread of its own: a compositor that does not answer (even its socket's
/// `connect`) holds the caller up for `timeout` at most.
pub(super) fn request_token(app_id: String, timeout: Duration) -> Result<String, ActivationError> {
    let path = socket_path().ok_or_else(|| {
        ActivationError::new(ActivationErrorKind::Unsupported, "Wayland: WAYLAND_DISPLAY is not set")
    })?;
    let deadline = Instant::now() + timeout;
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("solo-instance token".into())
        .spawn(move || {
            let _ = tx.send(token_from(&path, &app_id, deadline));
        })
        .map_err(|e| connection_error("no thread for the token request", e))?;
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(ActivationError::new(
            ActivationErrorKind::Connection,
            format!("Wayland: the compositor gave no activation token within {timeout:?}"),
        ))
    })
}

fn token_from(path: &std::path::Path, app_id: &str, deadline: Instant) -> Result<String, ActivationError> {
    let stream = UnixStream::connect(path).map_err(|e| connection_error(&path.display().to_string(), e))?;
    let conn = Connection::from_socket(stream).map_err(|e| connection_error("connect", e))?;
    let mut queue = conn.new_event_queue::<State>();
    let mut state = State::default();
    let activation = bind_activation(&conn, &mut queue, &mut state, deadline)?;
    let token = activation.get_activation_token(&queue.handle(), ());
    token.set_app_id(app_id.to_owned());
    token.commit();
    while state.token.is_none() {
        wait(&conn, &mut queue, &mut state, deadline, "the activation token")?;
    }
    token.destroy();
    activation.destroy();
    let _ = conn.flush();
    state.token.ok_or_else(|| connection_error("token", "none"))
}

/// `$WAYLAND_DISPLAY`, absolute or under `$XDG_RUNTIME_DIR` (as libwayland reads it).
fn socket_path() -> Option<PathBuf> {
    let name = PathBuf::from(std::env::var_os("WAYLAND_DISPLAY").filter(|d| !d.is_empty())?);
    if name.is_absolute() {
        return Some(name);
    }
    let dir = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?);
    dir.is_absolute().then(|| dir.join(name))
}

/// Lists the globals (one round trip) and binds `xdg_activation_v1`.
fn bind_activation(
    conn: &Connection,
    queue: &mut EventQueue<State>,
    state: &mut State,
    deadline: Instant,
) -> Result<XdgActivationV1, ActivationError> {
    let registry = conn.display().get_registry(&queue.handle(), ());
    roundtrip(conn, queue, state, deadline)?;
    let (name, _) = state.activation.ok_or_else(|| {
        ActivationError::new(
            ActivationErrorKind::NoProtocol,
            "Wayland: the compositor does not offer xdg_activation_v1",
        )
    })?;
    Ok(registry.bind::<XdgActivationV1, _, _>(name, 1, &queue.handle(), ()))
}

/// Sends a `wl_display.sync` and dispatches this queue until its callback is done.
fn roundtrip(
    conn: &Connection,
    queue: &mut EventQueue<State>,
    state: &mut State,
    deadline: Instant,
) -> Result<(), ActivationError> {
    let target = state.synced + 1;
    conn.display().sync(&queue.handle(), ());
    while state.synced < target {
        wait(conn, queue, state, deadline, "a round trip")?;
    }
    Ok(())
}

/// Dispatches what this queue has; with nothing there, waits for the socket until the
/// deadline and reads.
fn wait(
    conn: &Connection,
    queue: &mut EventQueue<State>,
    state: &mut State,
    deadline: Instant,
    what: &str,
) -> Result<(), ActivationError> {
    if queue.dispatch_pending(state).map_err(|e| connection_error("dispatch", e))? > 0 {
        return Ok(());
    }
    queue.flush().map_err(|e| connection_error("flush", e))?;
    let Some(guard) = queue.prepare_read() else { return Ok(()) };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ActivationError::new(
            ActivationErrorKind::Connection,
            format!("Wayland: the compositor did not answer {what} in time"),
        ));
    }
    let timeout = Timespec { tv_sec: left.as_secs() as _, tv_nsec: left.subsec_nanos() as _ };
    let ready = {
        let fd = guard.connection_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        rustix::event::poll(&mut fds, Some(&timeout))
    };
    match ready {
        Ok(0) => Ok(()),
        Ok(_) => guard.read().map(drop).map_err(|e| connection_error("read", e)),
        Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(connection_error("poll", e)),
    }
    .and_then(|()| match conn.protocol_error() {
        Some(e) => Err(connection_error("protocol error", e)),
        None => Ok(()),
    })
}

impl Dispatch<WlRegistry, ()> for State {
    fn event(
        state: &mut Self,
        _: &WlRegistry,
        event: wl_registry::Event,
        (): &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_registry::Event::Global { name, interface, version } = event {
            if interface == XdgActivationV1::interface().name {
                state.activation = Some((name, version));
            }
        }
    }
}

impl Dispatch<WlCallback, ()> for State {
    fn event(
        state: &mut Self,
        _: &WlCallback,
        event: wl_callback::Event,
        (): &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_callback::Event::Done { .. } = event {
            state.synced += 1;
        }
    }
}

impl Dispatch<XdgActivationTokenV1, ()> for State {
    fn event(
        state: &mut Self,
        _: &XdgActivationTokenV1,
        event: xdg_activation_token_v1::Event,
        (): &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_activation_token_v1::Event::Done { token } = event {
            state.token = Some(token);
        }
    }
}

wayland_client::delegate_noop!(State: ignore XdgActivationV1);
