//! [`SingleInstance`]: the first launch of an app becomes the primary; later launches
//! forward their arguments to it and exit with its reply.

#[cfg(feature = "tokio")]
mod asynchronous;
mod dbus;
mod forward;
mod handover;
mod inbox;
mod launch;
mod launch_io;
mod location;
mod lock;
mod origin;
mod primary;
mod published;
mod receive;
mod remote;
mod request;
mod serve;
mod stream;
mod transport;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::protocol::{self, Message, ACTIVATION_VARS, DEFAULT_MAX_MESSAGE_SIZE};
use crate::Reply;
use launch::{connect_options, is_dead};
use location::Location;
pub use location::Scope;
use lock::LockFile;
// D-Bus: `Origin` always; the rest with the `dbus` feature.
pub use dbus::Origin;
#[cfg(feature = "dbus")]
pub use dbus::{dbus_object_path, dbus_service_file, DbusBus, DbusStatus};
pub use launch_io::{Input, Output};
pub use primary::{CallbackPrimary, Health, Primary, Stopper};
pub use request::{Delivery, Request};
pub use stream::OUTPUT_BUFFER;

use crate::Result;

/// The longest a primary waits for a connected client's request line.
const MAX_REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// The default for [`SingleInstance::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of received requests (text and decoded, and what each one's connection
/// pins: see `sys::Connection::PINNED`) that wait for the app or are in its hands; past it
/// launches are told to retry. One request is always let in.
const HELD_BUDGET: usize = 16 << 20;

/// Sets up single-instance behaviour for one app id. A consuming builder; see the
/// [crate docs](crate) for a complete program.
///
/// Each option's default: [`Scope::User`], the scope's own directory, a 5 s
/// [timeout](Self::timeout), a 1 MiB [message limit](Self::max_message_size), this
/// process's argv, cwd and activation variables, and `null` [data](Self::data).
///
/// ```
/// use std::time::Duration;
/// use solo_instance::{Reply, Scope, SingleInstance, Start};
///
/// # let dir = std::env::temp_dir().join(format!("doc-builder-{}", std::process::id()));
/// let app = || {
///     SingleInstance::new("org.example.Viewer")
///         .unwrap()
///         .scope(Scope::User)
///         .directory(&dir) // tests and sandboxes; apps keep the default
///         .timeout(Duration::from_secs(2))
/// };
/// let Start::Primary(primary) = app().argv(["viewer"]).start()? else { unreachable!() };
///
/// // A second launch, here from a thread: it is forwarded, and gets the primary's reply.
/// let second = app().argv(["viewer", "photo.jpg"]);
/// let launch = std::thread::spawn(move || second.start());
/// let request = primary.recv().unwrap();
/// assert_eq!(request.args(), ["photo.jpg"]);
/// request.reply(Reply::ok().with_stdout("shown\n"))?;
/// match launch.join().unwrap()? {
///     Start::Forwarded(reply) => assert_eq!(reply.stdout(), "shown\n"),
///     Start::Primary(_) => unreachable!("the lock is held"),
/// }
/// # drop(primary); let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
#[derive(Clone, Debug)]
pub struct SingleInstance {
    app_id: String,
    scope: Scope,
    dir: Option<PathBuf>,
    timeout: Duration,
    max_message_size: usize,
    argv: Option<Vec<OsString>>,
    env: Vec<String>,
    data: Value,
    /// What the launch asks beyond its request: waiting, stdin, replace (`remote`).
    remote: remote::Asks,
    #[cfg(feature = "dbus")]
    dbus_bus: dbus::DbusBus,
}

/// What [`SingleInstance::start`] found.
#[derive(Debug)]
pub enum Start {
    /// This process is the primary: serve the requests of later launches.
    Primary(Primary),
    /// A primary runs; it received this launch and answered.
    Forwarded(Reply),
}

