//! SingleInstance where desktop apps run: Flatpak's layout under real bubblewrap (separate
//! pid namespaces, with and without a network namespace), the System scope across network
//! namespaces, names that no two app ids or scopes share, the runtime-dir-less
//! fallback that another user cannot take first, and `--wait` across pid namespaces (and
//! in one whose `/proc` is another's).
//!
//! The sandboxes are real: `bwrap` (bubblewrap, which Flatpak runs) and `unshare`. A test
//! that cannot create them prints why and returns, except as root (CI), where it fails.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod util;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use solo_instance::{Primary, Reply, Scope, SingleInstance, Start};
use util::solo::{forwarded, is_root, json_line, output, set_mode, text};
use util::{example, Proc, TempDir, Watchdog};

/// Whether `bwrap` can make a pid namespace here. As root (CI installs bubblewrap) it must;
/// otherwise a test that needs it prints why and is skipped.
fn bwrap_works() -> bool {
    let out = Command::new("bwrap").args(["--dev-bind", "/", "/", "--unshare-pid", "true"]).output();
    let why = match out {
        Ok(o) if o.status.success() => return true,
        Ok(o) => format!("bwrap --unshare-pid fails: {}", text(&o.stderr).trim()),
        Err(e) => format!("no bwrap: {e}"),
    };
    assert!(!is_root(), "as root bubblewrap must work (.ci/run installs it): {why}");
    eprintln!("skipping {}: {why}", std::thread::current().name().unwrap_or("test"));
    false
}

/// Flatpak's runtime-dir layout for one app: a private `XDG_RUNTIME_DIR` and the
/// `/.flatpak-info` a sandbox has.
struct Flatpak {
    runtime: TempDir,
    info: TempDir,
    app: String,
}

impl Flatpak {
    fn new(tag: &str) -> Flatpak {
        let runtime = TempDir::new(tag);
        set_mode(runtime.path(), 0o700);
        let info = TempDir::new("info");
        let app = format!("org.sandbox.{tag}{}", std::process::id());
        std::fs::write(info.path().join("flatpak-info"), format!("[Application]\nname={app}\n")).unwrap();
        Flatpak { runtime, info, app }
    }

    /// Where the app's instances meet: `$XDG_RUNTIME_DIR/app/$FLATPAK_ID/<app>.sock`.
    fn sock(&self) -> PathBuf {
        self.runtime.path().join("app").join(&self.app).join(format!("{}.sock", self.app))
    }

    /// `solo SUB APP ARGS...` inside a sandbox of its own (`bwrap --unshare-pid`, plus
    /// `extra`), with Flatpak's environment and `/.flatpak-info`.
    fn sandboxed(&self, extra: &[&str], sub: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("bwrap");
        cmd.args(["--dev-bind", "/", "/", "--unshare-pid", "--die-with-parent"])
            .args(extra)
            .arg("--ro-bind")
            .arg(self.info.path().join("flatpak-info"))
            .arg("/.flatpak-info")
            .arg(example("solo"));
        self.finish(cmd, sub, args, true)
    }

    /// The same on the host, with `FLATPAK_ID` set or not.
    fn host(&self, flatpak_id: bool, sub: &str, args: &[&str]) -> Command {
        self.finish(Command::new(example("solo")), sub, args, flatpak_id)
    }

    fn finish(&self, mut cmd: Command, sub: &str, args: &[&str], flatpak_id: bool) -> Command {
        cmd.arg(sub)
            .arg(&self.app)
            .args(args)
            .env("XDG_RUNTIME_DIR", self.runtime.path())
            .env_remove("XDG_ACTIVATION_TOKEN")
            .env_remove("DESKTOP_STARTUP_ID")
            .current_dir("/");
        if flatpak_id {
            cmd.env("FLATPAK_ID", &self.app);
        } else {
            cmd.env_remove("FLATPAK_ID");
        }
        cmd
    }
}

/// `cmd` (a `solo send -- TAG`) is served, and `primary`'s next line is its request.
fn sent<S: AsRef<OsStr>>(what: S, cmd: &mut Command, primary: &Proc, tag: &str) {
    let out = output(cmd);
    let stdout = text(&out.stdout);
    let what = what.as_ref().to_string_lossy();
    assert!(out.status.success(), "{what}: {:?} {stdout:?} {:?}", out.status, text(&out.stderr));
    assert_eq!(forwarded(&stdout)["ok"], true, "{what}: {stdout}");
    let request = json_line(&primary.line());
    assert_eq!(request["argv"][1], tag, "{what}: the primary's next line is {request}");
}

