//! The Unix half of `util`: file modes and ids, the example binaries, the Qt peers, child
//! processes whose lines arrive on a channel, signal masks and context switches.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::{TempDir, LINE_TIMEOUT};

/// The effective uid and gid of this process, read from a file it creates.
pub fn my_uid_gid() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("id");
    let file = dir.path().join("f");
    std::fs::write(&file, b"").unwrap();
    let meta = std::fs::metadata(&file).unwrap();
    (meta.uid(), meta.gid())
}

/// `stat`'s permission bits of `path`.
pub fn mode_of(path: impl AsRef<Path>) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let path = path.as_ref();
    std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).permissions().mode()
        & 0o777
}

/// Device and inode of `path` (not following a symlink).
pub fn file_id(path: impl AsRef<Path>) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

/// `target/<profile>`: the directory above `deps/`, where this test binary lives.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory");
    deps.parent().expect("profile directory").to_path_buf()
}

/// The path of example `name`, built once per test process.
///
/// `cargo test` builds the examples along with the tests, but `cargo test --test X`
/// does not, and a stale binary would test old code; so this runs
/// `$CARGO build --example NAME` (quick when it is up to date; cargo does not hold its
/// build lock while tests run) and takes the executable cargo reports. Without `CARGO`
/// (a test binary run by hand) it falls back to `target/<profile>/examples/NAME`.
pub fn example(name: &'static str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(&'static str, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| *n == name) {
        return path.clone();
    }
    let path = build_example(name);
    built.push((name, path.clone()));
    path
}

fn build_example(name: &str) -> PathBuf {
    let fallback = profile_dir().join("examples").join(name);
    let Some(cargo) = std::env::var_os("CARGO") else {
        assert!(fallback.exists(), "{} is missing and CARGO is not set to build it", fallback.display());
        return fallback;
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--message-format=json-render-diagnostics", "--example", name])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(Stdio::inherit());
    // The examples speak D-Bus when the tests were built with it (tests/dbus.rs).
    if cfg!(feature = "dbus") {
        cmd.args(["--features", "dbus"]);
    }
    // Build with the profile the tests were built with, into the same target directory.
    let profile = profile_dir();
    match profile.file_name().and_then(|p| p.to_str()) {
        Some("debug") | None => {}
        Some(other) => {
            cmd.arg("--profile").arg(other);
        }
    }
    let out = cmd.output().expect("run cargo build");
    assert!(out.status.success(), "cargo build --example {name} failed: {}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == name
            && msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "example"))
        {
            if let Some(exe) = msg["executable"].as_str() {
                return PathBuf::from(exe);
            }
        }
    }
    panic!("cargo build --example {name} reported no executable");
}

/// A Qt major version the project's Qt peer is built against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qt {
    V5,
    V6,
}

impl Qt {
    /// pkg-config's modules for this Qt.
    fn modules(self) -> [&'static str; 2] {
        match self {
            Qt::V5 => ["Qt5Network", "Qt5Core"],
            Qt::V6 => ["Qt6Network", "Qt6Core"],
        }
    }

    /// The Debian package that provides them.
    fn package(self) -> &'static str {
        match self {
            Qt::V5 => "qtbase5-dev",
            Qt::V6 => "qt6-base-dev",
        }
    }

    /// The peer's file name in `target/qt-peer/` (Qt 5's keeps the name
    /// `benches/compare.sh` uses).
    fn binary(self) -> &'static str {
        match self {
            Qt::V5 => "qt_peer",
            Qt::V6 => "qt6_peer",
        }
    }
}

/// The project's Qt peer built against Qt 5; see [`qt_peer_of`].
pub fn qt_peer() -> Option<PathBuf> {
    qt_peer_of(Qt::V5)
}

/// The project's Qt peer (`tests/qt/qt_peer.cpp`) built against `qt`, with g++ and
/// pkg-config's flags (`-fPIC -std=c++17`, which Debian's Qt 6 needs), into
/// `target/qt-peer/` once per test process, rebuilt when the source is newer. Without
/// that Qt (or g++): `None` after printing a skip notice, or a panic when
/// `SOLO_REQUIRE_QT=1`. A failing compile with Qt present always panics.
pub fn qt_peer_of(qt: Qt) -> Option<PathBuf> {
    static PEERS: [OnceLock<Result<PathBuf, String>>; 2] = [OnceLock::new(), OnceLock::new()];
    match PEERS[qt as usize].get_or_init(|| build_qt_peer(qt)) {
        Ok(path) => Some(path.clone()),
        Err(why) => {
            if std::env::var("SOLO_REQUIRE_QT").as_deref() == Ok("1") {
                panic!("SOLO_REQUIRE_QT=1 but the {qt:?} peer is unavailable: {why}");
            }
            eprintln!("skipping {} for {qt:?}: {why}", thread::current().name().unwrap_or("test"));
            None
        }
    }
}

