//! Feature `dbus`: a primary answers `org.freedesktop.Application` on the
//! session bus. Every test starts a private bus (`dbus-daemon --nofork`, its own config,
//! killed at the end) and talks to it with clients nobody here wrote: `gdbus call`,
//! `gapplication launch` and `gapplication action` (GLib's), and the bus' own activation.
//!
//! | what | tests |
//! |---|---|
//! | `solo`'s `DBUS <Method> <json>` lines, beside its socket lines | `gdbus_calls_reach_solo_as_dbus_lines_beside_its_socket_launches` |
//! | each call is a `Request`: origin, URIs, token, action and parameter | `gapplication_launch_and_action_reach_the_primary_as_requests` |
//! | the method returns when the app replies, fails when it drops the request | `the_call_returns_with_the_reply_and_fails_when_the_request_is_dropped` |
//! | DBusActivatable: the bus starts the example, which is primary and gets the call | `bus_activation_starts_the_example_as_primary_with_the_call` |
//! | a reply given just before the primary exits still reaches the caller | `a_reply_given_just_before_the_primary_exits_reaches_the_caller` |
//! | one primary: a second launch forwards, the name stays with the lock holder | `a_second_process_does_not_become_a_second_primary` |
//! | the name goes with the lock; a squatter is reported; release frees the name | `the_name_is_owned_only_by_a_lock_holder_and_released_with_it` |
//! | no bus: the socket still works, and the status says why | `without_a_bus_the_socket_still_works` |
//! | the editor demo opens files sent over D-Bus (and refuses a foreign host, an escaped slash) | `editor_opens_files_sent_over_dbus` |
//! | object path and service file | `object_path_and_service_file_follow_the_specs` |
//! | a frozen or silent bus: `start()` within 2 s, `Pending`; the drop frees the lock | `a_frozen_or_silent_bus_holds_up_neither_the_start_nor_the_lock` |
//! | the message limit: a 2 MiB `Open` refused, a 38 MiB one not held in memory | `a_call_over_the_message_limit_is_refused_and_not_held_in_memory` |
//! | queued for the name, taken when the owner leaves | `a_primary_queued_for_its_name_takes_it_when_the_owner_leaves` |
//! | ... and no second process started by the bus for the call | `a_name_freed_by_its_owner_goes_to_the_queued_primary_not_to_a_second_process` |
//! | 120 calls at once to a busy app: all wait their turn, none fails "busy" | `a_hundred_and_twenty_calls_at_once_all_reach_a_busy_app` |
//! | calls not taken at shutdown go to the successor | `calls_waiting_at_shutdown_are_handed_to_the_successor` |
//! | ... or, with none running, to the process the bus starts | `calls_waiting_at_shutdown_reach_the_process_the_bus_starts` |
//! | ... or, with neither, fail after the timeout saying so | `calls_waiting_at_shutdown_with_no_successor_fail_saying_so` |
//! | 100 calls outstanding (36 waiting for room in the queue) at the drop: all to the successor | `a_hundred_calls_outstanding_at_the_drop_all_reach_the_successor` |
//! | ... at a step-down: all to the successor while the app still holds its `Primary` | `a_hundred_calls_outstanding_at_a_step_down_all_reach_the_successor` |
//! | `ulimit -n` 9 to 11: no panic, D-Bus off, a clean exit | `under_a_low_fd_limit_the_primary_degrades_and_exits_cleanly` |
//! | idle, on a bus or without: no context switch | `an_idle_dbus_primary_never_wakes` |
//!
//! Needs `dbus-daemon` and `gdbus`/`gapplication` (Debian: `dbus-daemon libglib2.0-bin`,
//! which `.ci/run` installs): without them the tests fail, saying so.
#![cfg(all(target_os = "linux", feature = "dbus"))]

mod util;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use solo_instance::{
    dbus_object_path, dbus_service_file, DbusBus, DbusStatus, Health, Origin, Primary, Reply, SingleInstance,
    Start,
};
use util::{example, idle_switches, run, Proc, TempDir, Watchdog, LINE_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A private session bus: `dbus-daemon --nofork` with a config of our own, listening at
/// `<dir>/bus`; killed on drop.
struct Bus {
    daemon: Proc,
    /// Holds the config and the socket; removed after the daemon is killed.
    _dir: TempDir,
    address: String,
}

impl Bus {
    fn start(tag: &str) -> Bus {
        Bus::with(tag, None, &[])
    }

    /// A bus that starts services from `services` (a `<servicedir>`), with `env` in its
    /// environment (which activated services inherit, as from a real session's bus).
    fn with(tag: &str, services: Option<&Path>, env: &[(&str, &OsStr)]) -> Bus {
        Bus::configured(tag, services, env, "")
    }

    /// A bus whose config also has `extra` (`<limit>` elements, say).
    fn configured(tag: &str, services: Option<&Path>, env: &[(&str, &OsStr)], extra: &str) -> Bus {
        let dir = TempDir::new(tag);
        let socket = dir.path().join("bus");
        let address = format!("unix:path={}", socket.display());
        let servicedir =
            services.map(|s| format!("<servicedir>{}</servicedir>", s.display())).unwrap_or_default();
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  {servicedir}
  {extra}
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#
        );
        let conf = dir.path().join("bus.conf");
        std::fs::write(&conf, config).unwrap();
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address);
        for (k, v) in env {
            cmd.env(k, v);
        }
        assert!(
            Command::new("dbus-daemon").arg("--version").output().is_ok(),
            "no dbus-daemon: install it (Debian: apt-get install dbus-daemon libglib2.0-bin)"
        );
        let daemon = Proc::spawn(&mut cmd);
        // The daemon prints its address once it listens.
        let printed = daemon.line();
        assert!(printed.starts_with(&address), "dbus-daemon printed {printed:?}, expected {address}");
        Bus { daemon, _dir: dir, address }
    }

    /// `gdbus call` on this bus, as a process (its stdout is the result).
    fn gdbus(&self, dest: &str, path: &str, method: &str, args: &[&str]) -> Proc {
        Proc::spawn(
            Command::new("gdbus")
                .args(["call", "--address", &self.address, "--dest", dest, "--object-path", path])
                .args(["--method", method])
                .args(args),
        )
    }

    /// `gdbus call` of `org.freedesktop.Application.<method>` on the app, to completion.
    fn app_call(&self, app: &str, method: &str, args: &[&str]) -> (bool, Vec<String>) {
        let (status, out) = self
            .gdbus(app, &dbus_object_path(app), &format!("org.freedesktop.Application.{method}"), args)
            .finish();
        (status.success(), out)
    }

    /// The pid of the process owning `name` on this bus.
    fn owner_pid(&self, name: &str) -> Option<u32> {
        let (status, out) = self
            .gdbus(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.GetConnectionUnixProcessID",
                &[name],
            )
            .finish();
        if !status.success() {
            return None;
        }
        // "(uint32 1234,)"
        let line = out.first()?;
        line.trim_start_matches("(uint32 ").trim_end_matches(",)").parse().ok()
    }

    /// `gapplication ARGS...` on this bus, with the activation variables given.
    fn gapplication(&self, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new("gapplication");
        cmd.args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .env_remove("XDG_ACTIVATION_TOKEN")
            .env_remove("DESKTOP_STARTUP_ID");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn(&mut cmd)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        // The daemon's stderr helps when a test fails with the bus up.
        if thread::panicking() {
            eprintln!("dbus-daemon stderr: {}", self.daemon.stderr());
        }
    }
}

