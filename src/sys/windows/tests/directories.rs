//! The directories: links and other users' directories refused, DACLs that let others
//! write refused, `%ProgramData%` from the known folder, the lock and pid files.

#[allow(unused_imports)]
use super::*;

/// A directory that is a symbolic link (or junction) could lead the primary's file writes
/// and removals anywhere: refused, as is a directory another user owns (outside the
/// System scope). In the System scope another user's directory is used without writing:
/// the lock file there is only opened, and no pid file is written.
#[test]
fn directories_that_are_links_or_anothers_are_refused() {
    let _w = watchdog(60);
    // The owner decision itself.
    assert!(crate::sys::windows::is_trusted_owner(&current_user().unwrap()));
    assert!(crate::sys::windows::is_trusted_owner(&"S-1-5-18".parse().unwrap())); // SYSTEM
    assert!(crate::sys::windows::is_trusted_owner(&"S-1-5-32-544".parse().unwrap())); // Administrators
    assert!(!crate::sys::windows::is_trusted_owner(&another_user()));
    assert!(!crate::sys::windows::is_trusted_owner(&"S-1-1-0".parse().unwrap())); // Everyone
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
    let made = crate::sys::windows::create_shared_dir(&theirs);
    PRETEND_USER.with(|p| p.set(None));
    made.unwrap();
    let owner = crate::sys::windows::directory_owner(&theirs).unwrap();
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
    let primary = match builder(&theirs, "test.wt.theirs").scope(crate::Scope::System).start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not primary in another user's System directory: {other:?}"),
    };
    assert!(!theirs.join("test.wt.theirs.pid").exists());
    drop(primary);
    std::fs::remove_file(&lock).unwrap();
    match builder(&theirs, "test.wt.theirs").scope(crate::Scope::System).start() {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}"),
        other => panic!("a lock file was created in another user's directory: {other:?}"),
    }
}

/// `%ProgramData%` (the System scope's base) is where Windows keeps it
/// (`SHGetKnownFolderPath`), not what the environment variable says.
#[test]
fn program_data_comes_from_the_known_folder() {
    let _w = watchdog(30);
    let known = crate::sys::windows::program_data().unwrap();
    let decoy = std::env::temp_dir().join(format!("solo-wt-{}-decoy", std::process::id()));
    let _ = std::fs::remove_dir_all(&decoy);
    std::env::set_var("ProgramData", &decoy);
    let lock =
        SingleInstance::new("test.wt.progdata").unwrap().scope(crate::Scope::System).status().map(|s| s.lock);
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
        if crate::sys::windows::check_directory(&d, Some(&[])).is_ok() {
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