/// Flatpak: a primary in its own pid namespace (as `flatpak run` makes one) serves
/// launches from other sandboxes of the app (each in its own pid namespace, one without
/// network too) and from the host with `FLATPAK_ID` set. Each side sees the other's pid
/// as 0; the uid is what is checked. A host launch without `FLATPAK_ID` has its own
/// primary, in `$XDG_RUNTIME_DIR` itself.
#[test]
fn sandbox_flatpak_launches_in_separate_pid_namespaces_share_one_primary() {
    let _w = Watchdog::new(Duration::from_secs(90));
    if !bwrap_works() {
        return;
    }
    let fp = Flatpak::new("fp");
    let p = Proc::spawn(&mut fp.sandboxed(&[], "run", &["--count", "3"]));
    assert_eq!(p.line(), format!("PRIMARY {}", fp.sock().display()), "{}", p.stderr());
    sent("a second sandbox", &mut fp.sandboxed(&[], "send", &["--", "sandboxed"]), &p, "sandboxed");
    sent(
        "a sandbox without network",
        &mut fp.sandboxed(&["--unshare-net"], "send", &["--", "no-network"]),
        &p,
        "no-network",
    );
    sent("the host, with FLATPAK_ID", &mut fp.host(true, "send", &["--", "host"]), &p, "host");
    let (status, rest) = p.finish();
    assert!(status.success() && rest.is_empty(), "{status:?} {rest:?}");

    // Without FLATPAK_ID, the host's launch is the primary of $XDG_RUNTIME_DIR itself.
    let own = fp.runtime.path().join(format!("{}.sock", fp.app));
    let (status, lines) = util::run(&mut fp.host(false, "run", &["--count", "0"]));
    assert!(status.success(), "{status:?} {lines:?}");
    assert_eq!(lines, [format!("PRIMARY {}", own.display())]);
}

/// The other direction: a host primary (with `FLATPAK_ID`) serves sandboxed launches, in a
/// pid namespace each, with and without network: the launch's check of the primary's uid
/// holds though the primary's pid reads 0 from inside.
#[test]
fn sandbox_a_host_primary_serves_launches_from_pid_namespaces() {
    let _w = Watchdog::new(Duration::from_secs(90));
    if !bwrap_works() {
        return;
    }
    let fp = Flatpak::new("host");
    let p = Proc::spawn(&mut fp.host(true, "run", &["--count", "2"]));
    assert_eq!(p.line(), format!("PRIMARY {}", fp.sock().display()), "{}", p.stderr());
    sent("a sandbox", &mut fp.sandboxed(&[], "send", &["--", "one"]), &p, "one");
    sent(
        "a sandbox without network",
        &mut fp.sandboxed(&["--unshare-net"], "run", &["--", "two"]),
        &p,
        "two",
    );
    let (status, rest) = p.finish();
    assert!(status.success() && rest.is_empty(), "{status:?} {rest:?}");
}

const CREDS_HELPER_VAR: &str = "SOLO_SANDBOX_CREDS_OF";

/// Not a test of its own (it returns at once): the child of
/// `sandbox_peer_credentials_across_pid_namespaces_have_the_uid_and_no_pid`, run inside a
/// pid namespace with `SOLO_SANDBOX_CREDS_OF=<socket>`. It connects there and prints
/// `CREDS <uid> <gid> <pid>` of the server, as it sees them.
#[test]
fn sandbox_helper_peer_credentials() {
    let Ok(name) = std::env::var(CREDS_HELPER_VAR) else { return };
    let line = match solo_instance::LocalSocket::connect(&name).and_then(|s| Ok(s.peer_credentials()?)) {
        Ok(c) => format!("CREDS {:?} {:?} {:?}", c.uid, c.gid, c.pid),
        Err(e) => format!("ERROR {e}"),
    };
    println!("{line}");
}

/// The peer's credentials seen from inside a pid namespace, of a server outside it: the
/// uid and gid, and no pid (the kernel gives 0), rather than an error.
#[test]
fn sandbox_peer_credentials_across_pid_namespaces_have_the_uid_and_no_pid() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if !bwrap_works() {
        return;
    }
    let dir = TempDir::new("creds");
    let name = dir.join("s");
    let mut server = solo_instance::LocalServer::new();
    server.listen(&name).unwrap();
    let p = Proc::spawn(
        Command::new("bwrap")
            .args(["--dev-bind", "/", "/", "--unshare-pid", "--die-with-parent"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "sandbox_helper_peer_credentials", "--nocapture", "--test-threads", "1"])
            .env(CREDS_HELPER_VAR, &name),
    );
    let accepted = server.accept().unwrap();
    // From the host, the sandboxed client's pid is visible.
    let mine = accepted.peer_credentials().unwrap();
    assert!(mine.pid.is_some(), "{mine:?}");
    // libtest prints "test NAME ... " before the helper's own line, on the same line.
    let line = loop {
        let line = p.line();
        if line.contains("CREDS") || line.contains("ERROR") {
            break line;
        }
    };
    let (uid, gid) = util::my_uid_gid();
    assert!(line.contains(&format!("CREDS Some({uid}) Some({gid}) None")), "{line} {}", p.stderr());
}

// ---------------------------------------------------------------------------------------
// A launch in a process of its own (another namespace, another environment)
// ---------------------------------------------------------------------------------------

const START_HELPER_VAR: &str = "SOLO_SANDBOX_START";

/// Set for [`sandbox_helper_start`]: it takes all its user's inotify instances first.
const NO_INOTIFY_VAR: &str = "SOLO_SANDBOX_NO_INOTIFY";

