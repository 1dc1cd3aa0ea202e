//! The primary's pipe: a random name, published once the pipe exists; squatters at a
//! published name, busy or dead primaries; every spelling of a directory.

#[allow(unused_imports)]
use super::*;

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
    assert!(crate::sys::windows::is_random_pipe_name(&name.to_string_lossy()), "{}", name.display());
    let published = crate::sys::published::read(&published_file(&dir.0, app)).expect("published");
    assert_eq!(published.name, name);
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
    crate::sys::published::publish(&published_file(&dir.0, app), &gone, 0x3000).unwrap();
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
    crate::sys::published::publish(&published_file(&dir.0, app), &stale, 0x3000).unwrap();
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
    for scope in [crate::Scope::User, crate::Scope::System] {
        let app = "test.wt.spell";
        let p = primary(builder(&dir.0, app).scope(scope));
        for s in &spellings {
            let b = builder(Path::new(s), app).scope(scope).timeout(Duration::from_secs(2));
            let launch = std::thread::spawn(move || b.send());
            let r = p
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{scope:?} {s}: not delivered ({e})"));
            r.reply(Reply::exit(6)).unwrap();
            assert_eq!(launch.join().unwrap().unwrap().exit_code(), 6, "{scope:?} {s}");
        }
    }
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
