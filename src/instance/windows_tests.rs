//! SingleInstance's Windows guarantees, tested in the crate (where the injected SID and raw
//! Win32 clients are at hand); CI runs them under Wine (`tests/wine.sh`). What Wine cannot
//! prove is listed in `tests/windows.rs`.

use std::io::{Read, Write};
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use interprocess::local_socket::traits::ListenerExt as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::windows::local_socket::ListenerOptionsExt;
use windows_sys::Win32::Foundation::{GENERIC_READ, GENERIC_WRITE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING, SECURITY_ANONYMOUS,
    SECURITY_SQOS_PRESENT,
};

use super::{Reply, SingleInstance, Start};
use crate::sys::{current_user, PRETEND_USER};
use crate::Error;
use crate::Sid;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("solo-wt-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails the test (by aborting the process) if it runs past `secs`.
fn watchdog(secs: u64) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("watchdog: test ran past {secs} s");
            std::process::abort();
        }
    });
    tx
}

fn builder(dir: &Path, app: &str) -> SingleInstance {
    SingleInstance::new(app).unwrap().directory(dir).timeout(Duration::from_secs(3)).argv(["prog", "x"])
}

fn another_user() -> Sid {
    let other: Sid = "S-1-5-21-1111-2222-3333-4444".parse().unwrap();
    assert_ne!(Some(other), current_user().ok());
    other
}

/// A pipe that accepts every connection and reads what is sent, on a thread: a squatter.
/// Reports on `got` each read that brought bytes.
fn squat(path: &Path, sddl: Option<&str>, got: mpsc::Sender<usize>) -> std::io::Result<()> {
    let name = path.as_os_str().to_fs_name::<GenericFilePath>()?;
    let mut opts = ListenerOptions::new().name(name);
    if let Some(sddl) = sddl {
        opts = opts.security_descriptor(crate::sys::from_sddl(sddl)?);
    }
    let listener = opts.create_sync()?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let got = got.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Only reads that brought data: probes that connect and close say nothing.
                let n = (&conn).read(&mut buf).unwrap_or(0);
                if n > 0 {
                    let _ = got.send(n);
                }
                let _ = (&conn).write_all(b"{\"ok\":true,\"exit_code\":0}\n");
            });
        }
    });
    Ok(())
}

fn primary(b: SingleInstance) -> super::Primary {
    match b.start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not primary: {other:?}"),
    }
}

/// The file in which the primary of `app` in `dir` publishes its pipe's name.
fn published_file(dir: &Path, app: &str) -> PathBuf {
    dir.join(format!("{app}.pipe"))
}

/// Publishes `pipe` in the file of `app` in `dir`, as a primary would.
fn publish(dir: &Path, app: &str, pipe: &Path) {
    super::published::publish(&published_file(dir, app), pipe, 0x2000).unwrap();
}

/// The primary's pipe has a fresh random name (nothing another user could compute and
/// create first), published in the user's directory only once the pipe exists; a new
/// primary gets a new name. The pipe is this user's only (a protected DACL) and labelled
/// at the primary's integrity level, so Windows keeps less trusted processes from writing.
#[test]
fn primary_pipe_name_is_random_published_and_labelled() {
    let _w = watchdog(30);
    let dir = Dir::new("name");
    let app = "test.wt.name";
    let first = primary(builder(&dir.0, app));
    let name = first.socket_path().to_path_buf();
    assert!(crate::sys::is_random_pipe_name(&name.to_string_lossy()), "{}", name.display());
    let published = super::published::read(&published_file(&dir.0, app)).expect("published");
    assert_eq!(published.pipe, name);
    assert_eq!(published.integrity, crate::sys::own_integrity().unwrap());
    assert_eq!(builder(&dir.0, app).status().unwrap().socket, name);
    let client = crate::sys::connect(&name, crate::SocketOptions::empty(), None).unwrap();
    use std::os::windows::io::AsHandle;
    let handle = crate::sys::pipe(&client).as_handle();
    let me = current_user().unwrap();
    let sec = crate::sys::pipe_security(handle).unwrap();
    assert_eq!(sec.owner, Some(me));
    let dacl: Vec<_> = sec.dacl.unwrap().iter().map(|a| a.sid).collect();
    assert_eq!(dacl, [me]);
    assert_eq!(crate::sys::object_integrity(handle).unwrap(), crate::sys::own_integrity().unwrap());
    drop(client);
    drop(first);
    assert!(!published_file(&dir.0, app).exists(), "the name outlived its primary");
    let second = primary(builder(&dir.0, app));
    assert_ne!(second.socket_path(), name);
}