/// Not a test of its own (it returns at once): a launch run by [`launch_in`], with
/// `SOLO_SANDBOX_START="<scope> <app id> <arg> [<directory>]"`. It prints `PRIMARY <socket>`
/// and then `REQUEST <arg>` for each request it serves (replying "served by <its arg>"),
/// or `FORWARDED <reply's stdout>`, or `ERROR <error>`.
#[test]
fn sandbox_helper_start() {
    let Ok(spec) = std::env::var(START_HELPER_VAR) else { return };
    let words: Vec<&str> = spec.split(' ').collect();
    let scope = match words[0] {
        "user" => Scope::User,
        "session" => Scope::Session,
        "system" => Scope::System,
        other => panic!("scope {other}"),
    };
    let mut instance = SingleInstance::new(words[1])
        .unwrap()
        .scope(scope)
        .timeout(Duration::from_secs(5))
        .argv(["helper", words[2]]);
    if let Some(dir) = words.get(3) {
        instance = instance.directory(dir);
    }
    // With NO_INOTIFY_VAR: this user's inotify instances all taken first (held until exit).
    let no_inotify = std::env::var_os(NO_INOTIFY_VAR).is_some();
    let mut held = Vec::new();
    if no_inotify {
        loop {
            // SAFETY: no pointer; the descriptor returned is ours, closed at exit.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
            if fd < 0 {
                break;
            }
            held.push(fd);
            assert!(held.len() < 100_000, "inotify instances without end");
        }
    }
    match instance.start() {
        Ok(Start::Primary(p)) => {
            println!("PRIMARY {}", p.socket_path().display());
            if no_inotify {
                // The watch is tried at the first turn.
                assert_eq!(
                    p.recv_timeout(Duration::from_millis(50)).err(),
                    Some(solo_instance::RecvTimeoutError::Timeout)
                );
                println!("HEALTH {:?}", p.health());
            }
            for r in p.requests() {
                println!(
                    "REQUEST {}",
                    r.args().first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default()
                );
                let _ = r.reply(Reply::ok().with_stdout(format!("served by {}", words[2])));
            }
            println!("ENDED {:?}", p.health());
        }
        Ok(Start::Forwarded(r)) => println!("FORWARDED {}", r.stdout()),
        Err(e) => println!("ERROR {e}"),
    }
}

/// Runs [`sandbox_helper_start`] as `wrap... <this test binary>` (`wrap` may be empty),
/// with `env` set (and no `XDG_RUNTIME_DIR`, `XDG_CACHE_HOME` or `HOME` unless there):
/// the process, and its first line of its own.
fn launch_in(wrap: &[&str], env: &[(&str, &str)], spec: &str) -> (Proc, String) {
    launch_as(&std::env::current_exe().unwrap(), None, wrap, env, spec)
}

/// [`launch_in`] of `exe` (a copy of this test binary), as `uid` if given.
fn launch_as(
    exe: &std::path::Path,
    uid: Option<u32>,
    wrap: &[&str],
    env: &[(&str, &str)],
    spec: &str,
) -> (Proc, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(["--exact", "sandbox_helper_start", "--nocapture", "--test-threads", "1"])
        .env(START_HELPER_VAR, spec)
        .env_remove("FLATPAK_ID")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("HOME")
        .current_dir("/");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let p = Proc::spawn(&mut cmd);
    // libtest prints "test NAME ... " before the helper's own line, on the same line.
    let line = loop {
        let line = p.line();
        if let Some(i) = ["PRIMARY", "FORWARDED", "ERROR"].iter().filter_map(|w| line.find(w)).min() {
            break line[i..].to_owned();
        }
    };
    (p, line)
}

/// A launch of `app` in this process: whether it became the primary (kept, serving from a
/// thread of its own) or what it got instead.
fn start_here(app: &str, scope: Scope, dir: Option<&std::path::Path>, tag: &str) -> Result<Primary, String> {
    let mut i =
        SingleInstance::new(app).unwrap().scope(scope).timeout(Duration::from_secs(3)).argv(["x", tag]);
    if let Some(dir) = dir {
        i = i.directory(dir);
    }
    match i.start() {
        Ok(Start::Primary(p)) => Ok(p),
        Ok(Start::Forwarded(r)) => Err(format!("forwarded to another primary: {}", r.stdout())),
        Err(e) => Err(format!("error: {e}")),
    }
}

/// FNV-1a of `s`, as 16 hex digits: what a too-long name was shortened to.
fn fnv64(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

// ---------------------------------------------------------------------------------------
// Names: no two app ids or scopes share a primary
// ---------------------------------------------------------------------------------------

/// A long app id `L` (its socket name shortened by a hash) and the app whose id is that
/// hash, `fnv64(L)`, each get a primary of their own, whichever starts first.
#[test]
fn sandbox_names_a_long_id_and_the_id_of_its_hash_never_share_a_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("hash");
    set_mode(dir.path(), 0o700);
    let long = format!("org.names.{}{}", "l".repeat(150), std::process::id());
    let short = fnv64(&long);
    for (first, second) in [(&long, &short), (&short, &long)] {
        let a = start_here(first, Scope::User, Some(dir.path()), "first")
            .unwrap_or_else(|e| panic!("{first}: {e}"));
        let b = start_here(second, Scope::User, Some(dir.path()), "second")
            .unwrap_or_else(|e| panic!("{second}, after {first}: {e}"));
        assert_ne!(a.socket_path(), b.socket_path());
    }
}

