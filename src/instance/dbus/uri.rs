//! [`Origin::file_paths`]: the local paths of an `Open` call's `file://` URIs.

use std::path::PathBuf;

use super::Origin;

impl Origin {
    /// The local file paths of an [`Open`](Origin::Open) call's URIs, one entry per URI in
    /// the order sent: `Ok(path)` for a local `file:` URI, percent-decoded
    /// (`file:///tmp/a%20b.txt` → `/tmp/a b.txt`), `Err(uri)` for any other, for the app
    /// to report or to open its own way. Empty for every other origin. Feature `dbus`.
    ///
    /// Use it instead of decoding `%xx` by hand. What a URI must be to give a path, as
    /// GLib's `g_filename_from_uri` decides (the desktop's file manager sends them):
    ///
    /// - the `file:` scheme (any case), with no host or `localhost` (`file:///p`,
    ///   `file://localhost/p`, `file:/p`); `file://otherhost/p` names another machine's
    ///   file and is refused, never mapped to a local path;
    /// - an absolute path (`file:a.txt` is refused): there is no working directory to
    ///   resolve it against;
    /// - no query or fragment: a raw `?` or `#` is refused (a file name holding them
    ///   arrives as `%3F`, `%23`);
    /// - well-formed escapes, none of them `%00` (no path holds a NUL) or `%2F` (an escaped
    ///   `/` would change where the path's components split), and no raw control
    ///   character;
    /// - the decoded bytes are the path byte for byte on Unix, non-UTF-8 included
    ///   (`%FF`); Windows paths must be UTF-8 (`file:///C:/x` → `C:/x`).
    ///
    /// `..` components are kept, not resolved: the caller (on the session bus: a process
    /// of this user) names the file, as a launch's arguments do.
    ///
    /// ```
    /// use solo_instance::Origin;
    /// let open = Origin::Open {
    ///     uris: vec!["file:///tmp/a%20b.txt".into(), "https://example.com/".into()],
    ///     platform_data: Default::default(),
    /// };
    /// let paths = open.file_paths();
    /// assert_eq!(paths[0].as_deref(), Ok(std::path::Path::new("/tmp/a b.txt")));
    /// assert_eq!(paths[1], Err("https://example.com/"));
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "dbus")))]
    pub fn file_paths(&self) -> Vec<Result<PathBuf, &str>> {
        match self {
            Origin::Open { uris, .. } => uris.iter().map(|u| file_uri_path(u).ok_or(u.as_str())).collect(),
            _ => Vec::new(),
        }
    }
}

/// The local path of a `file:` URI, or `None` (see [`Origin::file_paths`] for the rules).
fn file_uri_path(uri: &str) -> Option<PathBuf> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("file") {
        return None;
    }
    // Raw controls are not URI characters; `?` and `#` start a query and a fragment.
    if rest.bytes().any(|b| b.is_ascii_control() || b == b'?' || b == b'#') {
        return None;
    }
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => {
            let slash = authority_and_path.find('/')?;
            let host = &authority_and_path[..slash];
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                return None;
            }
            &authority_and_path[slash..]
        }
        None => rest,
    };
    if !path.starts_with('/') {
        return None;
    }
    // Every `%` must start a two-digit escape, and none may decode to NUL or `/`.
    let bytes = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) || matches!(hex, b"00" | b"2f" | b"2F") {
            return None;
        }
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode(bytes).collect();
    crate::sys::path_of_uri(decoded)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::file_uri_path;

    fn ok(uri: &str) -> Vec<u8> {
        file_uri_path(uri).unwrap_or_else(|| panic!("{uri} refused")).as_os_str().as_bytes().to_vec()
    }

    #[test]
    fn file_uri_local_forms_decode_byte_for_byte() {
        assert_eq!(ok("file:///tmp/a%20b.txt"), b"/tmp/a b.txt");
        assert_eq!(ok("file://localhost/tmp/a.txt"), b"/tmp/a.txt");
        assert_eq!(ok("FILE://LocalHost/tmp/a.txt"), b"/tmp/a.txt");
        assert_eq!(ok("file:/tmp/a.txt"), b"/tmp/a.txt");
        assert_eq!(ok("file:///tmp/%C3%A9t%c3%a9"), "/tmp/été".as_bytes());
        assert_eq!(ok("file:///tmp/%FF%fe"), b"/tmp/\xff\xfe", "non-UTF-8 bytes are kept");
        assert_eq!(ok("file:///tmp/%3F%23%25"), b"/tmp/?#%", "escaped ? # % are file name bytes");
        assert_eq!(ok("file:///tmp/%0A"), b"/tmp/\n", "an escaped newline is a file name byte");
        assert_eq!(ok("file:///tmp/../etc/x"), b"/tmp/../etc/x", "kept, not resolved");
        assert_eq!(file_uri_path("file:///").as_deref(), Some(Path::new("/")));
    }

    #[test]
    fn file_uri_hostile_or_foreign_forms_are_refused() {
        for uri in [
            "file:///tmp/a%00b",         // NUL
            "file:///tmp/a%2Fb",         // an escaped slash
            "file:///tmp/a%2fb",         // the same, lower case
            "file:///tmp/a%",            // a cut escape
            "file:///tmp/a%4",           // a cut escape
            "file:///tmp/a%zz",          // not hex
            "file://otherhost/tmp/a",    // another machine's file
            "file://localhost.evil/x",   // not localhost
            "file://localhost",          // no path
            "file:a.txt",                // relative
            "file://",                   // nothing
            "file:",                     // nothing
            "file:///tmp/a?x=1",         // a query
            "file:///tmp/a#frag",        // a fragment
            "file:///tmp/a\nb",          // a raw control
            "file:///tmp/a\u{7f}",       // DEL
            "https://example.com/a.txt", // another scheme
            "/tmp/a.txt",                // a path, not a URI
            "",
        ] {
            assert_eq!(file_uri_path(uri), None, "{uri:?} gave a path");
        }
    }
}