/// A squatter at a name the file publishes (an old primary's, or one guessed) that is not
/// this user's primary receives no byte and cannot keep the app from starting: the launch
/// finds the lock free and becomes the primary under a new name. Wine has one user, so the
/// launch takes itself for another (an injected SID) and finds its real user's pipe; and
/// where this process may make SYSTEM an owner (Wine), a SYSTEM-owned squatter too. With
/// the lock held, a launch that finds only such a pipe says why when its time is up.
#[test]
fn squatters_at_a_published_name_cannot_stop_the_app() {
    let _w = watchdog(60);
    let dir = Dir::new("squat");
    let app = "test.wt.squat";
    let squatted = crate::sys::random_pipe_name().unwrap();
    let (got_tx, got) = mpsc::channel();
    // Created by the real user: owner the real user's SID.
    squat(&squatted, Some("D:(A;;FA;;;WD)"), got_tx.clone()).unwrap();
    publish(&dir.0, app, &squatted);
    PRETEND_USER.with(|p| p.set(Some(another_user())));
    let r = builder(&dir.0, app).start();
    PRETEND_USER.with(|p| p.set(None));
    match r {
        Ok(Start::Primary(p)) => assert_ne!(p.socket_path(), squatted),
        other => panic!("the squatter kept the app from starting: {other:?}"),
    }
    assert_eq!(got.recv_timeout(Duration::from_millis(300)), Err(mpsc::RecvTimeoutError::Timeout));

    let system = crate::sys::random_pipe_name().unwrap();
    if let Err(e) = squat(&system, Some("O:SYD:(A;;FA;;;WD)"), got_tx) {
        println!("note: cannot create a pipe owned by SYSTEM here ({e}); covered by the injected SID");
        return;
    }
    publish(&dir.0, app, &system);
    let held = primary(builder(&dir.0, app));
    assert_ne!(held.socket_path(), system);
    // The primary runs, but the file names the squatter (a process of this user wrote it):
    // the launch refuses it, and says so at its deadline.
    publish(&dir.0, app, &system);
    match builder(&dir.0, app).timeout(Duration::from_secs(1)).send() {
        Err(Error::Insecure(m)) => {
            assert!(m.contains(&*system.to_string_lossy()) && m.contains("S-1-5-18"), "{m}")
        }
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(got.recv_timeout(Duration::from_millis(300)), Err(mpsc::RecvTimeoutError::Timeout));
}

/// The primary's check: a client whose user is not the primary's is dropped before a byte
/// is read, and the app never sees its request; its own user's launches are served.
/// Wine has one user, so the primary takes itself for another (an injected SID).
#[test]
fn primary_drops_clients_of_another_user() {
    let _w = watchdog(60);
    let dir = Dir::new("peer");
    let app = "test.wt.peer";
    let primary = match builder(&dir.0, app).start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not primary: {other:?}"),
    };
    primary.pretend_user(Some(another_user()));
    let b = builder(&dir.0, app).timeout(Duration::from_secs(2));
    let launch = std::thread::spawn(move || b.send());
    if let Some(r) = primary.recv_timeout(Duration::from_secs(3)) {
        panic!("a stranger's request reached the app, peer {:?}", r.peer_credentials());
    }
    assert!(matches!(launch.join().unwrap(), Err(Error::NoReply(_))));

    // The user's own launch is served, and the primary sees who it is.
    primary.pretend_user(None);
    let b = builder(&dir.0, app);
    let launch = std::thread::spawn(move || b.send());
    let r = primary.recv_timeout(Duration::from_secs(10)).expect("own launch not delivered");
    assert_eq!(r.peer_credentials().and_then(|c| c.sid), Some(current_user().unwrap()));
    assert_eq!(r.args(), ["x"]);
    r.reply(Reply::exit(3)).unwrap();
    assert_eq!(launch.join().unwrap().unwrap().exit_code(), 3);
}