/// A private runtime directory and a unique app id that is a bus name with a `-` in it
/// (`org.test.si<pid>-<n>-<tag>`, object path `/org/test/si<pid>_<n>_<tag>`).
struct App {
    dir: TempDir,
    id: String,
}

impl App {
    fn new(tag: &str) -> App {
        let dir = TempDir::new(tag);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let id = format!("org.test.{}", util::unique_name(tag));
        App { dir, id }
    }

    /// `solo SUB APP ARGS...` with this runtime dir, on `bus` (a D-Bus address).
    fn solo(&self, sub: &str, bus: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(example("solo"));
        cmd.arg(sub)
            .arg(&self.id)
            .args(args)
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .env_remove("XDG_ACTIVATION_TOKEN")
            .env_remove("DESKTOP_STARTUP_ID")
            .current_dir("/");
        cmd
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join(format!("{}.sock", self.id))
    }

    /// `solo run APP` on `bus`, which must become the primary.
    fn solo_primary(&self, bus: &str, args: &[&str]) -> Proc {
        let p = Proc::spawn(&mut self.solo("run", bus, args));
        assert_eq!(p.line(), format!("PRIMARY {}", self.sock().display()), "stderr: {}", p.stderr());
        p
    }

    /// An in-process primary on `bus`.
    fn primary(&self, bus: DbusBus) -> Primary {
        self.primary_in(self.dir.path(), bus)
    }

    fn primary_in(&self, dir: &Path, bus: DbusBus) -> Primary {
        match SingleInstance::new(&self.id).unwrap().directory(dir).dbus_bus(bus).argv(["t"]).start().unwrap()
        {
            Start::Primary(p) => p,
            Start::Forwarded(r) => panic!("not primary: {r:?}"),
        }
    }

    /// `solo send APP -- TAG` (a socket launch) must be served by the primary.
    fn send_ok(&self, tag: &str) {
        let (status, out) = self.send(tag).finish();
        assert!(status.success(), "send {tag}: {status:?} {out:?}");
        assert!(out[0].starts_with("FORWARDED {"), "{out:?}");
    }

    /// `solo send APP -- TAG`, running (for an in-process primary to answer).
    fn send(&self, tag: &str) -> Proc {
        Proc::spawn(&mut self.solo("send", "unix:path=/nonexistent", &["--", tag]))
    }
}

/// A socket launch that the in-process `primary` receives and answers.
fn launch_is_served(app: &App, primary: &Primary, tag: &str) {
    let send = app.send(tag);
    let request = next(primary);
    assert_eq!(request.origin(), &Origin::Launch);
    assert_eq!(request.args(), [tag]);
    request.reply(Reply::ok()).unwrap();
    let (status, out) = send.finish();
    assert!(status.success(), "send {tag}: {status:?} {out:?}");
}

fn active(app: &App) -> DbusStatus {
    DbusStatus::Active { name: app.id.clone(), path: dbus_object_path(&app.id) }
}

/// Receives the next request within the line timeout.
fn next(primary: &Primary) -> solo_instance::Request {
    primary.recv_timeout(LINE_TIMEOUT).expect("a request within the line timeout")
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
}

// ---------------------------------------------------------------------------------------
// Calls and requests
// ---------------------------------------------------------------------------------------

/// `solo run`, built with the feature, prints exactly `DBUS <Method> <json>` for each of
/// the three methods (keys in argument order, compact, string platform data as strings,
/// other variants as JSON), each call returning `()` once handled; a socket launch in
/// between still prints its request line.
#[test]
fn gdbus_calls_reach_solo_as_dbus_lines_beside_its_socket_launches() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("calls");
    let app = App::new("calls");
    let solo = app.solo_primary(&bus.address, &[]);

    let (ok, out) = bus.app_call(&app.id, "Open", &["['file:///tmp/a.txt']", "{'activation-token': <'t1'>}"]);
    assert!(ok && out == ["()"], "{out:?}");
    assert_eq!(
        solo.line(),
        r#"DBUS Open {"uris":["file:///tmp/a.txt"],"platform_data":{"activation-token":"t1"}}"#
    );

    app.send_ok("between");
    let launch = json(&solo.line());
    assert_eq!(launch["argv"][1], "between", "{launch}");

    let (ok, out) = bus.app_call(&app.id, "Activate", &["{'desktop-startup-id': <'s1'>, 'n': <int32 7>}"]);
    assert!(ok && out == ["()"], "{out:?}");
    assert_eq!(solo.line(), r#"DBUS Activate {"platform_data":{"desktop-startup-id":"s1","n":7}}"#);

    let (ok, out) = bus.app_call(&app.id, "ActivateAction", &["quit", "[]", "{}"]);
    assert!(ok && out == ["()"], "{out:?}");
    assert_eq!(solo.line(), r#"DBUS ActivateAction {"action":"quit","parameter":[],"platform_data":{}}"#);

    let (ok, out) = bus.app_call(&app.id, "ActivateAction", &["go", "[<'x'>]", "{'b': <true>}"]);
    assert!(ok && out == ["()"], "{out:?}");
    assert_eq!(
        solo.line(),
        r#"DBUS ActivateAction {"action":"go","parameter":["x"],"platform_data":{"b":true}}"#
    );
}

/// GLib's `gapplication` (which derives the object path from the id itself) reaches an
/// in-process primary: `launch APP FILE` is an `Open` of the file's URI with the token
/// (GLib puts `DESKTOP_STARTUP_ID`, and since 2.76 `XDG_ACTIVATION_TOKEN`, in the
/// platform data), `launch APP` an `Activate`, `action APP NAME PARAM` an
/// `ActivateAction`. Each is a `Request` with no argv, in the same stream as launches.
#[test]
fn gapplication_launch_and_action_reach_the_primary_as_requests() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("gapp");
    let app = App::new("gapp");
    let primary = app.primary(DbusBus::Address(bus.address.clone()));
    assert_eq!(primary.dbus_status(), active(&app));
    let file = app.dir.path().join("a b.txt");
    std::fs::write(&file, "hello\n").unwrap();

    let launch = bus.gapplication(
        &["launch", &app.id, file.to_str().unwrap()],
        &[("DESKTOP_STARTUP_ID", "t1"), ("XDG_ACTIVATION_TOKEN", "t2")],
    );
    let request = next(&primary);
    let uri = format!("file://{}", file.display()).replace(' ', "%20");
    let Origin::Open { uris, platform_data } = request.origin() else { panic!("{request:?}") };
    assert_eq!(uris, &[uri]);
    assert_eq!(platform_data["desktop-startup-id"], "t1", "{platform_data:?}");
    // XDG_ACTIVATION_TOKEN first, when GLib passed it.
    let token = if platform_data.contains_key("activation-token") { "t2" } else { "t1" };
    assert_eq!(request.activation_token(), Some(OsStr::new(token)));
    assert!(request.argv().is_empty() && request.cwd().is_none(), "{request:?}");
    request.reply(Reply::ok()).unwrap();
    let (status, _) = launch.finish();
    assert!(status.success(), "gapplication launch: {status:?}");

    let launch = bus.gapplication(&["launch", &app.id], &[]);
    let request = next(&primary);
    assert_eq!(request.origin(), &Origin::Activate { platform_data: Default::default() });
    assert_eq!(request.activation_token(), None);
    request.reply(Reply::ok()).unwrap();
    assert!(launch.finish().0.success());

    let action = bus.gapplication(&["action", &app.id, "zoom", "42"], &[]);
    let request = next(&primary);
    let Origin::ActivateAction { action: name, parameter, .. } = request.origin() else {
        panic!("{request:?}")
    };
    assert_eq!((name.as_str(), parameter.as_slice()), ("zoom", &[json!(42)][..]));
    request.reply(Reply::ok()).unwrap();
    assert!(action.finish().0.success());

    // Socket launches are still the same stream.
    launch_is_served(&app, &primary, "after");
}

