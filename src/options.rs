//! [`SocketOptions`]: who may connect to a server, as Qt's
//! `QLocalServer::SocketOptions`.

use bitflags::bitflags;

bitflags! {
    /// Access restrictions of a [`LocalServer`](crate::LocalServer)'s socket, bit for bit
    /// Qt's `QLocalServer::SocketOption` values, so a value read from a Qt config means the
    /// same here.
    ///
    /// The default is empty (Qt's `NoOptions`): the socket file gets the mode the process
    /// umask gives it.
    ///
    /// # Platform-specific behavior
    /// - **Unix**: with any access bit set, the socket is bound inside a fresh private (0700)
    ///   directory next to the target path, `chmod`ed to the union of 0700 (user), 0070
    ///   (group) and 0007 (other), and only then moved into place, so no client can reach it
    ///   with looser permissions in between. Unlike Qt, the move never replaces an existing
    ///   file (`renameat2(RENAME_NOREPLACE)`, or `link` + `unlink` where that is missing).
    ///   macOS and the BSDs honour a socket file's mode for `connect` like Linux does.
    /// - **Linux**: [`ABSTRACT_NAMESPACE`](Self::ABSTRACT_NAMESPACE) binds in the abstract
    ///   namespace (no file; the access bits then have no effect, as in Qt 6). On other
    ///   platforms listening with it fails with
    ///   [`UnsupportedSocketOperation`](crate::LocalSocketError::UnsupportedSocketOperation).
    /// - **Windows**: the pipe's owner is the token's user, and its DACL allows
    ///   `FILE_ALL_ACCESS` to the user ([`USER_ACCESS`](Self::USER_ACCESS)), and only the
    ///   rights a client needs (read, write data, attributes; not
    ///   `FILE_CREATE_PIPE_INSTANCE`, `WRITE_DAC` or `WRITE_OWNER`) to the token's primary
    ///   group ([`GROUP_ACCESS`](Self::GROUP_ACCESS)) and Everyone
    ///   ([`OTHER_ACCESS`](Self::OTHER_ACCESS)), in that order, and to nobody else. With no
    ///   access bit it allows the user, SYSTEM and Administrators only. Qt grants the group
    ///   and Everyone `FILE_ALL_ACCESS`, and with no access bit leaves Windows' default
    ///   descriptor, which lets Everyone and Anonymous read;
    ///   [`LocalServer::set_qt_windows_security`](crate::LocalServer::set_qt_windows_security)
    ///   gives Qt's descriptors exactly. As Qt's docs note, USER_ACCESS lets a non-elevated
    ///   process of the same user reach an elevated server. Pipes refuse remote clients
    ///   (`PIPE_REJECT_REMOTE_CLIENTS`) either way.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SocketOptions: u32 {
        /// Only the user who runs the server may connect (mode 0700). Qt's `UserAccessOption`.
        const USER_ACCESS = 0x01;
        /// The server's group may connect (0070). Qt's `GroupAccessOption`.
        const GROUP_ACCESS = 0x02;
        /// Anyone else may connect (0007). Qt's `OtherAccessOption`.
        const OTHER_ACCESS = 0x04;
        /// Everyone may connect (0777). Qt's `WorldAccessOption`.
        const WORLD_ACCESS = 0x07;
        /// Linux only: a name in the abstract socket namespace, with no file at all.
        /// Qt 6's `AbstractNamespaceOption`.
        const ABSTRACT_NAMESPACE = 0x08;
    }
}

impl SocketOptions {
    /// The permission bits the socket file gets, or `None` when no access bit is set (the
    /// umask decides then).
    ///
    /// ```
    /// use solo_instance::SocketOptions;
    /// assert_eq!(SocketOptions::USER_ACCESS.file_mode(), Some(0o700));
    /// assert_eq!((SocketOptions::USER_ACCESS | SocketOptions::GROUP_ACCESS).file_mode(), Some(0o770));
    /// assert_eq!(SocketOptions::WORLD_ACCESS.file_mode(), Some(0o777));
    /// assert_eq!(SocketOptions::empty().file_mode(), None);
    /// ```
    pub fn file_mode(self) -> Option<u32> {
        let mut mode = 0;
        if self.contains(Self::USER_ACCESS) {
            mode |= 0o700;
        }
        if self.contains(Self::GROUP_ACCESS) {
            mode |= 0o070;
        }
        if self.contains(Self::OTHER_ACCESS) {
            mode |= 0o007;
        }
        (mode != 0).then_some(mode)
    }
}