/// Opens pipe `path` as a client that lets the server know nothing of it (anonymous
/// impersonation level): to the primary, a stranger.
fn anonymous_client(path: &Path) -> OwnedHandle {
    use std::os::windows::ffi::OsStrExt;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    // SAFETY: `wide` is NUL-terminated; no security attributes, no template.
    let h = unsafe {
        CreateFileW(
            wide.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS,
            std::ptr::null_mut(),
        )
    };
    assert_ne!(h, INVALID_HANDLE_VALUE, "{}", std::io::Error::last_os_error());
    // SAFETY: a handle just opened, owned by nobody else.
    unsafe { OwnedHandle::from_raw_handle(h as _) }
}

/// A client that connects anonymously (the primary cannot tell who it is) is a stranger on
/// Windows. Wine 8 ignores the impersonation level a client asks for and shows its user:
/// there this prints what happened instead of asserting.
#[test]
fn primary_drops_anonymous_clients() {
    let _w = watchdog(60);
    let dir = Dir::new("anon");
    let primary = match builder(&dir.0, "test.wt.anon").start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not primary: {other:?}"),
    };
    let pipe = interprocess::os::windows::named_pipe::DuplexPipeStream::<
        interprocess::os::windows::named_pipe::pipe_mode::Bytes,
    >::try_from(anonymous_client(primary.socket_path()))
    .unwrap();
    let line = crate::Message {
        argv: vec!["stranger".into()],
        cwd: None,
        env: Default::default(),
        pid: None,
        data: serde_json::Value::Null,
    }
    .encode();
    let _ = (&pipe).write_all(format!("{line}\n").as_bytes());
    match primary.recv_timeout(Duration::from_secs(2)) {
        None => {}
        Some(r) if std::env::var_os("WINEDEBUG").is_some() => {
            println!("note: Wine delivered an anonymous client's request, as {:?}", r.peer_credentials())
        }
        Some(r) => panic!("an anonymous client's request reached the app, peer {:?}", r.peer_credentials()),
    }
}

/// The System scope's pipe: any local user may connect (Everyone gets the client's rights),
/// but only its creator may add instances, so another user cannot serve some of the
/// launches; the pipe's name has no user in it, and launches reach the primary.
#[test]
fn system_scope_pipe_lets_others_connect_but_not_serve() {
    let _w = watchdog(60);
    let dir = Dir::new("system");
    let b = || builder(&dir.0, "test.wt.system").scope(super::Scope::System);
    let primary = match b().start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not primary: {other:?}"),
    };
    let pipe = primary.socket_path().to_string_lossy().into_owned();
    assert!(pipe.starts_with(r"\\.\pipe\solo-instance.system."), "{pipe}");
    let client = crate::sys::connect(primary.socket_path(), crate::SocketOptions::empty(), None).unwrap();
    use std::os::windows::io::AsHandle;
    let sec = crate::sys::pipe_security(crate::sys::pipe(&client).as_handle()).unwrap();
    drop(client);
    let me = current_user().unwrap();
    let everyone: Sid = "S-1-1-0".parse().unwrap();
    assert_eq!(sec.owner, Some(me));
    let dacl: Vec<_> = sec.dacl.unwrap().iter().map(|a| (a.sid, a.mask)).collect();
    assert_eq!(dacl, [(me, 0x001F_01FF), (everyone, 0x0012_019B)]);

    let second = b();
    let launch = std::thread::spawn(move || second.send());
    let mut r = primary.recv_timeout(Duration::from_secs(10));
    // The dropped probe connection above may come first, as a request that never arrives.
    while r.is_none() {
        r = primary.recv_timeout(Duration::from_secs(10));
    }
    r.unwrap().reply(Reply::exit(5)).unwrap();
    assert_eq!(launch.join().unwrap().unwrap().exit_code(), 5);
}