/// The D-Bus method returns when the app replies, not before; a request the app drops
/// (or answers with an error) fails the call with the reason.
#[test]
fn the_call_returns_with_the_reply_and_fails_when_the_request_is_dropped() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("reply");
    let app = App::new("reply");
    let primary = app.primary(DbusBus::Address(bus.address.clone()));
    let path = dbus_object_path(&app.id);
    let call = |args: &[&str]| bus.gdbus(&app.id, &path, "org.freedesktop.Application.ActivateAction", args);

    let waiting = call(&["hold", "[]", "{}"]);
    let request = next(&primary);
    // Held by the app: the caller has no answer yet.
    assert!(waiting.try_line(Duration::from_millis(300)).is_err(), "the call returned before the reply");
    request.reply(Reply::ok()).unwrap();
    let (status, out) = waiting.finish();
    assert!(status.success() && out == ["()"], "{status:?} {out:?}");

    // The error's text, read with a client of our own (zbus) that returns it.
    let client = zbus::blocking::connection::Builder::address(bus.address.as_str()).unwrap().build().unwrap();
    let (id, path2) = (app.id.clone(), path.clone());
    let call_zbus = move |action: &'static str| {
        let (tx, rx) = mpsc::channel();
        let (id, path, client) = (id.clone(), path2.clone(), client.clone());
        thread::spawn(move || {
            let params: Vec<zbus::zvariant::Value> = Vec::new();
            let pd: std::collections::HashMap<&str, zbus::zvariant::Value> = Default::default();
            let r = client.call_method(
                Some(id.as_str()),
                path.as_str(),
                Some("org.freedesktop.Application"),
                "ActivateAction",
                &(action, params, pd),
            );
            let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
        });
        rx
    };
    let dropped = call_zbus("drop");
    drop(next(&primary));
    let err = dropped.recv_timeout(LINE_TIMEOUT).unwrap().unwrap_err();
    assert!(err.contains("dropped the request without answering"), "{err}");

    let refused = call_zbus("no");
    next(&primary).reply(Reply::error("not today")).unwrap();
    let err = refused.recv_timeout(LINE_TIMEOUT).unwrap().unwrap_err();
    assert!(err.contains("not today"), "{err}");

    // gdbus, too, fails on a dropped request.
    let gdbus_dropped = call(&["drop", "[]", "{}"]);
    drop(next(&primary));
    assert!(!gdbus_dropped.finish().0.success());
}

// ---------------------------------------------------------------------------------------
// Activation, one primary, release, no bus
// ---------------------------------------------------------------------------------------

