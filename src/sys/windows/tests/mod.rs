//! SingleInstance's Windows guarantees, tested in the crate (where the injected SID and raw
//! Win32 clients are at hand); CI runs them under Wine (`tests/wine.sh`). What Wine cannot
//! prove is listed in `tests/windows.rs`. By concern: [`published`] (the pipe's random,
//! published name and the squatters at it), [`peers`] (who the primary and the launch let
//! in: user, integrity level, session) and [`directories`] (the directories' owners and
//! DACLs, the lock and pid files).

mod directories;
mod engine;
mod peers;
mod published;

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

use crate::sys::{current_user, PRETEND_USER};
use crate::Error;
use crate::Sid;
use crate::{Reply, SingleInstance, Start};

pub(super) struct Dir(pub(super) PathBuf);

impl Dir {
    pub(super) fn new(tag: &str) -> Dir {
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
pub(super) fn watchdog(secs: u64) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("watchdog: test ran past {secs} s");
            std::process::abort();
        }
    });
    tx
}

pub(super) fn builder(dir: &Path, app: &str) -> SingleInstance {
    SingleInstance::new(app).unwrap().directory(dir).timeout(Duration::from_secs(3)).argv(["prog", "x"])
}

pub(super) fn another_user() -> Sid {
    let other: Sid = "S-1-5-21-1111-2222-3333-4444".parse().unwrap();
    assert_ne!(Some(other), current_user().ok());
    other
}

/// A pipe that accepts every connection and reads what is sent, on a thread: a squatter.
/// Reports on `got` each read that brought bytes.
pub(super) fn squat(path: &Path, sddl: Option<&str>, got: mpsc::Sender<usize>) -> std::io::Result<()> {
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

pub(super) fn primary(b: SingleInstance) -> crate::Primary {
    match b.start() {
        Ok(Start::Primary(p)) => p,
        other => panic!("not primary: {other:?}"),
    }
}

/// The file in which the primary of `app` in `dir` publishes its pipe's name.
pub(super) fn published_file(dir: &Path, app: &str) -> PathBuf {
    dir.join(format!("{app}.pipe"))
}

/// Publishes `pipe` in the file of `app` in `dir`, as a primary would.
pub(super) fn publish(dir: &Path, app: &str, pipe: &Path) {
    crate::sys::published::publish(&published_file(dir, app), pipe, 0x2000).unwrap();
}