/// The same in the System scope (Linux: abstract names), as any user would meet it.
#[test]
fn sandbox_names_system_scope_long_id_and_its_hash_never_share_a_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let long = format!("org.names.sys{}{}", "l".repeat(150), std::process::id());
    let short = fnv64(&long);
    for (first, second) in [(&long, &short), (&short, &long)] {
        let a = start_here(first, Scope::System, None, "first").unwrap_or_else(|e| panic!("{first}: {e}"));
        let b = start_here(second, Scope::System, None, "second")
            .unwrap_or_else(|e| panic!("{second}, after {first}: {e}"));
        assert_ne!(a.socket_path(), b.socket_path());
        assert_ne!(a.lock_path(), b.lock_path());
        drop((a, b));
    }
    for app in [&long, &short] {
        remove_system_lock(app);
    }
}

/// Removes the System scope's lock file of `app` (lock files stay after their primary, by
/// design), at the end of a test.
fn remove_system_lock(app: &str) {
    let _ = std::fs::remove_file(system_lock_path(app));
}

/// Waits until a file exists at `path` and some process holds a `flock` on it, as
/// `/proc/locks` lists it (by device and inode). Bounded by the test's watchdog.
fn wait_until_flocked(path: &str) {
    use std::os::unix::fs::MetadataExt;
    loop {
        if let Ok(m) = std::fs::metadata(path) {
            let (major, minor) = (libc::major(m.dev()), libc::minor(m.dev()));
            let id = format!("{major:02x}:{minor:02x}:{} ", m.ino());
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            if locks.lines().any(|l| l.contains(" FLOCK ") && l.contains(&id)) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The System scope's lock file of `app`.
fn system_lock_path(app: &str) -> String {
    let name = if "solo-instance-system/".len() + app.len() > 107 {
        format!("@{}", fnv64(app))
    } else {
        app.to_owned()
    };
    format!("/tmp/solo-instance-system@{name}.lock")
}

/// Session-scope `org.x` in login session 7 and User-scope `org.x.session-7` each get a
/// primary of their own, whichever starts first.
#[test]
fn sandbox_names_session_scope_and_a_user_scope_id_with_its_suffix_never_share_a_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let dir = TempDir::new("sess");
    set_mode(dir.path(), 0o700);
    let app = format!("org.names.s{}", std::process::id());
    let user_app = format!("{app}.session-7");
    let session = |tag: &str| {
        launch_in(&[], &[("XDG_SESSION_ID", "7")], &format!("session {app} {tag} {}", dir.path().display()))
    };
    // The Session scope first.
    let (p, line) = session("s1");
    assert!(line.starts_with("PRIMARY "), "{line} {}", p.stderr());
    let u = start_here(&user_app, Scope::User, Some(dir.path()), "u1")
        .unwrap_or_else(|e| panic!("{user_app}: {e}"));
    drop((p, u));
    // The User scope first.
    let u = start_here(&user_app, Scope::User, Some(dir.path()), "u2")
        .unwrap_or_else(|e| panic!("{user_app}: {e}"));
    let (p, line) = session("s2");
    assert!(line.starts_with("PRIMARY "), "Session scope after User {user_app}: {line} {}", p.stderr());
    drop((p, u));
}

// ---------------------------------------------------------------------------------------
// The System scope across network namespaces
// ---------------------------------------------------------------------------------------

/// Whether `unshare -n` works (root). As root it must; otherwise the test is skipped.
fn netns_works() -> bool {
    if !is_root() {
        eprintln!(
            "skipping {}: needs root (unshare -n, other users)",
            std::thread::current().name().unwrap_or("test")
        );
        return false;
    }
    let out = output(Command::new("unshare").args(["-n", "true"]));
    assert!(out.status.success(), "unshare -n as root: {}", text(&out.stderr));
    true
}

/// This test binary, copied where other users may run it.
fn exe_for_others() -> TempDir {
    util::runnable_by_anyone(&std::env::current_exe().unwrap(), "sandbox").0
}

/// The System scope gives one primary per machine across network namespaces (where the
/// abstract socket does not reach): uid 4245's primary on the host; root's launch in a
/// network namespace of its own fails with an error naming the limit instead of becoming
/// a second primary, while a launch on the host (uid 4246) is served. Then the other way
/// round: uid 4246's primary in a namespace, root's launch on the host fails; and once
/// that primary is killed, the host launch is the primary at once.
#[test]
fn sandbox_system_scope_never_gives_a_second_primary_in_another_network_namespace() {
    let _w = Watchdog::new(Duration::from_secs(120));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let app = format!("org.sandbox.netns{}", std::process::id());
    let spec = |tag: &str| format!("system {app} {tag}");

    let (p, line) = launch_as(&exe, Some(4245), &[], &[], &spec("host-4245"));
    assert!(line.starts_with("PRIMARY "), "{line} {}", p.stderr());
    let (_q, line) = launch_as(&exe, None, &["unshare", "-n"], &[], &spec("netns-root"));
    assert!(
        line.starts_with("ERROR ") && line.contains("network namespace"),
        "a launch in another network namespace: {line}"
    );
    let (_r, line) = launch_as(&exe, Some(4246), &[], &[], &spec("host-4246"));
    assert_eq!(line, "FORWARDED served by host-4245");
    drop(p);

    let netns_4246 = ["unshare", "-n", "setpriv", "--reuid=4246", "--regid=4246", "--clear-groups"];
    let (p, line) = launch_as(&exe, None, &netns_4246, &[], &spec("netns-4246"));
    assert!(line.starts_with("PRIMARY "), "{line} {}", p.stderr());
    let (_q, line) = launch_as(&exe, None, &[], &[], &spec("host-root"));
    assert!(
        line.starts_with("ERROR ") && line.contains("network namespace"),
        "a host launch while the primary runs in a network namespace: {line}"
    );
    util::solo::signal(p.id(), libc::SIGKILL);
    drop(p);
    let (p, line) = launch_as(&exe, None, &[], &[], &spec("after-kill"));
    assert!(line.starts_with("PRIMARY "), "after kill -9 of the namespaced primary: {line} {}", p.stderr());
    drop(p);
    remove_system_lock(&app);
}

/// A System-scope lock file that another user made unreadable (mode 0600) is refused with
/// an error naming it: never skipped, which would let two primaries run across network
/// namespaces.
#[test]
fn sandbox_system_scope_refuses_a_lock_file_it_cannot_open() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let app = format!("org.sandbox.squat{}", std::process::id());
    let lock = format!("/tmp/solo-instance-system@{app}.lock");
    std::fs::write(&lock, b"").unwrap();
    set_mode(std::path::Path::new(&lock), 0o600);
    let (p, line) = launch_as(&exe, Some(4247), &[], &[], &format!("system {app} squatted"));
    assert!(line.starts_with("ERROR ") && line.contains(&lock), "{line} {}", p.stderr());
    remove_system_lock(&app);
}

/// A launch that sees `/tmp` read-only (systemd's `ProtectSystem=strict` without
/// `PrivateTmp=`, a sandbox that binds `/` read-only) cannot open the System scope's lock
/// file for writing, but may still lock it read-only, as other users do: it is forwarded
/// to the host's primary instead of failing "Read-only file system".
#[test]
fn sandbox_system_scope_with_a_read_only_tmp_still_reaches_the_primary() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let app = format!("org.sandbox.rotmp{}", std::process::id());
    let spec = |tag: &str| format!("system {app} {tag}");
    let (p, line) = launch_as(&exe, Some(4245), &[], &[], &spec("host"));
    assert!(line.starts_with("PRIMARY "), "{line} {}", p.stderr());
    let ro = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"];
    let (q, line) = launch_as(&exe, None, &ro, &[], &spec("read-only-tmp"));
    assert_eq!(line, "FORWARDED served by host", "{}", q.stderr());
    drop(p);
    remove_system_lock(&app);
}

