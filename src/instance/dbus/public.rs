//! The `dbus` feature's public items: the bus to use, the status, the object path and the
//! service file.

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
    /// primary of this app): the bus' owner of it, when known. The primary waits in the
    /// bus' queue for the name, and takes it (the status turns `Active`) once the owner
    /// lets it go.
    NameTaken(String),
    /// The bus has not answered yet (connecting, authenticating or asking for the name)
    /// within the start's deadline (the [timeout](crate::SingleInstance::timeout), at most
    /// 2 s): a frozen or silent bus. The primary serves its socket meanwhile and keeps
    /// trying in the background; the status turns `Active` (or says why not) once the bus
    /// answers.
    Pending(String),
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
            DbusStatus::NameTaken(owner) => write!(f, "off: the name is owned by {owner} (queued for it)"),
            DbusStatus::Pending(why) => write!(f, "off for now: {why}"),
            DbusStatus::Failed(why) => write!(f, "off: {why}"),
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "dbus")))]
impl SingleInstance {
    /// The bus a primary answers `org.freedesktop.Application` on (feature `dbus`,
    /// Linux). Default: [`DbusBus::Session`].
    pub fn dbus_bus(mut self, bus: DbusBus) -> Self {
        self.dbus_bus = bus;
        self
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "dbus")))]
impl Primary {
    /// Whether this primary answers on D-Bus, and if not, why, as of now: the connection
    /// is set up in the background, so a `Pending` or `NameTaken` status can turn
    /// `Active` later. Feature `dbus`.
    pub fn dbus_status(&self) -> DbusStatus {
        self.dbus.status()
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
