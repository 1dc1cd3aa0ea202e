//! The pipes' security descriptors, read back.

use std::io::{Read, Write};
use std::os::windows::io::AsHandle;
use std::path::PathBuf;
use std::time::Duration;

use interprocess::os::windows::security_descriptor::AsSecurityDescriptor;
use interprocess::TryClone;

use super::*;
use crate::sys::{connect, pipe, Listener};

fn name(tag: &str) -> PathBuf {
    PathBuf::from(format!(r"\\.\pipe\solo-sec-{}-{tag}", std::process::id()))
}

fn allowed(sid: Sid) -> Allowed {
    Allowed { sid, mask: FILE_ALL_ACCESS }
}

/// Each access option gives the pipe Qt's descriptor: owner the user, group the primary
/// group, and a DACL of FILE_ALL_ACCESS entries for the user, the group and Everyone as
/// the bits ask, in Qt's order and nothing else. Read back with GetSecurityInfo from a
/// client's handle and from the server's, on the first pipe instance and on a later one
/// (created from interprocess's copy of the descriptor, whose owner bug is worked around).
#[test]
fn access_options_give_pipes_qts_security_descriptor() {
    let user = current_user().unwrap();
    let group = current_primary_group().unwrap();
    let everyone: Sid = "S-1-1-0".parse().unwrap();
    let cases = [
        ("user", SocketOptions::USER_ACCESS, vec![allowed(user)]),
        ("group", SocketOptions::GROUP_ACCESS, vec![allowed(group)]),
        ("other", SocketOptions::OTHER_ACCESS, vec![allowed(everyone)]),
        (
            "user-group",
            SocketOptions::USER_ACCESS | SocketOptions::GROUP_ACCESS,
            vec![allowed(user), allowed(group)],
        ),
        ("world", SocketOptions::WORLD_ACCESS, vec![allowed(user), allowed(group), allowed(everyone)]),
    ];
    for (tag, options, want) in cases {
        let path = name(tag);
        let listener = Listener::bind_with_sddl(&path, options, None, true).unwrap();
        for instance in ["first", "later"] {
            let client = connect(&path, SocketOptions::empty(), Some(Duration::from_secs(5))).unwrap();
            listener.wait(Some(Duration::from_secs(5))).unwrap();
            let server = listener.try_accept().unwrap().expect("accepted");
            for (end, stream) in [("client", &client), ("server", &server)] {
                let got = pipe_security(pipe(stream).as_handle()).unwrap();
                let at = format!("{tag}, {instance} instance, {end} end: {got:?}");
                assert_eq!(got.owner, Some(user), "owner, {at}");
                assert_eq!(got.group, Some(group), "group, {at}");
                assert_eq!(got.dacl.as_deref(), Some(&want[..]), "DACL, {at}");
                assert_eq!(got.other_entries, 0, "{at}");
            }
            (&client).write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            (&server).read_exact(&mut b).unwrap();
        }
    }
    assert!(pipe_security_descriptor(SocketOptions::empty(), true).unwrap().is_none());

    // The System scope's pipe: others may connect (as `connect` does) but not serve.
    let path = name("shared");
    let sddl = shared_pipe_sddl().unwrap();
    let listener = Listener::bind_with_sddl(&path, SocketOptions::WORLD_ACCESS, Some(&sddl), false).unwrap();
    let client = connect(&path, SocketOptions::empty(), Some(Duration::from_secs(5))).unwrap();
    listener.wait(Some(Duration::from_secs(5))).unwrap();
    let _server = listener.try_accept().unwrap().expect("accepted");
    let got = pipe_security(pipe(&client).as_handle()).unwrap();
    let others = Allowed { sid: everyone, mask: CLIENT_ACCESS };
    assert_eq!(got.owner, Some(user));
    assert_eq!(got.dacl.as_deref(), Some(&[allowed(user), others][..]), "{got:?}");
    assert_eq!(CLIENT_ACCESS & 0x4, 0, "FILE_CREATE_PIPE_INSTANCE granted");
    assert!(pipe_security_descriptor(SocketOptions::ABSTRACT_NAMESPACE, true).unwrap().is_none());
}

