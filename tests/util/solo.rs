//! Helpers of the `SingleInstance` tests: the `solo` example run in a private runtime
//! directory, its output lines, raw replies, locks and signals; primaries and launches
//! started in process.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use solo_instance::{LocalSocket, Primary, Reply, SingleInstance, Start};

use super::{example, Proc, TempDir};

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Whether a root-only test must skip (not root): says so on stderr, with `why` it needs
/// root.
pub fn skip_unless_root(why: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skipping {}: needs root ({why})", std::thread::current().name().unwrap_or("test"));
    true
}

/// A fresh directory of mode 0700: private, as the per-user scopes require.
pub fn private_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    set_mode(dir.path(), 0o700);
    dir
}

/// The primary a `start()` returned; panics on a forward or an error.
pub fn primary_of(start: solo_instance::Result<Start>) -> Primary {
    match start {
        Ok(Start::Primary(p)) => p,
        Ok(Start::Forwarded(r)) => panic!("forwarded, not primary: {r:?}"),
        Err(e) => panic!("start: {e}"),
    }
}

/// The reply a forwarded `start()` returned; panics on becoming primary or an error.
pub fn reply_of(start: solo_instance::Result<Start>) -> Reply {
    match start {
        Ok(Start::Forwarded(r)) => r,
        Ok(Start::Primary(p)) => panic!("became primary: {p:?}"),
        Err(e) => panic!("start: {e}"),
    }
}

/// The primary of `app` in `dir`, with argv `["p"]`.
pub fn lib_primary(dir: &Path, app: &str) -> Primary {
    primary_of(SingleInstance::new(app).unwrap().directory(dir).argv(["p"]).start())
}

pub fn signal(pid: u32, sig: libc::c_int) {
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` to completion, stdout and stderr captured. The test's Watchdog covers a hang.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

/// Parses a JSON line the primary printed (or a reply), with the line in the panic.
pub fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
}

/// The `FORWARDED <reply json>` line of a launch, decoded; panics on anything else.
pub fn forwarded(stdout: &str) -> Value {
    let line = stdout.lines().next().unwrap_or_default();
    let reply = line.strip_prefix("FORWARDED ").unwrap_or_else(|| panic!("not forwarded: {stdout:?}"));
    json_line(reply)
}

/// Takes the exclusive lock a primary would hold, as the crate does (flock on the lock file).
pub fn hold_lock(path: &Path) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    if let Err(e) = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        panic!("lock {}: {e:?}", path.display());
    }
    file
}

/// Whether the lock at `path` is free right now (taken and let go at once).
pub fn lock_is_free(path: &Path) -> bool {
    let file = File::options().read(true).write(true).open(path).unwrap();
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// Reads one reply line from a raw connection: `Ok(None)` when the primary closed it
/// (EOF or reset) without a line.
pub fn read_reply(conn: &LocalSocket, timeout: Duration) -> io::Result<Option<String>> {
    conn.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    match BufReader::new(conn).read_line(&mut line) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(line.trim_end().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(None),
        Err(e) => Err(e),
    }
}

/// A private runtime directory (0700, as `XDG_RUNTIME_DIR` is) and an app id.
pub struct Fixture {
    pub dir: TempDir,
    pub app: String,
}

impl Fixture {
    pub fn new(tag: &str) -> Fixture {
        Fixture::in_namespace("org.test", tag)
    }

    /// A fixture whose app id is `<namespace>.<tag>`.
    pub fn in_namespace(namespace: &str, tag: &str) -> Fixture {
        let dir = TempDir::new(tag);
        set_mode(dir.path(), 0o700);
        Fixture { dir, app: format!("{namespace}.{tag}") }
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join(format!("{}.sock", self.app))
    }

    pub fn sock_name(&self) -> String {
        self.sock().to_str().unwrap().to_owned()
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.path().join(format!("{}.lock", self.app))
    }

    /// `solo SUB APP ARGS...` with this fixture's runtime dir, and no activation variables
    /// inherited from whoever runs the tests.
    pub fn cmd<I, S>(&self, sub: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd_with(&example("solo"), sub, args)
    }

    pub fn cmd_with<I, S>(&self, solo: &Path, sub: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(solo);
        cmd.arg(sub)
            .arg(&self.app)
            .args(args)
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .env_remove("XDG_ACTIVATION_TOKEN")
            .env_remove("DESKTOP_STARTUP_ID")
            .env_remove("FLATPAK_ID")
            .current_dir("/");
        cmd
    }

    /// `solo run APP ARGS...`, which must become the primary.
    pub fn primary(&self, args: &[&str]) -> Proc {
        let p = Proc::spawn(&mut self.cmd("run", args));
        assert_eq!(p.line(), format!("PRIMARY {}", self.sock().display()), "stderr: {}", p.stderr());
        p
    }

    /// `solo send APP -- TAG` must be served: exit 0, `FORWARDED` ok, and the primary's next
    /// printed line is this launch's request. Returns that request.
    pub fn send_ok(&self, primary: &Proc, tag: &str) -> Value {
        let out = output(&mut self.cmd("send", ["--", tag]));
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "send {tag}: {:?} {stdout:?} {:?}", out.status, text(&out.stderr));
        let reply = forwarded(&stdout);
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["exit_code"], 0, "{reply}");
        let request = json_line(&primary.line());
        assert_eq!(request["argv"][1], tag, "the primary's next line is not {tag}'s request: {request}");
        request
    }

    pub fn lock_pid(&self) -> u32 {
        let s = std::fs::read_to_string(self.lock()).unwrap();
        s.trim().parse().unwrap_or_else(|_| panic!("lock file holds {s:?}"))
    }
}

pub fn builder(dir: &Path, args: &[&str]) -> SingleInstance {
    SingleInstance::new("org.test.Lib")
        .unwrap()
        .directory(dir)
        .timeout(Duration::from_secs(20))
        .argv(std::iter::once("prog").chain(args.iter().copied()))
}

/// `builder` for the System scope (on Linux an abstract socket: no directory, and no
/// removal watch), app id `id`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn system_builder(id: &str, args: &[&str]) -> SingleInstance {
    SingleInstance::new(id)
        .unwrap()
        .scope(solo_instance::Scope::System)
        .timeout(Duration::from_secs(20))
        .argv(std::iter::once("prog").chain(args.iter().copied()))
}

/// A launch on its own thread: its `start()` result.
pub fn spawn_launch(dir: &Path, args: &[&str]) -> std::thread::JoinHandle<solo_instance::Result<Start>> {
    let b = builder(dir, args);
    std::thread::spawn(move || b.start())
}