/// A directory that is a symbolic link (or junction) could lead the primary's file writes
/// and removals anywhere: refused, as is a directory another user owns (outside the
/// System scope). In the System scope another user's directory is used without writing:
/// the lock file there is only opened, and no pid file is written.
#[test]
fn directories_that_are_links_or_anothers_are_refused() {
    let _w = watchdog(60);
    // The owner decision itself.
    assert!(crate::sys::is_trusted_owner(&current_user().unwrap()));
    assert!(crate::sys::is_trusted_owner(&"S-1-5-18".parse().unwrap())); // SYSTEM
    assert!(crate::sys::is_trusted_owner(&"S-1-5-32-544".parse().unwrap())); // Administrators
    assert!(!crate::sys::is_trusted_owner(&another_user()));
    assert!(!crate::sys::is_trusted_owner(&"S-1-1-0".parse().unwrap())); // Everyone
    let base = Dir::new("dirs");
    let real = base.0.join("real");
    std::fs::create_dir(&real).unwrap();
    let link = base.0.join("link");
    match std::os::windows::fs::symlink_dir(&real, &link) {
        // Wine 8 makes a Unix symlink that it then does not show as a reparse point.
        Ok(()) if !std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) => {
            println!("note: this OS does not show the directory symlink as one; refusal untested")
        }
        Ok(()) => match builder(&link, "test.wt.link").start() {
            Err(Error::Insecure(m)) => assert!(m.contains("link"), "{m}"),
            other => panic!("a linked directory was used: {other:?}"),
        },
        Err(e) => println!("note: cannot make a directory symlink here ({e})"),
    }

    let theirs = base.0.join("theirs");
    PRETEND_USER.with(|p| p.set(Some(another_user())));
    let made = crate::sys::create_shared_dir(&theirs);
    PRETEND_USER.with(|p| p.set(None));
    made.unwrap();
    let owner = crate::sys::directory_owner(&theirs).unwrap();
    if owner != another_user() {
        println!("note: Wine made {owner} the owner, not the SID asked for; foreign directory untested");
        return;
    }
    match builder(&theirs, "test.wt.theirs").start() {
        Err(Error::Insecure(m)) => assert!(m.contains(&another_user().to_string()), "{m}"),
        other => panic!("another user's directory was used: {other:?}"),
    }
    // System scope: the lock file that user made is opened (never created), and nothing
    // is written beside it.
    let lock = theirs.join("test.wt.theirs.lock");
    if std::fs::write(&lock, b"").is_err() {
        println!("note: cannot create the other user's lock file here; System-scope guest use untested");
        return;
    }
    let primary = match builder(&theirs, "test.wt.theirs").scope(super::Scope::System).start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not primary in another user's System directory: {other:?}"),
    };
    assert!(!theirs.join("test.wt.theirs.pid").exists());
    drop(primary);
    std::fs::remove_file(&lock).unwrap();
    match builder(&theirs, "test.wt.theirs").scope(super::Scope::System).start() {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}"),
        other => panic!("a lock file was created in another user's directory: {other:?}"),
    }
}

/// A pipe of this very user but labelled below the launch's integrity level (what a
/// sandboxed process of the user would create, Low; or, for an elevated launch, a
/// non-elevated one, Medium) is not the launch's primary: it receives no byte, and the
/// launch becomes the primary; with the lock held, the launch names the level at its
/// deadline. Wine runs at High, so a Medium pipe is below it.
#[test]
fn launch_ignores_a_lower_integrity_pipe_of_its_own_user() {
    let _w = watchdog(60);
    assert!(crate::sys::integrity_is_enough(0x2000, 0x2000));
    assert!(crate::sys::integrity_is_enough(0x3000, 0x2000)); // elevated pipe, normal launch
    assert!(!crate::sys::integrity_is_enough(0x2000, 0x3000)); // normal pipe, elevated launch
    assert!(!crate::sys::integrity_is_enough(0x1000, 0x2000)); // sandboxed squatter
    let dir = Dir::new("low");
    let app = "test.wt.low";
    for label in ["LW", "ME"] {
        let pipe = crate::sys::random_pipe_name().unwrap();
        let (got_tx, got) = mpsc::channel();
        // Owner this user, Everyone may use it, labelled below this process.
        let sddl = format!("O:{}D:(A;;FA;;;WD)S:(ML;;NW;;;{label})", current_user().unwrap());
        squat(&pipe, Some(&sddl), got_tx).unwrap();
        let probe = crate::sys::connect(&pipe, crate::SocketOptions::empty(), None).unwrap();
        use std::os::windows::io::AsHandle;
        let level = crate::sys::object_integrity(crate::sys::pipe(&probe).as_handle()).unwrap();
        drop(probe);
        if level >= crate::sys::own_integrity().unwrap() {
            println!("note: the pipe reads {level:#x}, not below this process; {label} untested");
            continue;
        }
        publish(&dir.0, app, &pipe);
        let p = primary(builder(&dir.0, app));
        publish(&dir.0, app, &pipe);
        match builder(&dir.0, app).timeout(Duration::from_secs(1)).send() {
            Err(Error::Insecure(m)) => assert!(m.contains("integrity"), "{m}"),
            other => panic!("a {label} pipe was trusted: {other:?}"),
        }
        drop(p);
        assert_eq!(got.recv_timeout(Duration::from_millis(300)), Err(mpsc::RecvTimeoutError::Timeout));
    }
}