/// The first launch on the machine runs where `/tmp` is read-only (a `ProtectSystem=strict`
/// service) and no lock file exists, nor can one be made there. The name alone would decide
/// only within its network namespace (perhaps a private one: two primaries), so it fails
/// with an error that names the limit and the way out, not a bare "No such file". Once a
/// launch with a writable `/tmp` made the file, such a launch is forwarded as any other
/// (`sandbox_system_scope_with_a_read_only_tmp_still_reaches_the_primary`).
#[test]
fn sandbox_system_scope_first_launch_on_a_read_only_tmp_says_why_it_cannot_start() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let app = format!("org.sandbox.rofirst{}", std::process::id());
    let spec = |tag: &str| format!("system {app} {tag}");
    remove_system_lock(&app);
    let ro = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"];
    let (_p, line) = launch_as(&exe, None, &ro, &[], &spec("read-only-tmp"));
    assert!(
        line.starts_with("ERROR ") && line.contains("read-only") && line.contains("ReadWritePaths"),
        "{line}"
    );
    let (p, line) = launch_as(&exe, Some(4246), &[], &[], &spec("host"));
    assert!(line.starts_with("PRIMARY "), "{line} {}", p.stderr());
    let (_q, line) = launch_as(&exe, None, &ro, &[], &spec("read-only-tmp-again"));
    assert_eq!(line, "FORWARDED served by host");
    drop(p);
    remove_system_lock(&app);
}

// ---------------------------------------------------------------------------------------
// Without XDG_RUNTIME_DIR: a fallback another user cannot take first
// ---------------------------------------------------------------------------------------

/// A directory owned by `uid`, with `mode`.
fn owned_dir(path: &std::path::Path, uid: u32, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::chown(c.as_ptr(), uid, uid) }, 0, "chown {}", path.display());
    set_mode(path, mode);
}

