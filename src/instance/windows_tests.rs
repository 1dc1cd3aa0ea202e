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

/// The pipe name comes from the process token's user SID, not from %USERNAME%: the same
/// directory and app id give another name for another SID, and changing USERNAME changes
/// nothing.
#[test]
fn pipe_name_is_derived_from_the_user_sid() {
    let _w = watchdog(30);
    let dir = Dir::new("name");
    let me = current_user().unwrap();
    let name = |b: &SingleInstance| b.status().unwrap().socket.to_string_lossy().into_owned();
    let mine = name(&builder(&dir.0, "test.wt.name"));
    assert!(mine.starts_with(&format!(r"\\.\pipe\solo-instance.{me}.")), "{mine}");
    assert!(mine.ends_with(".test.wt.name"), "{mine}");
    PRETEND_USER.with(|p| p.set(Some(another_user())));
    let theirs = name(&builder(&dir.0, "test.wt.name"));
    PRETEND_USER.with(|p| p.set(None));
    assert_ne!(mine, theirs);
    assert!(theirs.contains(&another_user().to_string()), "{theirs}");
    // A 200-byte app id still fits the 256 characters of a pipe name.
    let long = "a".repeat(200);
    let n = name(&builder(&dir.0, &long));
    assert!(n.encode_utf16().count() <= 256 && n.contains(&me.to_string()), "{n}");
}

/// A pipe squatted under the launch's name by another user is refused with
/// `Error::Insecure`, naming the pipe, before a byte is written. Wine has one user, so the
/// launch takes itself for another (an injected SID) and finds the pipe of its real user.
#[test]
fn launch_refuses_a_pipe_owned_by_another_user() {
    let _w = watchdog(30);
    let dir = Dir::new("squat");
    let app = "test.wt.squat";
    PRETEND_USER.with(|p| p.set(Some(another_user())));
    let loc = builder(&dir.0, app).location().unwrap();
    let (got_tx, got) = mpsc::channel();
    // Created by the real user: owner the real user's SID.
    std::thread::scope(|s| s.spawn(|| squat(&loc.socket, Some("D:(A;;FA;;;WD)"), got_tx)).join().unwrap())
        .unwrap();
    let r = builder(&dir.0, app).start();
    PRETEND_USER.with(|p| p.set(None));
    match r {
        Err(Error::Insecure(m)) => {
            assert!(m.contains(&*loc.socket.to_string_lossy()), "{m}")
        }
        other => panic!("not refused: {other:?}"),
    }
    // The squatter read nothing: the launch did not write.
    assert_eq!(got.recv_timeout(Duration::from_millis(500)), Err(mpsc::RecvTimeoutError::Timeout));
}

/// Where Windows lets this process make another SID the owner (SeRestorePrivilege, or Wine),
/// a real foreign-owned pipe: refused without any injection.
#[test]
fn launch_refuses_a_pipe_whose_owner_is_system() {
    let _w = watchdog(30);
    let dir = Dir::new("squat-sy");
    let app = "test.wt.squatsy";
    let loc = builder(&dir.0, app).location().unwrap();
    let (got_tx, got) = mpsc::channel();
    if let Err(e) = squat(&loc.socket, Some("O:SYD:(A;;FA;;;WD)"), got_tx) {
        println!("note: cannot create a pipe owned by SYSTEM here ({e}); covered by the injected-SID test");
        return;
    }
    match builder(&dir.0, app).start() {
        Err(Error::Insecure(m)) => assert!(m.contains(&*loc.socket.to_string_lossy()), "{m}"),
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(got.recv_timeout(Duration::from_millis(500)), Err(mpsc::RecvTimeoutError::Timeout));
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

/// A pipe of this very user but labelled low integrity (what a sandboxed process of the
/// user, such as a browser's renderer, would create) is refused like another user's: it
/// must not receive launches, nor the right to take the foreground.
#[test]
fn launch_refuses_a_low_integrity_pipe_of_its_own_user() {
    let _w = watchdog(30);
    assert!(crate::sys::integrity_is_enough(0x2000, 0x2000));
    assert!(crate::sys::integrity_is_enough(0x3000, 0x2000)); // elevated primary, normal launch
    assert!(crate::sys::integrity_is_enough(0x2000, 0x3000)); // normal primary, elevated launch
    assert!(!crate::sys::integrity_is_enough(0x1000, 0x2000)); // sandboxed squatter
    let dir = Dir::new("low");
    let app = "test.wt.low";
    let loc = builder(&dir.0, app).location().unwrap();
    let (got_tx, got) = mpsc::channel();
    // Owner this user, Everyone may use it, labelled Low.
    let sddl = format!("O:{}D:(A;;FA;;;WD)S:(ML;;NW;;;LW)", current_user().unwrap());
    squat(&loc.socket, Some(&sddl), got_tx).unwrap();
    let probe = crate::sys::connect(&loc.socket, crate::SocketOptions::empty(), None).unwrap();
    use std::os::windows::io::AsHandle;
    let level = crate::sys::object_integrity(crate::sys::pipe(&probe).as_handle()).unwrap();
    drop(probe);
    if level != 0x1000 {
        println!("note: this OS keeps no integrity label on pipes (read {level:#x}); refusal untested");
        return;
    }
    match builder(&dir.0, app).start() {
        Err(Error::Insecure(m)) => assert!(m.contains("integrity"), "{m}"),
        other => panic!("a low-integrity pipe was trusted: {other:?}"),
    }
    assert_eq!(got.recv_timeout(Duration::from_millis(500)), Err(mpsc::RecvTimeoutError::Timeout));
}

/// No thread before it is needed: the accept thread starts with the first call that
/// takes requests, and a launch made before it waits for a pipe instance and is served
/// then.
#[test]
fn accept_thread_starts_with_the_first_receive() {
    let _w = watchdog(60);
    let dir = Dir::new("lazy");
    let app = "test.wt.lazy";
    let primary = match builder(&dir.0, app).start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not primary: {other:?}"),
    };
    assert!(!primary.server.lock().unwrap().has_acceptor(), "an accept thread before any receive");
    let b = builder(&dir.0, app);
    let launch = std::thread::spawn(move || b.send());
    let r = primary.recv_timeout(Duration::from_secs(10)).expect("the launch was not delivered");
    assert!(primary.server.lock().unwrap().has_acceptor());
    r.reply(Reply::exit(5)).unwrap();
    assert_eq!(launch.join().unwrap().unwrap().exit_code(), 5);
}