/// DBusActivatable: the bus has a service file written by `dbus_service_file` and nobody
/// owns the name. A call to it makes the bus start the example (a `solo run` behind an
/// `exec` wrapper, whose stdout is a FIFO the test reads), which becomes the primary and
/// receives that very call; the caller gets `()`.
#[test]
fn bus_activation_starts_the_example_as_primary_with_the_call() {
    let _w = Watchdog::new(LIMIT);
    let app = App::new("activ");
    let services = TempDir::new("services");
    let fifo = services.path().join("out.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let wrapper = services.path().join("start solo.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' run '{}' --count 1 > '{}'\n",
            example("solo").display(),
            app.id,
            fifo.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let service = dbus_service_file(&app.id, &[&wrapper]).unwrap();
    std::fs::write(services.path().join(format!("{}.service", app.id)), &service).unwrap();
    // The session's environment, as the activated app inherits it.
    let bus = Bus::with("activ", Some(services.path()), &[("XDG_RUNTIME_DIR", app.dir.path().as_os_str())]);
    assert_eq!(bus.owner_pid(&app.id), None, "someone owns {} already", app.id);

    let (tx, lines) = mpsc::channel();
    let reader = fifo.clone();
    thread::spawn(move || {
        let Ok(f) = std::fs::File::open(reader) else { return };
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let call = bus.gdbus(
        &app.id,
        &dbus_object_path(&app.id),
        "org.freedesktop.Application.Open",
        &["['file:///tmp/started.txt']", "{}"],
    );
    let line = || lines.recv_timeout(LINE_TIMEOUT).expect("a line from the activated example");
    assert_eq!(line(), format!("PRIMARY {}", app.sock().display()));
    assert_eq!(line(), r#"DBUS Open {"uris":["file:///tmp/started.txt"],"platform_data":{}}"#);
    let (status, out) = call.finish();
    assert!(status.success() && out == ["()"], "{status:?} {out:?}; service file:\n{service}");
    // `--count 1`: it exits after the call, name and lock released.
    assert!(lines.recv_timeout(LINE_TIMEOUT).is_err(), "the activated example printed more");
}

/// A primary that replies and exits at once (`solo run --count 1`, as an app quitting on
/// an action) still gets its reply onto the bus: its connection closes only after the
/// replies are written (a graceful shutdown). Ten rounds. A plain close lost a reply in
/// about 1 of 45 runs of the activation test, and in none of 50 rounds here: this test
/// catches a primary that exits before replying, the race only by luck.
#[test]
fn a_reply_given_just_before_the_primary_exits_reaches_the_caller() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("quit");
    let app = App::new("quit");
    for round in 0..10 {
        let solo = app.solo_primary(&bus.address, &["--count", "1"]);
        let (ok, out) = bus.app_call(&app.id, "ActivateAction", &["quit", "[]", "{}"]);
        assert!(ok && out == ["()"], "round {round}: {out:?}");
        assert_eq!(solo.line(), r#"DBUS ActivateAction {"action":"quit","parameter":[],"platform_data":{}}"#);
        let (status, _) = solo.finish();
        assert!(status.success(), "round {round}: {status:?}");
    }
}

/// One primary: while `solo run` is the primary and owns the name, a second `solo run`
/// of the app (same runtime dir) is forwarded over the socket, exits, and never takes the
/// name: the bus still names the first process as its owner.
#[test]
fn a_second_process_does_not_become_a_second_primary() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("second");
    let app = App::new("second");
    let first = app.solo_primary(&bus.address, &[]);
    assert_eq!(bus.owner_pid(&app.id), Some(first.id()));

    let (status, out) = run(&mut app.solo("run", &bus.address, &["--", "again"]));
    assert!(status.success(), "{status:?} {out:?}");
    assert!(out[0].starts_with("FORWARDED {"), "the second run was not forwarded: {out:?}");
    assert_eq!(json(&first.line())["argv"][1], "again");
    assert_eq!(bus.owner_pid(&app.id), Some(first.id()), "the name changed hands");
    let (ok, out) = bus.app_call(&app.id, "Activate", &["{}"]);
    assert!(ok, "{out:?}");
    assert_eq!(first.line(), r#"DBUS Activate {"platform_data":{}}"#);
}

/// Only a lock holder owns the name, and the name goes with the lock: a primary whose
/// name another connection owns (a squatter, or another lock's primary) keeps serving its
/// socket and says `NameTaken`, naming the owner; a primary that is dropped releases the
/// name, so the next primary of its lock gets it.
#[test]
fn the_name_is_owned_only_by_a_lock_holder_and_released_with_it() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("owner");
    let app = App::new("owner");
    let on_bus = || DbusBus::Address(bus.address.clone());

    // A squatter owns the name first.
    let squatter = zbus::blocking::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name(app.id.as_str())
        .unwrap()
        .build()
        .unwrap();
    let primary = app.primary(on_bus());
    let squatter_name = squatter.unique_name().unwrap().to_string();
    assert_eq!(primary.dbus_status(), DbusStatus::NameTaken(squatter_name), "{}", primary.dbus_status());
    launch_is_served(&app, &primary, "socket");
    drop(primary);
    drop(squatter);

    // Now the primary of this lock owns it; a primary of another lock (another runtime
    // dir: a second lock holder) does not.
    let primary = app.primary(on_bus());
    assert_eq!(primary.dbus_status(), active(&app));
    let other = TempDir::new("other");
    std::fs::set_permissions(other.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let second = app.primary_in(other.path(), on_bus());
    assert!(matches!(second.dbus_status(), DbusStatus::NameTaken(_)), "{}", second.dbus_status());
    drop(second);

    // Dropped, the primary gives the name back with its lock: the successor has it.
    drop(primary);
    assert_eq!(bus.owner_pid(&app.id), None, "the name outlived its primary");
    let successor = app.primary(on_bus());
    assert_eq!(successor.dbus_status(), active(&app));
    assert_eq!(bus.owner_pid(&app.id), Some(std::process::id()));
}

/// Without a bus the primary serves its socket as ever, and says why D-Bus is off; an
/// app id that is no bus name, `DbusBus::Off` and the System scope turn it off too.
#[test]
fn without_a_bus_the_socket_still_works() {
    let _w = Watchdog::new(LIMIT);
    let app = App::new("nobus");
    // The example, with a session bus address that leads nowhere.
    let solo = app.solo_primary("unix:path=/nonexistent/bus", &[]);
    app.send_ok("one");
    assert_eq!(json(&solo.line())["argv"][1], "one");
    drop(solo);

    let primary = app.primary(DbusBus::Address("unix:path=/nonexistent/bus".into()));
    assert!(matches!(primary.dbus_status(), DbusStatus::NoBus(_)), "{:?}", primary.dbus_status());
    launch_is_served(&app, &primary, "two");
    drop(primary);

    let primary = app.primary(DbusBus::Off);
    assert_eq!(primary.dbus_status(), DbusStatus::Off);
    drop(primary);

    let dir = TempDir::new("noname");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let Start::Primary(p) = SingleInstance::new("nodots").unwrap().directory(dir.path()).start().unwrap()
    else {
        panic!("not primary")
    };
    assert!(matches!(p.dbus_status(), DbusStatus::InvalidName(_)), "{:?}", p.dbus_status());
}

/// The demo: `gapplication launch org.solo-instance.Editor FILE` opens the file in the
/// running editor (a percent-encoded URI, decoded), and `gapplication action ... quit`
/// ends it.
#[test]
fn editor_opens_files_sent_over_dbus() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("editor");
    let app = App::new("editor");
    let editor = Proc::spawn(
        Command::new(example("editor"))
            .env("XDG_RUNTIME_DIR", app.dir.path())
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env_remove("XDG_ACTIVATION_TOKEN")
            .env_remove("DESKTOP_STARTUP_ID"),
    );
    assert!(editor.line().contains("running as the primary instance"));
    assert!(editor.line().contains("later launches"));
    let file = app.dir.path().join("notes 1.txt");
    std::fs::write(&file, "a\nb\n").unwrap();
    let launch = bus.gapplication(&["launch", "org.solo-instance.Editor", file.to_str().unwrap()], &[]);
    assert_eq!(editor.line(), format!("editor: opened {} (2 lines)", file.display()));
    assert!(launch.finish().0.success());
    // Another machine's file, and an escaped slash: refused by `Origin::file_paths`.
    let (ok, out) = bus.app_call(
        "org.solo-instance.Editor",
        "Open",
        &["['file://otherhost/etc/passwd', 'file:///tmp/a%2F..%2Fb']", "{}"],
    );
    assert!(ok, "{out:?}");
    assert_eq!(editor.line(), "editor: cannot open file://otherhost/etc/passwd: not a local file");
    assert_eq!(editor.line(), "editor: cannot open file:///tmp/a%2F..%2Fb: not a local file");
    let quit = bus.gapplication(&["action", "org.solo-instance.Editor", "quit"], &[]);
    assert_eq!(editor.line(), "editor: quit (over D-Bus)");
    assert!(quit.finish().0.success());
    let (status, rest) = editor.finish();
    assert!(status.success(), "{status:?} {rest:?}");
}

/// The object path as the Desktop Entry Specification derives it, and a service file
/// whose `Exec=` survives the bus' shell-like parsing.
#[test]
fn object_path_and_service_file_follow_the_specs() {
    assert_eq!(dbus_object_path("org.example.Editor"), "/org/example/Editor");
    assert_eq!(dbus_object_path("org.solo-instance.My-App"), "/org/solo_instance/My_App");
    assert_eq!(
        dbus_service_file("org.example.Editor", &["/usr/bin/editor"]).unwrap(),
        "[D-BUS Service]\nName=org.example.Editor\nExec=/usr/bin/editor\n"
    );
    assert_eq!(
        dbus_service_file("org.example.Editor", &["/opt/my app/editor", "--it's"]).unwrap(),
        "[D-BUS Service]\nName=org.example.Editor\nExec='/opt/my app/editor' '--it'\\''s'\n"
    );
    assert!(dbus_service_file("editor", &["/usr/bin/editor"]).is_err());
    assert!(dbus_service_file::<&str>("org.example.Editor", &[]).is_err());
}

// ---------------------------------------------------------------------------------------
// A frozen bus, the size limit, the queue for the name, at-least-once, EMFILE, idle
// ---------------------------------------------------------------------------------------

/// Waits (under the test's watchdog) until `done` holds, failing after `bound`.
fn wait_for(what: &str, bound: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process of this test; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill({pid}, {sig})");
}

/// A primary of `app` in its own directory, with this timeout and bus.
fn primary_with(app: &App, timeout: Duration, bus: DbusBus) -> Primary {
    let instance = SingleInstance::new(&app.id)
        .unwrap()
        .directory(app.dir.path())
        .timeout(timeout)
        .dbus_bus(bus)
        .argv(["t"]);
    match instance.start().unwrap() {
        Start::Primary(p) => p,
        Start::Forwarded(r) => panic!("not primary: {r:?}"),
    }
}

fn client(bus: &Bus) -> zbus::blocking::Connection {
    zbus::blocking::connection::Builder::address(bus.address.as_str()).unwrap().build().unwrap()
}

/// `Open([uri], {})` on the app from `client`: `()` or the error's text.
fn open_with(client: &zbus::blocking::Connection, app: &App, uri: &str) -> Result<(), String> {
    let pd: std::collections::HashMap<&str, zbus::zvariant::Value> = Default::default();
    client
        .call_method(
            Some(app.id.as_str()),
            dbus_object_path(&app.id).as_str(),
            Some("org.freedesktop.Application"),
            "Open",
            &(vec![uri], pd),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Sends `uris.len()` `Open` calls at once (raw messages, no waiting in between), then a
/// `Peer.Ping` to the app's connection, which returns once the app's connection has read
/// them all. The replies arrive on the returned channel: `Ok(uri)` or `Err(error)`.
fn open_all(bus: &Bus, app: &App, uris: &[String]) -> mpsc::Receiver<Result<String, String>> {
    let client = client(bus);
    let replies = zbus::blocking::MessageIterator::from(&client);
    let path = dbus_object_path(&app.id);
    let mut serials = std::collections::HashMap::new();
    for uri in uris {
        let pd: std::collections::HashMap<&str, zbus::zvariant::Value> = Default::default();
        let msg = zbus::Message::method_call(path.as_str(), "Open")
            .unwrap()
            .destination(app.id.as_str())
            .unwrap()
            .interface("org.freedesktop.Application")
            .unwrap()
            .build(&(vec![uri.as_str()], pd))
            .unwrap();
        serials.insert(msg.primary_header().serial_num(), uri.clone());
        client.send(&msg).unwrap();
    }
    client
        .call_method(Some(app.id.as_str()), path.as_str(), Some("org.freedesktop.DBus.Peer"), "Ping", &())
        .unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _client = client;
        for msg in replies {
            let Ok(msg) = msg else { break };
            let header = msg.header();
            let Some(uri) = header.reply_serial().and_then(|s| serials.remove(&s)) else { continue };
            let reply = match msg.message_type() {
                zbus::message::Type::MethodReturn => Ok(uri),
                _ => Err(format!(
                    "{uri}: {:?} {:?}",
                    header.error_name(),
                    msg.body().deserialize::<String>().ok()
                )),
            };
            if tx.send(reply).is_err() || serials.is_empty() {
                break;
            }
        }
    });
    rx
}

/// A bus that stops answering (SIGSTOP), before the start and again before the drop, and
/// a socket that accepts and never speaks: `start()` returns within its 2 s deadline
/// (plus generous slack), saying `Pending`, and serves launches; the primary takes the
/// name once the bus wakes; the drop frees the lock at once, not after the 30 s method
/// timeout.
#[test]
fn a_frozen_or_silent_bus_holds_up_neither_the_start_nor_the_lock() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("frozen");
    let app = App::new("frozen");
    let long = Duration::from_secs(30);
    let slack = Duration::from_secs(10);

    signal(bus.daemon.id(), libc::SIGSTOP);
    let t = Instant::now();
    let primary = primary_with(&app, long, DbusBus::Address(bus.address.clone()));
    assert!(t.elapsed() < slack, "start() took {:?} with a frozen bus", t.elapsed());
    assert!(matches!(primary.dbus_status(), DbusStatus::Pending(_)), "{}", primary.dbus_status());
    launch_is_served(&app, &primary, "frozen");
    // Awake, the bus lets it finish: it owns the name.
    signal(bus.daemon.id(), libc::SIGCONT);
    wait_for("the name, once the bus woke", LINE_TIMEOUT, || primary.dbus_status() == active(&app));
    assert_eq!(bus.owner_pid(&app.id), Some(std::process::id()));

    // Frozen while the primary owns the name: the drop gives up on it and frees the lock.
    signal(bus.daemon.id(), libc::SIGSTOP);
    let t = Instant::now();
    drop(primary);
    assert!(t.elapsed() < slack, "the drop took {:?} with a frozen bus", t.elapsed());
    let next = primary_with(&app, long, DbusBus::Off);
    drop(next);
    signal(bus.daemon.id(), libc::SIGCONT);

    // A socket that accepts and never answers the handshake.
    let silent = app.dir.path().join("silent");
    let listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let t = Instant::now();
    let primary = primary_with(&app, long, DbusBus::Address(format!("unix:path={}", silent.display())));
    assert!(t.elapsed() < slack, "start() took {:?} with a silent bus", t.elapsed());
    assert!(matches!(primary.dbus_status(), DbusStatus::Pending(_)), "{}", primary.dbus_status());
    launch_is_served(&app, &primary, "silent");
    let t = Instant::now();
    drop(primary);
    assert!(t.elapsed() < slack, "the drop took {:?} with a silent bus", t.elapsed());
}

/// `max_message_size` holds on D-Bus as on the socket: a 2 MiB `Open` is refused with
/// `LimitsExceeded` (the socket refuses the same size), and never reaches the app; a
/// 38 MiB one costs the primary no more than a few MiB of memory (peak RSS, `VmHWM`),
/// where zbus would read it whole and the JSON copies took it to 158 MiB. The bus is
/// configured to pass messages up to the protocol's 128 MiB.
#[test]
fn a_call_over_the_message_limit_is_refused_and_not_held_in_memory() {
    let _w = Watchdog::new(LIMIT);
    let limits = r#"<limit name="max_message_size">134217728</limit>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>"#;
    let bus = Bus::configured("limit", None, &[], limits);
    let app = App::new("limit");
    let solo = app.solo_primary(&bus.address, &[]);
    let client = client(&bus);
    let hwm = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", solo.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().to_owned();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };

    let big = format!("file:///{}", "a".repeat(2 << 20));
    let err = open_with(&client, &app, &big).unwrap_err();
    assert!(err.contains("LimitsExceeded") && err.contains("limit"), "{err}");
    open_with(&client, &app, "file:///small").unwrap();
    assert_eq!(solo.line(), r#"DBUS Open {"uris":["file:///small"],"platform_data":{}}"#);

    let before = hwm();
    let huge = format!("file:///{}", "b".repeat(38 << 20));
    let err = open_with(&client, &app, &huge).unwrap_err();
    assert!(err.contains("LimitsExceeded"), "{err}");
    drop(huge);
    let grew = hwm().saturating_sub(before);
    assert!(grew < 8 << 10, "a 38 MiB call took the primary's peak RSS up by {grew} KiB");
    open_with(&client, &app, "file:///after").unwrap();
    assert_eq!(solo.line(), r#"DBUS Open {"uris":["file:///after"],"platform_data":{}}"#);
}

/// A primary that finds its name owned queues for it (`NameTaken`), and takes it when the
/// owner leaves: calls to the name reach it from then on.
#[test]
fn a_primary_queued_for_its_name_takes_it_when_the_owner_leaves() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("queue");
    let app = App::new("queue");
    let squatter = client(&bus);
    squatter.request_name(app.id.as_str()).unwrap();
    let primary = app.primary(DbusBus::Address(bus.address.clone()));
    let squatter_name = squatter.unique_name().unwrap().to_string();
    assert_eq!(primary.dbus_status(), DbusStatus::NameTaken(squatter_name));

    drop(squatter);
    wait_for("the name, once its owner left", LINE_TIMEOUT, || primary.dbus_status() == active(&app));
    assert_eq!(bus.owner_pid(&app.id), Some(std::process::id()));
    let call = bus.gdbus(
        &app.id,
        &dbus_object_path(&app.id),
        "org.freedesktop.Application.Open",
        &["['file:///queued']", "{}"],
    );
    let request = next(&primary);
    assert_eq!(
        request.origin(),
        &Origin::Open { uris: vec!["file:///queued".into()], platform_data: Default::default() }
    );
    request.reply(Reply::ok()).unwrap();
    let (status, out) = call.finish();
    assert!(status.success() && out == ["()"], "{status:?} {out:?}");
}

/// 120 calls at once to an app that takes none until they are all in (the queue holds
/// 64): every call waits its turn and succeeds; none fails with "busy".
#[test]
fn a_hundred_and_twenty_calls_at_once_all_reach_a_busy_app() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("busy");
    let app = App::new("busy");
    let primary = app.primary(DbusBus::Address(bus.address.clone()));
    let uris: Vec<String> = (0..120).map(|i| format!("file:///busy/{i}")).collect();
    let replies = open_all(&bus, &app, &uris);
    let mut seen = Vec::new();
    for _ in 0..120 {
        let request = next(&primary);
        let Origin::Open { uris, .. } = request.origin() else { panic!("{request:?}") };
        seen.push(uris[0].clone());
        request.reply(Reply::ok()).unwrap();
    }
    let mut ok = Vec::new();
    for _ in 0..120 {
        match replies.recv_timeout(LINE_TIMEOUT).expect("a reply") {
            Ok(uri) => ok.push(uri),
            Err(e) => panic!("a call failed: {e}"),
        }
    }
    seen.sort();
    ok.sort();
    let mut all = uris.clone();
    all.sort();
    assert_eq!((seen, ok), (all.clone(), all));
}

/// Calls the app has not taken when the primary shuts down are not failed: once the name
/// is released they go to its next owner, here a successor (`solo run`) started as the
/// primary drops; each caller gets the successor's `()`.
#[test]
fn calls_waiting_at_shutdown_are_handed_to_the_successor() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("handoff");
    let app = App::new("handoff");
    let primary = primary_with(&app, Duration::from_secs(20), DbusBus::Address(bus.address.clone()));
    assert_eq!(primary.dbus_status(), active(&app));
    let uris: Vec<String> = (0..15).map(|i| format!("file:///handoff/{i}")).collect();
    let replies = open_all(&bus, &app, &uris);
    // The app takes none of them, and quits (on a thread: the drop waits for the
    // hand-offs, which wait for the successor).
    let dropping = thread::spawn(move || drop(primary));
    let successor = Proc::spawn(&mut app.solo("run", &bus.address, &["--count", "15"]));
    assert_eq!(successor.line(), format!("PRIMARY {}", app.sock().display()), "{}", successor.stderr());
    let mut got = Vec::new();
    for _ in 0..15 {
        let line = successor.line();
        let call = json(line.strip_prefix("DBUS Open ").unwrap_or_else(|| panic!("{line}")));
        got.push(call["uris"][0].as_str().unwrap().to_owned());
    }
    for _ in 0..15 {
        if let Err(e) = replies.recv_timeout(LINE_TIMEOUT).expect("a reply") {
            panic!("a call failed: {e}");
        }
    }
    dropping.join().unwrap();
    got.sort();
    let mut all = uris.clone();
    all.sort();
    assert_eq!(got, all);
    let (status, _) = successor.finish();
    assert!(status.success(), "{status:?}");
}

/// Under a low file-descriptor limit (`ulimit -n` from 6 to 16) the dbus build does not
/// panic in async-io. Each run ends in one of three clean ways: too few for the socket
/// (exit 1, a clear error); the socket served with D-Bus off, saying why; or D-Bus on.
/// Either primary exits cleanly on SIGTERM, its socket removed. Which limit gives which
/// depends on the descriptors the process inherits, so the test asks only that the
/// degraded primary shows up at some limit, below those where D-Bus is on.
#[test]
fn under_a_low_fd_limit_the_primary_degrades_and_exits_cleanly() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("emfile");
    // Per limit: 0 = exit 1, 1 = D-Bus off, 2 = D-Bus on.
    let mut outcomes = Vec::new();
    for n in 6..=16 {
        let app = App::new(&format!("fd{n}"));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
            .arg(example("solo"))
            .args(["run", &app.id]);
        cmd.env("XDG_RUNTIME_DIR", app.dir.path())
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .current_dir("/");
        let solo = Proc::spawn(&mut cmd);
        match solo.try_line(LINE_TIMEOUT) {
            Ok(line) => {
                assert_eq!(
                    line,
                    format!("PRIMARY {}", app.sock().display()),
                    "ulimit -n {n}: {}",
                    solo.stderr()
                );
                signal(solo.id(), libc::SIGTERM);
                // All of stderr, once it exited: the status line (printed before the
                // PRIMARY line, in more than one write) is whole.
                let (status, stderr) = solo.finish_with_stderr();
                assert!(status.success(), "ulimit -n {n}: {status:?} {stderr}");
                assert!(!stderr.contains("panicked"), "ulimit -n {n}: {stderr}");
                if stderr.contains("solo: dbus: off") {
                    assert!(stderr.contains("too few file descriptors"), "ulimit -n {n}: {stderr}");
                    outcomes.push(1);
                } else {
                    assert!(
                        stderr.contains(&format!("solo: dbus: owns {}", app.id)),
                        "ulimit -n {n}: {stderr}"
                    );
                    outcomes.push(2);
                }
                assert!(!app.sock().exists(), "ulimit -n {n}: the socket was left behind");
            }
            // Too few even for the socket: a clear error, no panic.
            Err(_) => {
                let (status, stderr) = solo.finish_with_stderr();
                assert_eq!(status.code(), Some(1), "ulimit -n {n}: {status:?} {stderr}");
                assert!(!stderr.contains("panicked"), "ulimit -n {n}: {stderr}");
                outcomes.push(0);
            }
        }
    }
    eprintln!("outcomes by limit 6..=16: {outcomes:?}");
    // More descriptors never make it worse; the degraded primary shows up, and D-Bus is on
    // by 16.
    assert!(outcomes.windows(2).all(|w| w[0] <= w[1]), "outcomes by limit 6..=16: {outcomes:?}");
    assert!(outcomes.contains(&1), "no limit gave a primary with D-Bus off: {outcomes:?}");
    assert_eq!(outcomes.last(), Some(&2), "D-Bus was off even at 16: {outcomes:?}");
}