/// An elevated primary takes no launch from a less trusted process of its user (that
/// would be a silent elevation): the client's integrity level, read from its token, is
/// below the primary's, so it is dropped before a byte is read. Wine runs everything at
/// High, so the primary takes itself for System.
#[test]
fn elevated_primary_drops_less_trusted_clients() {
    let _w = watchdog(60);
    let dir = Dir::new("uac");
    let app = "test.wt.uac";
    let p = primary(builder(&dir.0, app));
    p.pretend_integrity(Some(0x4000));
    let b = builder(&dir.0, app).timeout(Duration::from_secs(2));
    let launch = std::thread::spawn(move || b.send());
    if let Some(r) = p.recv_timeout(Duration::from_secs(3)) {
        panic!("a less trusted launch reached the app, peer {:?}", r.peer_credentials());
    }
    assert!(matches!(launch.join().unwrap(), Err(Error::NoReply(_))));
    p.pretend_integrity(None);
    let b = builder(&dir.0, app);
    let launch = std::thread::spawn(move || b.send());
    p.recv_timeout(Duration::from_secs(10))
        .expect("an equal launch not delivered")
        .reply(Reply::exit(4))
        .unwrap();
    assert_eq!(launch.join().unwrap().unwrap().exit_code(), 4);
}

/// A launch that is not elevated and meets its user's elevated primary is told so at once
/// (not "another user", not a timeout). Wine runs everything at High, so the launch takes
/// itself for Medium.
#[test]
fn non_elevated_launch_is_told_the_primary_is_elevated() {
    let _w = watchdog(60);
    let dir = Dir::new("elev");
    let app = "test.wt.elev";
    let p = primary(builder(&dir.0, app));
    let b = builder(&dir.0, app);
    let r = std::thread::spawn(move || {
        crate::sys::PRETEND_INTEGRITY.with(|i| i.set(Some(0x2000)));
        let started = std::time::Instant::now();
        (b.send(), started.elapsed())
    })
    .join()
    .unwrap();
    match r {
        (Err(Error::Insecure(m)), t) => {
            assert!(m.contains("administrator") && !m.contains("another user"), "{m}");
            assert!(t < Duration::from_secs(2), "told only after {t:?}");
        }
        other => panic!("not told: {other:?}"),
    }
    assert!(p.recv_timeout(Duration::from_millis(300)).is_none());
}