/// Two launches of uid 4248, as `launch_as` runs them with `env`: the first is the
/// primary, the second is forwarded to it.
fn two_launches_meet(exe: &std::path::Path, app: &str, env: &[(&str, &str)]) {
    let (p, line) = launch_as(exe, Some(4248), &[], env, &format!("user {app} first"));
    assert!(line.starts_with("PRIMARY "), "the first launch: {line} {}", p.stderr());
    let (q, line) = launch_as(exe, Some(4248), &[], env, &format!("user {app} second"));
    assert_eq!(line, "FORWARDED served by first", "the second launch: {}", q.stderr());
}

/// With `XDG_RUNTIME_DIR` unset, uid 4249 creates the old fallback, `$TMPDIR/solo-instance-4248`,
/// before uid 4248 launches: uid 4248's launches still meet, in a place of its own (its
/// cache directory), and nothing of theirs is in the squatter's directory.
#[test]
fn sandbox_without_a_runtime_dir_another_user_cannot_take_the_fallback_first() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let tmp = TempDir::new("tmp15");
    set_mode(tmp.path(), 0o1777);
    let squat = tmp.path().join("solo-instance-4248");
    owned_dir(&squat, 4249, 0o700);
    let home = TempDir::new("home15");
    owned_dir(home.path(), 4248, 0o700);
    let app = format!("org.sandbox.tmp{}", std::process::id());
    let env = [("TMPDIR", tmp.path().to_str().unwrap()), ("HOME", home.path().to_str().unwrap())];
    two_launches_meet(&exe, &app, &env);
    assert_eq!(std::fs::read_dir(&squat).unwrap().count(), 0, "files in the squatter's directory");
}

/// A service account without a runtime directory whose home it cannot write (`nobody`'s
/// `/nonexistent`, a `www-data` home owned by root, a read-only home): there is no cache
/// directory to make, and the launches must still meet, in the temp dir as before the cache
/// directory was preferred, instead of every launch failing "cannot create".
#[test]
fn sandbox_without_a_runtime_dir_or_a_writable_home_launches_still_meet() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let tmp = TempDir::new("tmp15h");
    set_mode(tmp.path(), 0o1777);
    let home = TempDir::new("home15h");
    set_mode(home.path(), 0o755);
    let app = format!("org.sandbox.nohome{}", std::process::id());
    for home in [home.path().to_str().unwrap(), "/nonexistent/solo-instance-test"] {
        let env = [("TMPDIR", tmp.path().to_str().unwrap()), ("HOME", home)];
        two_launches_meet(&exe, &app, &env);
    }
}

/// The long-path fallback: uid 4248's runtime directory is too long for any socket path in
/// it, so the socket goes under `$TMPDIR`; uid 4249 created `$TMPDIR/solo-instance-4248`
/// (the old name) first. The launches of uid 4248 still meet there, in a directory whose
/// name another user cannot know.
#[test]
fn sandbox_long_path_fallback_cannot_be_taken_first_by_another_user() {
    let _w = Watchdog::new(Duration::from_secs(60));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let tmp = TempDir::new("tmp15l");
    set_mode(tmp.path(), 0o1777);
    let squat = tmp.path().join("solo-instance-4248");
    owned_dir(&squat, 4249, 0o700);
    let top = TempDir::new("run15l");
    set_mode(top.path(), 0o755);
    let runtime = top.path().join("r".repeat(100));
    owned_dir(&runtime, 4248, 0o700);
    let app = format!("org.sandbox.long{}", std::process::id());
    let env = [("TMPDIR", tmp.path().to_str().unwrap()), ("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    two_launches_meet(&exe, &app, &env);
    assert_eq!(std::fs::read_dir(&squat).unwrap().count(), 0, "files in the squatter's directory");
}

/// As an unprivileged user's `flatpak run` does it: bubblewrap with a user namespace (uid
/// 4250 mapped to itself) and a pid namespace. A sandboxed primary serves a second sandbox
/// (one without network) and the host (with `FLATPAK_ID`), all as uid 4250.
#[test]
fn sandbox_flatpak_with_user_namespaces_as_an_ordinary_user_shares_one_primary() {
    let _w = Watchdog::new(Duration::from_secs(90));
    if !netns_works() || !bwrap_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let top = TempDir::new("fpuser");
    set_mode(top.path(), 0o755);
    let runtime = top.path().join("run");
    owned_dir(&runtime, 4250, 0o700);
    let app = format!("org.sandbox.fpuser{}", std::process::id());
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap()), ("FLATPAK_ID", app.as_str())];
    let sandbox = ["bwrap", "--unshare-user", "--unshare-pid", "--dev-bind", "/", "/", "--die-with-parent"];
    let no_net = [
        "bwrap",
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--dev-bind",
        "/",
        "/",
        "--die-with-parent",
    ];
    let (p, line) = launch_as(&exe, Some(4250), &sandbox, &env, &format!("user {app} first"));
    let sock = runtime.join("app").join(&app).join(format!("{app}.sock"));
    assert_eq!(line, format!("PRIMARY {}", sock.display()), "{}", p.stderr());
    for (wrap, tag) in [(&sandbox[..], "sandboxed"), (&no_net[..], "no-network"), (&[][..], "host")] {
        let (q, line) = launch_as(&exe, Some(4250), wrap, &env, &format!("user {app} {tag}"));
        assert_eq!(line, "FORWARDED served by first", "{tag}: {}", q.stderr());
    }
}

