//! Who is let in: the primary drops clients of another user, anonymous ones and less
//! trusted ones; a launch ignores a lower-integrity pipe, is told of an elevated primary or
//! one in another session; the System scope's pipe admits every user but lets none serve.

#[allow(unused_imports)]
use super::*;

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
    if let Ok(r) = primary.recv_timeout(Duration::from_secs(3)) {
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
        Err(_) => {}
        Ok(r) if std::env::var_os("WINEDEBUG").is_some() => {
            println!("note: Wine delivered an anonymous client's request, as {:?}", r.peer_credentials())
        }
        Ok(r) => panic!("an anonymous client's request reached the app, peer {:?}", r.peer_credentials()),
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
    if let Ok(r) = p.recv_timeout(Duration::from_secs(3)) {
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
    assert!(p.recv_timeout(Duration::from_millis(300)).is_err());
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
        let own = crate::sys::windows::session_id().unwrap_or(0);
        crate::sys::PRETEND_SESSION.with(|s| s.set(Some(own + 7)));
        b.send()
    })
    .join()
    .unwrap();
    match r {
        Err(Error::Insecure(m)) => assert!(m.contains("session"), "{m}"),
        other => panic!("not refused: {other:?}"),
    }
    assert!(p.recv_timeout(Duration::from_millis(300)).is_err());
}

/// The System scope's pipe: any local user may connect (Everyone gets the client's rights),
/// but only its creator may add instances, so another user cannot serve some of the
/// launches; the pipe's name has no user in it, and launches reach the primary.
#[test]
fn system_scope_pipe_lets_others_connect_but_not_serve() {
    let _w = watchdog(60);
    let dir = Dir::new("system");
    let b = || builder(&dir.0, "test.wt.system").scope(crate::Scope::System);
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
    while r.is_err() {
        r = primary.recv_timeout(Duration::from_secs(10));
    }
    r.unwrap().reply(Reply::exit(5)).unwrap();
    assert_eq!(launch.join().unwrap().unwrap().exit_code(), 5);
}