fn build_qt_peer(qt: Qt) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qt/qt_peer.cpp");
    let out_dir = profile_dir().parent().expect("target directory").join("qt-peer");
    let out = out_dir.join(qt.binary());
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(src)) = (mtime(&out), mtime(&source)) {
        if built >= src {
            return Ok(out);
        }
    }
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs"])
        .args(qt.modules())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("pkg-config: {e}"))?;
    if !flags.status.success() {
        return Err(format!("pkg-config finds no {} (install {})", qt.modules()[0], qt.package()));
    }
    let flags = String::from_utf8(flags.stdout).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("mkdir {}: {e}", out_dir.display()))?;
    // Compile to a private name, then rename: another test process may be building too.
    let tmp = out_dir.join(format!("{}.tmp{}", qt.binary(), std::process::id()));
    let status = match Command::new("g++")
        .args(["-O2", "-fPIC", "-std=c++17"])
        .arg(&source)
        .arg("-o")
        .arg(&tmp)
        .args(flags.split_whitespace())
        .status()
    {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("no g++".into()),
        Err(e) => panic!("g++: {e}"),
    };
    assert!(status.success(), "compiling {} against {qt:?} failed: {status}", source.display());
    std::fs::rename(&tmp, &out).unwrap();
    Ok(out)
}

/// A child process whose stdout lines arrive on a channel (read by a thread), killed on
/// drop. Its stderr is collected for failure messages. Its stdin is `/dev/null`, or a
/// pipe the test writes ([`Proc::spawn_with_stdin`]).
#[derive(Debug)]
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Disconnected once stderr has ended and all of it is in `stderr`.
    stderr_done: Receiver<()>,
    what: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Self::spawn_from(cmd.stdin(Stdio::null()))
    }

    /// As [`spawn`](Self::spawn), with a pipe to the child's stdin ([`stdin`](Self::stdin)),
    /// closed by [`close_stdin`](Self::close_stdin) or `finish`.
    pub fn spawn_with_stdin(cmd: &mut Command) -> Proc {
        Self::spawn_from(cmd.stdin(Stdio::piped()))
    }

    fn spawn_from(cmd: &mut Command) -> Proc {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        let (done, stderr_done) = mpsc::channel::<()>();
        thread::spawn(move || {
            let _done = done;
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc { stdin: child.stdin.take(), child, lines, stderr, stderr_done, what }
    }

    /// The pipe to the child's stdin; panics if it was spawned without one or it is closed.
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("a stdin pipe, still open")
    }

    /// Closes the child's stdin: it reads the end.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// The next stdout line; panics if none comes within [`LINE_TIMEOUT`] or stdout ends.
    pub fn line(&self) -> String {
        self.try_line(LINE_TIMEOUT)
            .unwrap_or_else(|why| panic!("{}: {why}; stderr: {:?}", self.what, self.stderr.lock().unwrap()))
    }

    /// The next stdout line within `timeout`, or why there is none.
    pub fn try_line(&self, timeout: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(format!("no line within {timeout:?}")),
            Err(RecvTimeoutError::Disconnected) => Err("stdout ended".into()),
        }
    }

    /// The rest of stdout and the exit status, waiting at most [`LINE_TIMEOUT`] for
    /// stdout to end.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        self.close_stdin();
        let deadline = Instant::now() + LINE_TIMEOUT;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: still running after {LINE_TIMEOUT:?}; stdout so far {rest:?}", self.what)
                }
            }
        }
        // stdout is closed: the process is exiting; wait reaps it.
        let status = self.child.wait().unwrap();
        // And all of its stderr is read (unless a child of its own still holds the pipe).
        let _ = self.stderr_done.recv_timeout(LINE_TIMEOUT);
        (status, rest)
    }

    /// The exit status and all of stderr, once the process has exited (its stdin closed
    /// first); the rest of stdout is dropped.
    pub fn finish_with_stderr(self) -> (ExitStatus, String) {
        let stderr = Arc::clone(&self.stderr);
        let (status, _) = self.finish();
        let all = stderr.lock().unwrap().clone();
        (status, all)
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to completion: its exit status and stdout lines.
pub fn run(cmd: &mut Command) -> (ExitStatus, Vec<String>) {
    Proc::spawn(cmd).finish()
}

/// SIGINT and SIGTERM, as bits of a signal mask in `/proc/<pid>/task/<tid>/status`.
#[cfg(unix)]
pub const INT_TERM: u64 = (1 << (libc::SIGINT - 1)) | (1 << (libc::SIGTERM - 1));

/// The blocked-signal mask (`SigBlk:`) of a `/proc/.../status` text.
pub fn blocked_signals(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("SigBlk:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// Voluntary and involuntary context switches of every thread of `pid`.
#[cfg(target_os = "linux")]
pub fn switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// Samples after the process has settled, over a window of idle time.
#[cfg(target_os = "linux")]
pub fn idle_switches(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    let before = switches(pid);
    std::thread::sleep(Duration::from_millis(1500));
    switches(pid) - before
}

/// Copies the executable `from` to `to`, mode 0755, where other users may run it. The copy
/// is made by `cp`, not in this process: a file this process held open for writing would be
/// inherited by any child another test thread forks meanwhile, and until that child execs,
/// running the copy fails with ETXTBSY ("Text file busy").
pub fn copy_executable(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let status = Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(to)
        .status()
        .unwrap_or_else(|e| panic!("cp {}: {e}", from.display()));
    assert!(status.success(), "cp {} {}: {status}", from.display(), to.display());
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A copy of the executable `from`, named `name`, in a fresh directory of mode 0755, so a
/// child running as another user can run it whatever the permissions above it: the
/// directory (removed on drop) and the copy's path.
pub fn runnable_by_anyone(from: &Path, name: &str) -> (TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("bin");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let to = dir.path().join(name);
    copy_executable(from, &to);
    (dir, to)
}