/// A squatter at a published name that never frees an instance of its pipe (every
/// instance taken) cannot hold a launch for its whole timeout: the launch waits a moment
/// for an instance, then the lock decides, and it becomes the primary.
#[test]
fn a_busy_squatter_cannot_stop_the_app() {
    let _w = watchdog(30);
    let dir = Dir::new("busy");
    let app = "test.wt.busy";
    let busy = crate::sys::random_pipe_name().unwrap();
    let name = busy.as_os_str().to_fs_name::<GenericFilePath>().unwrap();
    // One instance, never accepted from: taken by the first client, below.
    let _listener = ListenerOptions::new().name(name).create_sync().unwrap();
    let _taken =
        crate::sys::connect(&busy, crate::SocketOptions::empty(), Some(Duration::from_secs(1))).unwrap();
    publish(&dir.0, app, &busy);
    let t = std::time::Instant::now();
    match builder(&dir.0, app).timeout(Duration::from_secs(5)).start() {
        Ok(Start::Primary(p)) => assert_ne!(p.socket_path(), busy),
        other => panic!("a busy squatter kept the app from starting: {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
}

/// What a primary that died left published (its pipe is gone) stops nobody, not even a
/// launch below the level it published (an elevated primary that crashed, a normal launch
/// after it): the launch becomes the primary and publishes its own pipe.
#[test]
fn a_dead_primarys_published_name_stops_nobody() {
    let _w = watchdog(30);
    let dir = Dir::new("stale");
    let app = "test.wt.stale";
    let gone = crate::sys::random_pipe_name().unwrap();
    super::published::publish(&published_file(&dir.0, app), &gone, 0x3000).unwrap();
    let b = builder(&dir.0, app);
    let started = std::thread::spawn(move || {
        crate::sys::PRETEND_INTEGRITY.with(|i| i.set(Some(0x2000)));
        b.start().map(|s| matches!(s, Start::Primary(_)))
    })
    .join()
    .unwrap();
    assert!(matches!(started, Ok(true)), "{started:?}");
}

/// A crashed elevated primary's published file (level High, its pipe gone) and a
/// squatter that creates a pipe at that name (pipe names can be listed by anyone) whose
/// DACL refuses this user: a normal launch must not take the refusal for Windows'
/// integrity rule and fail at once with "elevated" for as long as the squatter lives; no
/// primary holds the lock, so the lock decides and the launch is the primary. Written for
/// Windows: Wine enforces no DACL (the connect succeeds there, and the squatter, taken
/// for ours, never answers), so under Wine only the start is run, with a short timeout.
#[test]
fn a_squatter_at_a_dead_elevated_primarys_name_cannot_pass_for_it() {
    let _w = watchdog(30);
    let dir = Dir::new("elevsquat");
    let app = "test.wt.elevsquat";
    let stale = crate::sys::random_pipe_name().unwrap();
    // Refuses everyone (an empty DACL), as another user's pipe refuses this one.
    let mut squatter = crate::LocalServer::new();
    squatter.set_pipe_sddl(Some("D:".into()));
    squatter.listen(&stale.to_string_lossy()).unwrap();
    super::published::publish(&published_file(&dir.0, app), &stale, 0x3000).unwrap();
    let b = builder(&dir.0, app).timeout(Duration::from_secs(3));
    let started = std::thread::spawn(move || {
        crate::sys::PRETEND_INTEGRITY.with(|i| i.set(Some(0x2000)));
        b.start().map(|s| matches!(s, Start::Primary(_)))
    })
    .join()
    .unwrap();
    if std::env::var_os("WINEDEBUG").is_some() {
        println!("note: Wine enforces no DACL: the launch gave {started:?}");
        return;
    }
    assert!(matches!(started, Ok(true)), "{started:?}");
}

/// The User scope spans Terminal Services sessions: a launch in another session than its
/// primary's (an RDP login next to the console) is refused with a message that says so,
/// rather than forwarded to a window it cannot see. Wine has one session: the launch
/// takes itself for another.
#[test]
fn launch_in_another_session_is_refused() {
    let _w = watchdog(60);
    let dir = Dir::new("sess");
    let app = "test.wt.sess";
    let p = primary(builder(&dir.0, app));
    let b = builder(&dir.0, app);
    let r = std::thread::spawn(move || {
        let own = crate::sys::session_id().unwrap_or(0);
        crate::sys::PRETEND_SESSION.with(|s| s.set(Some(own + 7)));
        b.send()
    })
    .join()
    .unwrap();
    match r {
        Err(Error::Insecure(m)) => assert!(m.contains("session"), "{m}"),
        other => panic!("not refused: {other:?}"),
    }
    assert!(p.recv_timeout(Duration::from_millis(300)).is_none());
}

/// One directory, one primary, however its path is spelled: the lock is the same file,
/// and the launch finds the pipe through the published name (User scope) or a name hashed
/// from the directory's identity (System scope), not from its spelling.
#[test]
fn every_spelling_of_a_directory_finds_one_primary() {
    let _w = watchdog(90);
    let dir = Dir::new("Spell");
    let plain = dir.0.to_string_lossy().into_owned();
    let spellings = [
        plain.to_uppercase(),
        plain.to_lowercase(),
        plain.replace('\\', "/"),
        format!("{plain}\\"),
        format!(r"\\?\{plain}"),
    ];
    for scope in [super::Scope::User, super::Scope::System] {
        let app = "test.wt.spell";
        let p = primary(builder(&dir.0, app).scope(scope));
        for s in &spellings {
            let b = builder(Path::new(s), app).scope(scope).timeout(Duration::from_secs(2));
            let launch = std::thread::spawn(move || b.send());
            let r = p
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|| panic!("{scope:?} {s}: not delivered"));
            r.reply(Reply::exit(6)).unwrap();
            assert_eq!(launch.join().unwrap().unwrap().exit_code(), 6, "{scope:?} {s}");
        }
    }
}

/// `%ProgramData%` (the System scope's base) is where Windows keeps it
/// (`SHGetKnownFolderPath`), not what the environment variable says.
#[test]
fn program_data_comes_from_the_known_folder() {
    let _w = watchdog(30);
    let known = crate::sys::program_data().unwrap();
    let decoy = std::env::temp_dir().join(format!("solo-wt-{}-decoy", std::process::id()));
    let _ = std::fs::remove_dir_all(&decoy);
    std::env::set_var("ProgramData", &decoy);
    let lock =
        SingleInstance::new("test.wt.progdata").unwrap().scope(super::Scope::System).status().map(|s| s.lock);
    std::env::remove_var("ProgramData");
    let lock = lock.unwrap();
    assert!(lock.starts_with(&known), "{} not under {}", lock.display(), known.display());
    let used = decoy.exists();
    let _ = std::fs::remove_dir_all(&decoy);
    assert!(!used, "the environment's ProgramData was used");
}

/// Creates `dir` with the security descriptor `sddl`.
fn dir_with(dir: &Path, sddl: &str) {
    crate::sys::create_dir_with(dir, sddl).unwrap();
}

/// A directory whose DACL lets anyone but the user, SYSTEM, Administrators,
/// TrustedInstaller, CREATOR OWNER or OWNER RIGHTS add, delete or rename what it holds, or
/// change its permissions, is refused (the decision: `directory_dacl_decision`; Wine shows
/// a directory's DACL as its Unix mode, without the grant, and then this notes it). The
/// held lock cannot be deleted (no delete sharing), and a hard link planted as the pid
/// file is not written through.
#[test]
fn directories_others_may_write_to_are_refused() {
    let _w = watchdog(60);
    let base = Dir::new("dacl");
    let me = current_user().unwrap();
    let owner = format!("O:{me}D:P(A;OICI;FA;;;{me})(A;OICI;FA;;;SY)");
    for (tag, ace) in [("add-file", "(A;;0x2;;;AU)"), ("delete-child", "(A;OICIIO;0x40;;;WD)")] {
        let d = base.0.join(tag);
        dir_with(&d, &format!("{owner}{ace}"));
        if crate::sys::check_directory(&d, Some(&[])).is_ok() {
            println!("note: this OS does not keep the directory's DACL ({tag}); refusal untested here");
            continue;
        }
        match builder(&d, "test.wt.dacl").start() {
            Err(Error::Insecure(m)) => assert!(m.contains("DACL"), "{tag}: {m}"),
            other => panic!("{tag}: a directory others may write to was used: {other:?}"),
        }
    }
    let own = base.0.join("own");
    let p = primary(builder(&own, "test.wt.dacl"));
    assert!(std::fs::remove_file(p.lock_path()).is_err(), "the held lock was deleted");
    assert!(std::fs::rename(p.lock_path(), own.join("moved")).is_err(), "the held lock was renamed");
    drop(p);

    // A hard link planted as the pid file: not written through.
    let victim = base.0.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::hard_link(&victim, own.join("test.wt.link.pid")).unwrap();
    let p = primary(builder(&own, "test.wt.link"));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(builder(&own, "test.wt.link").status().unwrap().pid, None, "read through the link");
    drop(p);
}

/// No thread before it is needed: the app's own thread serves the pipe while it waits in
/// a receive call, and a launch made before the first one is served then.
#[test]
fn a_launch_before_the_first_receive_is_served_by_it() {
    let _w = watchdog(60);
    let dir = Dir::new("lazy");
    let app = "test.wt.lazy";
    let primary = match builder(&dir.0, app).start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not primary: {other:?}"),
    };
    let b = builder(&dir.0, app);
    let launch = std::thread::spawn(move || b.send());
    let r = primary.recv_timeout(Duration::from_secs(10)).expect("the launch was not delivered");
    r.reply(Reply::exit(5)).unwrap();
    assert_eq!(launch.join().unwrap().unwrap().exit_code(), 5);
}