/// Without Qt's exact descriptors (the default): no access option gives a pipe only this
/// user, SYSTEM and Administrators may open (not Windows' default, which lets Everyone
/// and Anonymous read), and GROUP_ACCESS and OTHER_ACCESS grant the client's rights
/// only (not FILE_ALL_ACCESS, with instance creation, WRITE_DAC and WRITE_OWNER). Read
/// back from a client's handle, on the first and a later instance, through LocalServer.
#[test]
fn default_pipe_descriptors_keep_others_out() {
    let user = current_user().unwrap();
    let group = current_primary_group().unwrap();
    let everyone: Sid = "S-1-1-0".parse().unwrap();
    let system: Sid = "S-1-5-18".parse().unwrap();
    let admins: Sid = "S-1-5-32-544".parse().unwrap();
    let client = |sid| Allowed { sid, mask: CLIENT_ACCESS };
    let cases = [
        ("d-none", SocketOptions::empty(), vec![allowed(user), allowed(system), allowed(admins)]),
        ("d-user", SocketOptions::USER_ACCESS, vec![allowed(user)]),
        ("d-group", SocketOptions::GROUP_ACCESS, vec![client(group)]),
        ("d-world", SocketOptions::WORLD_ACCESS, vec![allowed(user), client(group), client(everyone)]),
    ];
    for (tag, options, want) in cases {
        let name = format!("solo-sec-{}-{tag}", std::process::id());
        let mut server = crate::LocalServer::new();
        assert!(!server.qt_windows_security());
        server.set_socket_options(options);
        server.listen(&name).unwrap();
        for instance in ["first", "later"] {
            let client = crate::LocalSocket::connect(&name).unwrap();
            assert!(server.wait_for_new_connection(Some(Duration::from_secs(5))).unwrap());
            let _server_end = server.next_pending_connection().expect("accepted");
            let got = pipe_security(pipe(client.as_stream()).as_handle()).unwrap();
            let at = format!("{tag}, {instance} instance: {got:?}");
            assert_eq!(got.owner, Some(user), "owner, {at}");
            assert_eq!(got.dacl.as_deref(), Some(&want[..]), "DACL, {at}");
        }
    }
}

/// Why `pipe_security_descriptor` sets no group: interprocess 2.4.7's copy of a
/// descriptor (made for every pipe instance after the first) writes the group SID over
/// the owner. When this test fails, interprocess copies correctly and the workaround can
/// go (or stay: it is harmless).
#[test]
fn interprocess_copy_writes_the_group_over_the_owner() {
    let user = current_user().unwrap();
    let group = current_primary_group().unwrap();
    assert_ne!(user, group);
    let with_group = from_sddl(&format!("O:{user}G:{group}D:(A;;FA;;;{user})")).unwrap();
    let copy = with_group.try_clone().unwrap();
    // SAFETY: `copy` is a valid descriptor, alive for the borrow.
    let b = unsafe { BorrowedSecurityDescriptor::from_ptr(copy.as_sd()) };
    // SAFETY: the owner SID lives inside `copy`.
    let owner = unsafe { sid_at(b.owner().unwrap().0.cast_mut()) }.unwrap();
    assert_eq!(owner, group, "interprocess now copies the owner right");
    // Without a group the copy keeps the owner.
    let ours =
        pipe_security_descriptor(SocketOptions::USER_ACCESS, false).unwrap().unwrap().try_clone().unwrap();
    // SAFETY: as above.
    let b = unsafe { BorrowedSecurityDescriptor::from_ptr(ours.as_sd()) };
    // SAFETY: as above.
    assert_eq!(unsafe { sid_at(b.owner().unwrap().0.cast_mut()) }.unwrap(), user);
}
