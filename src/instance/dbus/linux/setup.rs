//! Setting the bus up, on a thread of its own: the connection, the name, the object.

use super::*;

/// Whether `n` more file descriptors can be opened now.
pub(super) fn fds_free(n: usize) -> io::Result<()> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?);
    }
    Ok(())
}

/// The D-Bus thread: sets the bus up, and waits for the name while another connection
/// owns it. A panic inside zbus or async-io turns into the status.
pub(super) fn setup_thread(shared: &Arc<Shared>, bus: &DbusBus, inbox: Arc<Inbox>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup(shared, bus, inbox)));
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
pub(super) fn setup(shared: &Arc<Shared>, bus: &DbusBus, inbox: Arc<Inbox>) -> Option<DbusStatus> {
    let address = match bus {
        DbusBus::Address(a) => a.parse::<zbus::Address>(),
        _ => zbus::Address::session(),
    };
    let address = match address {
        Ok(a) => a,
        Err(e) => return Some(DbusStatus::NoBus(e.to_string())),
    };
    let app = Limited { app: Application { inbox, shared: Arc::clone(shared) }, limit: shared.limit };
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
pub(super) fn no_flags<T: std::ops::BitAnd<Output = T> + std::ops::Not<Output = T> + Copy>(flags: T) -> T {
    flags & !flags
}

/// The socket address of a `unix:path=` or `unix:abstract=` address.
pub(super) fn unix_target(address: &zbus::Address) -> Option<std::os::unix::net::SocketAddr> {
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