/// An idle primary built with `dbus` makes no context switch, on a bus (owning its name)
/// or without one: zbus's `blocking` thread, started to connect, woke twice a second, and
/// the timers of the calls made while starting (zbus' method timeout) woke it once, a
/// timeout later.
#[test]
fn an_idle_dbus_primary_never_wakes() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("idle");
    for (tag, address) in [("idlebus", bus.address.as_str()), ("idlenobus", "unix:path=/nonexistent/bus")] {
        let app = App::new(tag);
        // A 1 s timeout: a timer zbus set for a call while starting (its method timeout)
        // would fire within the window.
        let solo = app.solo_primary(address, &["--timeout", "1"]);
        assert_eq!(idle_switches(solo.id()), 0, "{tag}: an idle primary woke up; {}", solo.stderr());
    }
}

/// The name was another connection's when the primary started: the primary waits in the
/// queue and gets it as that owner leaves, so a call to the name reaches it. The bus
/// does not start the app's `DBusActivatable` service for the call (a second process,
/// which would find the lock held, forward an empty launch and exit, the call lost).
#[test]
fn a_name_freed_by_its_owner_goes_to_the_queued_primary_not_to_a_second_process() {
    let _w = Watchdog::new(LIMIT);
    let app = App::new("freed");
    let services = TempDir::new("fservices");
    let started = services.path().join("started");
    let wrapper = services.path().join("start.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ntouch '{}'\nexec '{}' run '{}' --count 1\n",
            started.display(),
            example("solo").display(),
            app.id
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let service = dbus_service_file(&app.id, &[&wrapper]).unwrap();
    std::fs::write(services.path().join(format!("{}.service", app.id)), &service).unwrap();
    let bus = Bus::with("freed", Some(services.path()), &[("XDG_RUNTIME_DIR", app.dir.path().as_os_str())]);

    let squatter = client(&bus);
    squatter.request_name(app.id.as_str()).unwrap();
    let solo = app.solo_primary(&bus.address, &[]);
    let squatter_pid = bus.owner_pid(&app.id);
    assert_eq!(squatter_pid, Some(std::process::id()), "the squatter lost the name");
    drop(squatter);
    wait_for("the name, once the squatter left", LINE_TIMEOUT, || bus.owner_pid(&app.id) == Some(solo.id()));

    let (ok, out) = bus.app_call(&app.id, "Open", &["['file:///freed']", "{}"]);
    assert!(ok && out == ["()"], "{out:?}");
    assert_eq!(solo.line(), r#"DBUS Open {"uris":["file:///freed"],"platform_data":{}}"#);
    assert!(!started.exists(), "the bus started a second process for the call");
}

/// Calls not taken when the primary shuts down, with no successor running, go to the
/// process the bus starts for the app's `DBusActivatable` service: the hand-off's call to
/// the unowned name activates it, it becomes the primary and answers them all.
#[test]
fn calls_waiting_at_shutdown_reach_the_process_the_bus_starts() {
    let _w = Watchdog::new(LIMIT);
    let app = App::new("reactiv");
    let services = TempDir::new("rservices");
    let out = services.path().join("out");
    let wrapper = services.path().join("start.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' run '{}' --count 3 > '{}'\n",
            example("solo").display(),
            app.id,
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let service = dbus_service_file(&app.id, &[&wrapper]).unwrap();
    std::fs::write(services.path().join(format!("{}.service", app.id)), &service).unwrap();
    let bus = Bus::with("reactiv", Some(services.path()), &[("XDG_RUNTIME_DIR", app.dir.path().as_os_str())]);

    let primary = primary_with(&app, Duration::from_secs(20), DbusBus::Address(bus.address.clone()));
    assert_eq!(primary.dbus_status(), active(&app));
    let uris: Vec<String> = (0..3).map(|i| format!("file:///reactiv/{i}")).collect();
    let replies = open_all(&bus, &app, &uris);
    let dropping = thread::spawn(move || drop(primary));
    for _ in 0..3 {
        if let Err(e) = replies.recv_timeout(LINE_TIMEOUT).expect("a reply") {
            panic!("a call failed: {e}");
        }
    }
    dropping.join().unwrap();
    // `--count 3`: the activated example exits after the three calls.
    wait_for("the activated example's exit", LINE_TIMEOUT, || bus.owner_pid(&app.id).is_none());
    let printed = std::fs::read_to_string(&out).unwrap();
    let mut lines = printed.lines();
    assert_eq!(lines.next(), Some(format!("PRIMARY {}", app.sock().display()).as_str()), "{printed}");
    let mut got: Vec<String> = lines
        .map(|l| json(l.strip_prefix("DBUS Open ").unwrap_or_else(|| panic!("{l}")))["uris"][0].to_string())
        .collect();
    got.sort();
    let all: Vec<String> = uris.iter().map(|u| format!("{u:?}")).collect();
    assert_eq!(got, all);
}

/// With no successor and nothing for the bus to start, calls waiting at shutdown fail,
/// once the timeout has passed without an owner for the name, saying so; the drop
/// returns.
#[test]
fn calls_waiting_at_shutdown_with_no_successor_fail_saying_so() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("nosucc");
    let app = App::new("nosucc");
    let primary = primary_with(&app, Duration::from_secs(1), DbusBus::Address(bus.address.clone()));
    assert_eq!(primary.dbus_status(), active(&app));
    let replies = open_all(&bus, &app, &["file:///nosucc".to_owned()]);
    drop(primary);
    let err = replies.recv_timeout(LINE_TIMEOUT).expect("a reply").unwrap_err();
    assert!(err.contains("ServiceUnknown") && err.contains("no successor took"), "{err}");
}

/// A primary that steps down (a cleaner removed its socket and lock file, and another
/// process locked a fresh lock file first) gives its bus name back at once, as a
/// released primary does: the name belongs to the lock holder. One that kept the name
/// until the app dropped the `Primary` (never, for an app that ignores `health()`) would
/// go on taking D-Bus calls only to fail them ("shutting down"), and the new primary
/// could not own the name.
#[test]
fn a_primary_that_steps_down_gives_its_name_back() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("stepdown");
    let app = App::new("stepdown");
    let primary = app.primary(DbusBus::Address(bus.address.clone()));
    assert_eq!(primary.dbus_status(), active(&app));
    assert_eq!(bus.owner_pid(&app.id), Some(std::process::id()));
    // The watch is set 100 ms after the start, while the loop runs.
    assert_eq!(
        primary.recv_timeout(Duration::from_millis(150)).err(),
        Some(solo_instance::RecvTimeoutError::Timeout)
    );
    let lock = primary.lock_path().to_owned();
    std::fs::remove_file(primary.socket_path()).unwrap();
    std::fs::remove_file(&lock).unwrap();
    let _other = util::solo::hold_lock(&lock);
    // Stepped down: the receive calls say it stopped.
    assert_eq!(
        primary.recv_timeout(Duration::from_secs(5)).err(),
        Some(solo_instance::RecvTimeoutError::Stopped)
    );
    assert!(matches!(primary.health(), Health::SteppedDown(_)), "{:?}", primary.health());
    // Released from a thread of its own (the loop never waits on the bus): within the
    // line timeout.
    let until = std::time::Instant::now() + LINE_TIMEOUT;
    while bus.owner_pid(&app.id) == Some(std::process::id()) {
        assert!(std::time::Instant::now() < until, "a primary that stepped down keeps its bus name");
    }
    drop(primary);
}

/// A primary on `bus` (20 s timeout) with `n` `Open` calls outstanding, none taken by the
/// app: more than its queue holds (64), so that the rest wait for room
/// (`Inbox::dbus_waiting`). Returns once every call has reached the primary: each one
/// queued or waiting calls the app's waker once (a `Peer.Ping` after them proves only that
/// the connection read them; zbus handles each call on a task of its own). Also the
/// calls' URIs, and their replies as `open_all` gives them.
fn primary_with_calls_waiting(
    bus: &Bus,
    app: &App,
    n: usize,
) -> (Primary, Vec<String>, mpsc::Receiver<Result<String, String>>) {
    let primary = primary_with(app, Duration::from_secs(20), DbusBus::Address(bus.address.clone()));
    assert_eq!(primary.dbus_status(), active(app));
    let (woken, wakes) = mpsc::channel();
    primary.set_waker(move || {
        let _ = woken.send(());
    });
    let uris: Vec<String> = (0..n).map(|i| format!("file:///{}/{i}", app.id)).collect();
    let replies = open_all(bus, app, &uris);
    for i in 0..n {
        wakes
            .recv_timeout(LINE_TIMEOUT)
            .unwrap_or_else(|_| panic!("only {i} of {n} calls reached the primary"));
    }
    (primary, uris, replies)
}

/// Reads the `DBUS Open` lines of `n` calls from `successor`, and the `n` callers'
/// replies: every call reached the successor, and every caller got `()`.
fn successor_serves_all(successor: &Proc, uris: &[String], replies: &mpsc::Receiver<Result<String, String>>) {
    let mut got = Vec::new();
    for i in 0..uris.len() {
        let line = successor
            .try_line(LINE_TIMEOUT)
            .unwrap_or_else(|_| panic!("the successor got {i} of {} calls", uris.len()));
        let call = json(line.strip_prefix("DBUS Open ").unwrap_or_else(|| panic!("{line}")));
        got.push(call["uris"][0].as_str().unwrap().to_owned());
    }
    for _ in 0..uris.len() {
        if let Err(e) = replies.recv_timeout(LINE_TIMEOUT).expect("a reply") {
            panic!("a call failed: {e}");
        }
    }
    got.sort();
    let mut all = uris.to_vec();
    all.sort();
    assert_eq!(got, all);
}

/// 100 calls outstanding when the primary is dropped (64 in the app's queue, 36 waiting
/// for room): all go to the successor (`solo run`), and every caller gets its `()`. The
/// drop hands off the calls waiting for room as well as the queued ones.
#[test]
fn a_hundred_calls_outstanding_at_the_drop_all_reach_the_successor() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("handoff100");
    let app = App::new("handoff100");
    let (primary, uris, replies) = primary_with_calls_waiting(&bus, &app, 100);
    // On a thread: the drop waits for the hand-offs, which wait for the successor.
    let dropping = thread::spawn(move || drop(primary));
    let successor = app.solo_primary(&bus.address, &["--count", "100"]);
    successor_serves_all(&successor, &uris, &replies);
    dropping.join().unwrap();
    let (status, _) = successor.finish();
    assert!(status.success(), "{status:?}");
}