/// Whether a primary runs, from [`SingleInstance::status`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Whether a process holds the lock.
    pub running: bool,
    /// The primary's pid, as it recorded it.
    pub pid: Option<u32>,
    /// The socket path (a pipe name on Windows: outside the System scope the one the
    /// running primary published, else the file `<app_id>.pipe` that publishes it).
    pub socket: PathBuf,
    /// The lock file.
    pub lock: PathBuf,
}

impl SingleInstance {
    /// Starts a builder for `app_id`: 1 to 200 ASCII letters, digits, `.`, `_` or `-`,
    /// not starting with `.` or `-` (reverse-DNS ids such as `org.example.Editor` fit).
    ///
    /// # Errors
    /// [`Error::InvalidAppId`](crate::Error::InvalidAppId) for any other id.
    pub fn new(app_id: &str) -> Result<Self> {
        location::validate_app_id(app_id)?;
        Ok(SingleInstance {
            app_id: app_id.to_owned(),
            scope: Scope::User,
            dir: None,
            timeout: DEFAULT_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            argv: None,
            env: Vec::new(),
            data: Value::Null,
            remote: remote::Asks::default(),
            #[cfg(feature = "dbus")]
            dbus_bus: dbus::DbusBus::default(),
        })
    }

    /// Who shares the primary. Default: [`Scope::User`].
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Puts the lock and socket in `dir` instead of the scope's directory (created 0700
    /// if missing, refused if another user owns it or others may write to it).
    pub fn directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// How long a launch waits for the primary's reply, and how long the primary waits
    /// for a connected client's request (at most 2 s: a launch writes at once). Default: 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest request the primary reads (and reply a launch reads), in bytes.
    /// Default: 1 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The arguments to forward, program name first. Default: `std::env::args_os()`.
    pub fn argv<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// Also forwards these environment variables (opt-in; the activation variables
    /// `XDG_ACTIVATION_TOKEN` and `DESKTOP_STARTUP_ID` are always forwarded).
    pub fn forward_env<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.env.extend(names.into_iter().map(Into::into));
        self
    }

    /// Custom JSON data to send with the launch. Default: `null`.
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    fn location(&self) -> Result<Location> {
        location::resolve(&self.app_id, self.scope, self.dir.as_deref())
    }

    /// The request, with `argv` (taken from the builder: a launch sends it once).
    fn message(&self, argv: Option<Vec<OsString>>) -> Message {
        let argv = argv.unwrap_or_else(|| std::env::args_os().collect());
        let mut env = BTreeMap::new();
        for name in ACTIVATION_VARS.iter().copied().chain(self.env.iter().map(String::as_str)) {
            if let Some(v) = std::env::var_os(name) {
                env.insert(name.to_owned(), v);
            }
        }
        #[cfg(feature = "activation")] // Wayland, no token: ask the compositor for one.
        crate::activation::add_launch_token(&mut env, &self.app_id);
        Message {
            argv,
            cwd: std::env::current_dir().ok().map(PathBuf::into_os_string),
            env,
            pid: Some(crate::sys::own_pid()),
            data: self.data.clone(),
        }
    }

    /// Becomes the primary, or hands this launch to the running primary and returns its
    /// reply.
    ///
    /// The lock file decides: whoever holds its exclusive lock is the primary. Holding
    /// it, this process removes any socket a crashed primary left behind, listens, and
    /// keeps the lock for the [`Primary`]'s life. Otherwise it connects (retrying while
    /// the primary comes up), sends the request and waits for the reply; a primary that
    /// goes away meanwhile makes it start over, so it may become the primary itself.
    ///
    /// # Errors
    /// [`Error::NoReply`](crate::Error::NoReply) when a primary holds the lock but does not answer within the
    /// [timeout](Self::timeout); [`Error::HandedOver`](crate::Error::HandedOver) when nobody holds it
    /// because the last primary handed over to a process that has not started serving in that time;
    /// [`Error::Rejected`](crate::Error::Rejected) when it answers with an error;
    /// [`Error::Insecure`](crate::Error::Insecure) and [`Error::Io`](crate::Error::Io) for the directory and lock file.
    ///
    /// ```no_run
    /// use solo_instance::{SingleInstance, Start};
    /// match SingleInstance::new("org.example.Editor")?.start()? {
    ///     Start::Primary(_primary) => { /* open the window; serve _primary.requests() */ }
    ///     Start::Forwarded(reply) => {
    ///         reply.print_output(); // what the primary said for this launch
    ///         std::process::exit(reply.exit_code());
    ///     }
    /// }
    /// # Ok::<(), solo_instance::Error>(())
    /// ```
    pub fn start(self) -> Result<Start> {
        crate::sys::as_one_user(|| if self.remote.replace { self.start_replacing() } else { self.run(true) })
    }

    /// Forwards this launch to the running primary and returns its reply; never becomes
    /// the primary.
    ///
    /// # Errors
    /// [`Error::NoPrimary`](crate::Error::NoPrimary) when none runs; otherwise as [`start`](Self::start).
    ///
    /// ```
    /// use solo_instance::{Error, SingleInstance};
    /// # let dir = std::env::temp_dir().join(format!("doc-send-{}", std::process::id()));
    /// let r = SingleInstance::new("org.example.Tool")?.directory(&dir).argv(["tool", "--ping"]).send();
    /// assert!(matches!(r, Err(Error::NoPrimary)));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn send(self) -> Result<Reply> {
        // Only a launch that may become the primary asks the running one to hand over.
        match crate::sys::as_one_user(|| self.replace(false).run(false))? {
            Start::Forwarded(reply) => Ok(reply),
            Start::Primary(_) => unreachable!("send never becomes primary"),
        }
    }

    /// Whether a primary runs, and where. Takes nothing from it: a free lock is let go at
    /// once and no file is removed.
    ///
    /// ```
    /// use solo_instance::{SingleInstance, Start};
    /// # let dir = std::env::temp_dir().join(format!("doc-status-{}", std::process::id()));
    /// let app = || SingleInstance::new("org.example.Clock").unwrap().directory(&dir);
    /// assert!(!app().status()?.running);
    /// let Start::Primary(primary) = app().start()? else { unreachable!() };
    /// let status = app().status()?;
    /// assert!(status.running);
    /// assert_eq!(status.pid, Some(std::process::id()));
    /// assert_eq!(status.socket, primary.socket_path());
    /// # drop(primary); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), solo_instance::Error>(())
    /// ```
    pub fn status(&self) -> Result<Status> {
        let loc = self.location()?;
        if loc.abstract_ns {
            // A primary runs when its name answers (or cannot be told dead), or when the lock
            // is held (by a primary in another network namespace, whose pid is not known).
            let (running, pid) = match connect_options(&loc)
                .timeout(Some(self.timeout.min(Duration::from_millis(200))))
                .connect(&loc.socket.to_string_lossy())
            {
                Ok(s) => (true, s.peer_credentials().ok().and_then(|c| c.pid)),
                Err(e) if !is_dead(&e) => (true, None),
                Err(_) => (LockFile::try_lock(&loc.lock, true)?.is_none(), None),
            };
            return Ok(Status { running, pid, socket: loc.socket, lock: loc.lock });
        }
        let running = LockFile::try_lock(&loc.lock, self.scope == Scope::System)?.is_none();
        // Where a file publishes the name (Windows, outside the System scope): the pipe the
        // primary published, else the file that would publish it.
        let socket = published::file(&loc.socket)
            .filter(|_| running)
            .and_then(published::read)
            .map_or(loc.socket.clone(), |p| p.name);
        Ok(Status {
            running,
            pid: if running { lock::read_pid(&loc.lock) } else { None },
            socket,
            lock: loc.lock,
        })
    }
}
