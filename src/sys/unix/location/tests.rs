//! The Unix names and directories: shortened names, the private fallback directory and
//! its secret, non-UTF-8 directories.

use std::path::{Path, PathBuf};

use super::{fallback_dir, fits, server_name};
use crate::name::{short_hash, short_hash_bytes, MADE_UP};

#[test]
fn long_names_are_shortened() {
    let base = Path::new("/tmp");
    let long = "x".repeat(150);
    let p = server_name(base, &long, false).unwrap();
    assert!(p.as_os_str().len() <= crate::MAX_SOCKET_PATH);
    assert_eq!(p, server_name(base, &long, false).unwrap());
    assert_ne!(p, server_name(base, &"y".repeat(150), false).unwrap());
}

/// A fresh private directory `/tmp/solo-location-<pid>-<n>/<name>`, removed on drop
/// together with the fallback directory its secret names (if one was made).
struct Scratch(PathBuf, PathBuf);

impl Scratch {
    fn new(name: &[u8]) -> Scratch {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::DirBuilderExt;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let top = PathBuf::from(format!("/tmp/solo-location-{}-{n}", std::process::id()));
        let base = top.join(std::ffi::OsStr::from_bytes(name));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&base).unwrap();
        Scratch(top, base)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.1.join(format!("{MADE_UP}fallback")).exists() {
            let _ = std::fs::remove_dir_all(fallback_dir(false, &self.1).unwrap());
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The temporary bind path (`dir/.XXXXXX/s`) must fit as well, and a directory too
/// long for either moves the socket to a private directory, never to a shared name.
#[test]
fn every_chosen_socket_path_can_be_bound() {
    for len in 60..140 {
        let base = Scratch::new("d".repeat(len - 30).as_bytes());
        let p = server_name(&base.1, "org.example.App", false).unwrap();
        assert!(fits(&p), "{len}: {}", p.display());
        let dir = p.parent().unwrap();
        assert!(dir == base.1 || dir == fallback_dir(false, &base.1).unwrap(), "{len}: {}", p.display());
    }
}

/// The long-path fallback is per user and secret: named after a random secret kept in
/// the (private) base directory, the same for every launch that shares it, another for
/// another base.
#[test]
fn the_long_path_fallback_has_a_secret_name() {
    let a = Scratch::new("d".repeat(100).as_bytes());
    let b = Scratch::new("d".repeat(100).as_bytes());
    let pa = server_name(&a.1, "org.example.App", false).unwrap();
    assert_eq!(pa, server_name(&a.1, "org.example.App", false).unwrap());
    let pb = server_name(&b.1, "org.example.App", false).unwrap();
    assert_ne!(pa.parent(), pb.parent());
    let dir = pa.parent().unwrap().file_name().unwrap().to_str().unwrap().to_owned();
    let secret = std::fs::read_to_string(a.1.join(format!("{MADE_UP}fallback"))).unwrap();
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.1.join(format!("{MADE_UP}fallback"))).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1600, "XDG's clean-up must leave the secret alone");
    }
    assert_eq!(dir, format!("solo-instance-{}{MADE_UP}{secret}", super::super::euid()));
    // Nothing left behind but the secret.
    let names: Vec<_> = std::fs::read_dir(&a.1).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [std::ffi::OsString::from(format!("{MADE_UP}fallback"))]);
}

/// The fallback directory's name is secret only until it is first used: `ls /tmp`
/// shows it, and so does `/proc/net/unix` while a socket is bound there. Once a temp
/// cleaner (or a reboot, with the secret kept in a persistent cache directory) removes
/// the directory, another user who saw the name can create it first. That must not
/// lock the user out for good: a squatted name burns the
/// secret, and the launches that share the base all move on to the same next one.
#[test]
fn a_squatted_fallback_name_is_left_for_a_new_secret() {
    use std::os::unix::fs::MetadataExt;
    if super::super::euid() != 0 {
        eprintln!("skipping: needs root (to give the squatted directory another owner)");
        return;
    }
    let base = Scratch::new("q".repeat(100).as_bytes());
    let first = server_name(&base.1, "org.example.App", false).unwrap();
    let seen = first.parent().unwrap().to_path_buf();
    // The directory goes (a temp cleaner), and a stranger who read its name makes it.
    std::fs::remove_dir_all(&seen).unwrap();
    std::fs::create_dir(&seen).unwrap();
    std::os::unix::fs::chown(&seen, Some(4299), Some(4299)).unwrap();
    let squatted = Squat(seen.clone());
    let again = server_name(&base.1, "org.example.App", false);
    let again = again.unwrap_or_else(|e| panic!("locked out by a stranger's {}: {e}", seen.display()));
    assert_ne!(again.parent().unwrap(), seen, "still the stranger's directory");
    assert_eq!(std::fs::metadata(again.parent().unwrap()).unwrap().uid(), super::super::euid());
    // Every launch that shares the base meets there.
    assert_eq!(again, server_name(&base.1, "org.example.App", false).unwrap());
    let _ = std::fs::remove_dir_all(again.parent().unwrap());
    drop(squatted);

    /// Removes the stranger's directory, whatever the test did.
    struct Squat(PathBuf);
    impl Drop for Squat {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Every name made up here carries [`MADE_UP`], which no app id has (see
/// `instance::location`'s test): a shortened socket name, the fallback directory's, a
/// shortened System-scope name.
#[test]
fn made_up_names_carry_the_mark() {
    let long = "x".repeat(150);
    let stem_of = |p: &Path| p.file_name().unwrap().to_str().unwrap().trim_end_matches(".sock").to_owned();
    let short = stem_of(&server_name(Path::new("/tmp"), &long, false).unwrap());
    let deep = Scratch::new("d".repeat(100).as_bytes());
    let fallback = server_name(&deep.1, "org.example.App", false).unwrap();
    let dir = stem_of(fallback.parent().unwrap());
    for name in [short, stem_of(&fallback)] {
        assert!(name.starts_with(MADE_UP), "{name}");
    }
    assert!(dir.contains(MADE_UP), "{dir}");
    if let Some((_, socket)) = super::system_abstract(&"y".repeat(150)) {
        let name = socket.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(MADE_UP), "{name}");
    }
}

#[test]
fn non_utf8_directories_get_a_usable_name() {
    let (da, db) = (Scratch::new(b"x\xff"), Scratch::new(b"x\xfe"));
    let a = server_name(&da.1, "app", false).unwrap();
    let b = server_name(&db.1, "app", false).unwrap();
    assert!(a.to_str().is_some() && b.to_str().is_some(), "{a:?} {b:?}");
    assert_ne!(a, b);
    // UTF-8 names are unchanged, and so is the hash of a long one.
    assert_eq!(server_name(Path::new("/run/x"), "app", false).unwrap(), Path::new("/run/x/app.sock"));
    assert_eq!(short_hash_bytes(b"a"), short_hash("a"));
}