/// 100 calls outstanding when the primary steps down (its socket removed, and its lock
/// file replaced by one another process holds): the app's next receive call says it
/// stopped, and every call, those waiting for room too, goes to the successor then, while
/// the app still holds its `Primary`, not at its drop.
#[test]
fn a_hundred_calls_outstanding_at_a_step_down_all_reach_the_successor() {
    let _w = Watchdog::new(LIMIT);
    let bus = Bus::start("stepdown100");
    let app = App::new("stepdown100");
    let (primary, uris, replies) = primary_with_calls_waiting(&bus, &app, 100);
    // The lock file is replaced at once by one already locked: the primary, whose loop
    // runs on the waker's thread, finds it held while its socket is still its own (a
    // launch may hold it for a moment) and looks again; then its socket goes, and it steps
    // down. It never gets the fresh lock, whenever it looks.
    let lock = primary.lock_path().to_owned();
    let fresh = lock.with_extension("fresh");
    let other = util::solo::hold_lock(&fresh);
    std::fs::rename(&fresh, &lock).unwrap();
    std::fs::remove_file(primary.socket_path()).unwrap();
    wait_for("the step-down", LINE_TIMEOUT, || matches!(primary.health(), Health::SteppedDown(_)));
    drop(other);
    let successor = app.solo_primary(&bus.address, &["--count", "100"]);
    assert_eq!(primary.try_recv().err(), Some(solo_instance::TryRecvError::Stopped));
    successor_serves_all(&successor, &uris, &replies);
    let (status, _) = successor.finish();
    assert!(status.success(), "{status:?}");
    drop(primary);
}