/// The System scope's lock file, in `/tmp`, removed under a running primary (a tmp
/// cleaner: systemd-tmpfiles ages `/tmp` out; or the user who made the file first, who
/// may delete it from the sticky `/tmp` whoever locks it): a launch in another network
/// namespace, where the abstract name does not reach, must still not become a second
/// primary. Found by the attack review (the System-scope primary had no watch, and the
/// launch locked a fresh file and was a second primary): the primary watches its lock file
/// itself and locks a fresh one at once, so the launch finds it held and fails with the
/// error that names the limit.
#[test]
fn sandbox_system_scope_lock_file_removed_gives_no_second_primary_in_another_network_namespace() {
    let _w = Watchdog::new(Duration::from_secs(120));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let app = format!("org.sandbox.rmlock{}", std::process::id());
    let spec = |tag: &str| format!("system {app} {tag}");
    let (p, line) = launch_as(&exe, Some(4245), &[], &[], &spec("host-4245"));
    assert!(line.starts_with("PRIMARY "), "{line} {}", p.stderr());
    remove_system_lock(&app);
    // The primary locks a fresh file once its watch reports the removal (within a moment);
    // a launch that locks it first in that moment is the primary of its namespace and this
    // one steps down (the step-down test below).
    wait_until_flocked(&system_lock_path(&app));
    let (q, line) = launch_as(&exe, None, &["unshare", "-n"], &[], &spec("netns-root"));
    assert!(!line.starts_with("PRIMARY "), "a second primary in another network namespace: {line}");
    assert!(
        line.starts_with("ERROR ") && line.contains("network namespace"),
        "a launch in another network namespace: {line}"
    );
    // The lock file is back, and the primary still serves the host.
    assert!(std::path::Path::new(&system_lock_path(&app)).exists(), "the lock file was not put back");
    let (_r, line) = launch_as(&exe, Some(4246), &[], &[], &spec("host-4246"));
    assert_eq!(line, "FORWARDED served by host-4245");
    drop((p, q));
    remove_system_lock(&app);
}

/// Without inotify (uid 4272's instances all taken), the System-scope primary says so
/// (`Health::Checked`) and looks at its lock file once a second instead: removed, it is
/// put back within that second, and a launch in another network namespace then finds it
/// held and is no second primary.
#[test]
fn sandbox_system_scope_without_inotify_a_removed_lock_file_is_put_back_within_a_second() {
    let _w = Watchdog::new(Duration::from_secs(120));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let app = format!("org.sandbox.rmlocknoin{}", std::process::id());
    let spec = |tag: &str| format!("system {app} {tag}");
    let (p, line) = launch_as(&exe, Some(4272), &[], &[(NO_INOTIFY_VAR, "1")], &spec("host-4272"));
    assert!(line.starts_with("PRIMARY "), "{line} {}", p.stderr());
    let health = p.line();
    assert!(health.starts_with("HEALTH Checked(") && health.contains("max_user_instances"), "{health}");
    remove_system_lock(&app);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(std::path::Path::new(&system_lock_path(&app)).exists(), "the lock file was not put back");
    let (q, line) = launch_as(&exe, None, &["unshare", "-n"], &[], &spec("netns-root"));
    drop((p, q));
    remove_system_lock(&app);
    assert!(
        line.starts_with("ERROR ") && line.contains("network namespace"),
        "a launch in another network namespace: {line}"
    );
}

/// The other way round: the System-scope primary frozen (SIGSTOP) while its lock file is
/// removed, a launch in another network namespace locks a fresh one and is the primary
/// there; once thawed, the old primary finds the fresh lock held for good and steps down
/// (`Health::SteppedDown`): never two primaries.
#[test]
fn sandbox_system_scope_primary_steps_down_when_another_namespace_locked_the_fresh_lock_file() {
    let _w = Watchdog::new(Duration::from_secs(120));
    if !netns_works() {
        return;
    }
    let bin = exe_for_others();
    let exe = bin.path().join("sandbox");
    let app = format!("org.sandbox.stepdown{}", std::process::id());
    let spec = |tag: &str| format!("system {app} {tag}");
    let (p, line) = launch_as(&exe, Some(4245), &[], &[], &spec("host-4245"));
    assert!(line.starts_with("PRIMARY "), "{line} {}", p.stderr());
    // Its watch is set 100 ms after the start.
    std::thread::sleep(Duration::from_millis(300));
    let signal = |sig: &str| {
        let out = output(Command::new("kill").args([sig, &p.id().to_string()]));
        assert!(out.status.success(), "kill {sig}: {}", text(&out.stderr));
    };
    signal("-STOP");
    remove_system_lock(&app);
    let (q, line) = launch_as(&exe, None, &["unshare", "-n"], &[], &spec("netns-root"));
    assert!(line.starts_with("PRIMARY "), "{line} {}", q.stderr());
    signal("-CONT");
    let line = p.line();
    drop((p, q));
    remove_system_lock(&app);
    assert!(
        line.starts_with("ENDED SteppedDown(") && line.contains("network namespace"),
        "the old primary did not step down: {line}"
    );
}

