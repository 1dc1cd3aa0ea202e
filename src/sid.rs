//! [`Sid`]: a Windows security identifier, by value, on every platform (so that
//! [`PeerCredentials`](crate::PeerCredentials) has one shape everywhere).

use std::fmt;
use std::str::FromStr;

/// A Windows security identifier (SID): who a process runs as, or who owns an object.
///
/// On Windows, [`PeerCredentials::sid`](crate::PeerCredentials::sid) carries one: the
/// client's user, as the primary sees it, or the pipe's owner, as a client sees it. It is a
/// plain value (`Copy`, at most [`MAX_LEN`](Self::MAX_LEN) bytes), compared byte for byte,
/// and shown in the usual string form (`S-1-5-21-…`).
///
/// ```
/// use solo_instance::Sid;
/// let system: Sid = "S-1-5-18".parse().unwrap();
/// assert_eq!(system.to_string(), "S-1-5-18");
/// assert_eq!(Sid::from_bytes(system.as_bytes()), Some(system));
/// assert!("S-1-5".parse::<Sid>().is_ok());
/// assert!("S-2-5-18".parse::<Sid>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid {
    len: u8,
    bytes: [u8; Sid::MAX_LEN],
}

/// The error of parsing a [`Sid`] from a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSidError(());

impl fmt::Display for ParseSidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a SID of the form S-1-<authority>(-<subauthority>){0,15}")
    }
}

impl std::error::Error for ParseSidError {}

impl Sid {
    /// The largest SID, in bytes (`SECURITY_MAX_SID_SIZE`: 15 sub-authorities).
    pub const MAX_LEN: usize = 68;

    /// A SID from its binary form (as `GetLengthSid` measures it): revision 1, at most 15
    /// sub-authorities, and exactly as long as they make it. `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Sid> {
        let (&revision, &count) = (bytes.first()?, bytes.get(1)?);
        if revision != 1 || count > 15 || bytes.len() != 8 + 4 * count as usize {
            return None;
        }
        let mut sid = Sid { len: bytes.len() as u8, bytes: [0; Self::MAX_LEN] };
        sid.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(sid)
    }

    /// The binary form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    fn authority(&self) -> u64 {
        self.bytes[2..8].iter().fold(0, |a, &b| (a << 8) | u64::from(b))
    }

    fn sub_authorities(&self) -> impl Iterator<Item = u32> + '_ {
        self.as_bytes()[8..].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
}

impl fmt::Display for Sid {
    /// The string form, as `ConvertSidToStringSidW` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authority = self.authority();
        if authority >> 32 == 0 {
            write!(f, "S-1-{authority}")?;
        } else {
            write!(f, "S-1-0x{authority:012X}")?;
        }
        for s in self.sub_authorities() {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({self})")
    }
}

impl FromStr for Sid {
    type Err = ParseSidError;

    /// Parses the string form (`S-1-5-18`; an authority of 2^32 or more in hex, `0x…`).
    fn from_str(s: &str) -> Result<Sid, ParseSidError> {
        let mut parts = s.split('-');
        if parts.next() != Some("S") || parts.next() != Some("1") {
            return Err(ParseSidError(()));
        }
        let authority = match parts.next() {
            Some(a) if a.starts_with("0x") || a.starts_with("0X") => u64::from_str_radix(&a[2..], 16).ok(),
            Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => a.parse().ok(),
            _ => None,
        }
        .filter(|a| a >> 48 == 0)
        .ok_or(ParseSidError(()))?;
        let mut bytes = vec![1u8, 0];
        bytes.extend_from_slice(&authority.to_be_bytes()[2..]);
        for p in parts {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseSidError(()));
            }
            let v: u32 = p.parse().map_err(|_| ParseSidError(()))?;
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let count = (bytes.len() - 8) / 4;
        if count > 15 {
            return Err(ParseSidError(()));
        }
        bytes[1] = count as u8;
        Sid::from_bytes(&bytes).ok_or(ParseSidError(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_string_forms_round_trip() {
        for s in
            ["S-1-5-18", "S-1-1-0", "S-1-5-21-1004336348-1177238915-682003330-512", "S-1-0x123456789ABC-7"]
        {
            let sid: Sid = s.parse().unwrap();
            assert_eq!(sid.to_string(), s);
            assert_eq!(Sid::from_bytes(sid.as_bytes()), Some(sid));
        }
        // Everyone, S-1-1-0, byte for byte.
        assert_eq!("S-1-1-0".parse::<Sid>().unwrap().as_bytes(), [1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        let sixteen = format!("S-1-5{}", "-1".repeat(16));
        for bad in ["", "S-1", "S-1-", "s-1-5", "S-1-5-", "S-1-5--1", "S-1-5-x", "S-1-5-4294967296", &sixteen]
        {
            assert!(bad.parse::<Sid>().is_err(), "{bad}");
        }
        assert_eq!(Sid::from_bytes(&[1, 1, 0, 0, 0, 0, 0, 5]), None); // too short for its count
        assert_eq!(Sid::from_bytes(&[2, 0, 0, 0, 0, 0, 0, 5]), None); // revision 2
    }
}