/// A `--wait` launch and its primary in one pid namespace whose `/proc` is the outer
/// namespace's (`bwrap --unshare-pid` or `unshare --pid` without a `/proc` of its own): the
/// pid the launch reads there names another process, here a zombie. The launch, looking at
/// its primary once a second past its timeout, must still see it run, and wait for the
/// reply.
#[test]
fn sandbox_a_wait_outlasts_a_zombie_of_the_primarys_pid_in_a_foreign_proc() {
    let _w = Watchdog::new(Duration::from_secs(90));
    if !bwrap_works() {
        return;
    }
    let dir = TempDir::new("zproc");
    set_mode(dir.path(), 0o700);
    let fifo = dir.join("primary");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // The inner namespace: its shell is pid 2, two processes 3 and 4, the primary 5; the
    // launch waits 0.3 s to be taken and the work takes 2.5 s.
    let inner = r#"
        /bin/true; /bin/true
        "$SOLO" run "$APP" > "$FIFO" 2>&1 &
        exec 3< "$FIFO"
        read -r line <&3
        echo "$line"
        set -- $("$SOLO" status "$APP" 2>/dev/null)
        echo "PID $2 OUTER-STATE $(cut -d' ' -f3 /proc/$2/stat 2>/dev/null)"
        "$SOLO" send "$APP" --timeout 0.3 --wait -- --sleep-ms 2500
        echo "EXIT $?"
    "#;
    // The outer namespace, with a /proc of its own: its pids 3 and up are zombies
    // (children of a process that never reaps them) when the inner namespace starts.
    let zombies = r#"
        my @kids;
        for (1..200) { my $p = fork; exit 0 unless $p; push @kids, $p }
        for my $p (@kids) {
            while (1) {
                open my $f, "<", "/proc/$p/stat" or die "$p: $!";
                last if <$f> =~ /\) Z /;
                select undef, undef, undef, 0.01;
            }
        }
        exit(system(@ARGV) >> 8);
    "#;
    let out = output(
        Command::new("bwrap")
            .args(["--dev-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "--die-with-parent"])
            .args(["perl", "-e", zombies, "--"])
            .args(["bwrap", "--dev-bind", "/", "/", "--unshare-pid", "--die-with-parent", "sh", "-c", inner])
            .env("SOLO", example("solo"))
            .env("APP", format!("org.sandbox.zproc{}", std::process::id()))
            .env("FIFO", &fifo)
            .env("XDG_RUNTIME_DIR", dir.path())
            .env_remove("FLATPAK_ID")
            .current_dir("/"),
    );
    let said = text(&out.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("PRIMARY ")), "{said} {}", text(&out.stderr));
    // The case is there: the pid the launch sees names a zombie in the /proc it reads.
    assert_eq!(lines.get(1), Some(&"PID 5 OUTER-STATE Z"), "{said}");
    assert_eq!(lines.last(), Some(&"EXIT 0"), "the wait ended early: {said} {}", text(&out.stderr));
    assert_eq!(forwarded(lines[2])["ok"], true, "{said}");
}

/// `--wait` across pid namespaces, both ways, past the launch's timeout (where it looks at
/// the primary's process once a second): a sandboxed launch, which sees its host primary's
/// pid as 0, and a host launch of a sandboxed primary, whose pid it sees as the host's, each
/// wait for the reply while the primary lives.
#[test]
fn sandbox_a_wait_across_pid_namespaces_outlasts_the_timeout() {
    let _w = Watchdog::new(Duration::from_secs(90));
    if !bwrap_works() {
        return;
    }
    let wait = ["--timeout", "0.3", "--wait", "--", "--sleep-ms", "2500"];
    for (tag, sandboxed_primary) in [("waith", false), ("waits", true)] {
        let fp = Flatpak::new(tag);
        let p = if sandboxed_primary {
            Proc::spawn(&mut fp.sandboxed(&[], "run", &["--count", "1"]))
        } else {
            Proc::spawn(&mut fp.host(true, "run", &["--count", "1"]))
        };
        assert_eq!(p.line(), format!("PRIMARY {}", fp.sock().display()), "{}", p.stderr());
        let mut launch =
            if sandboxed_primary { fp.host(true, "send", &wait) } else { fp.sandboxed(&[], "send", &wait) };
        let out = output(&mut launch);
        let said = text(&out.stdout);
        assert!(out.status.success(), "{tag}: {:?} {said} {}", out.status, text(&out.stderr));
        assert_eq!(forwarded(&said)["ok"], true, "{tag}: {said}");
        assert_eq!(json_line(&p.line())["wait"], true);
        let (status, _) = p.finish();
        assert!(status.success(), "{tag}: {status:?}");
    }
}
