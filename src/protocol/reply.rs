//! [`Reply`]: the primary's answer to a launch.

use serde_json::Value;

#[path = "reply_decode.rs"]
mod decode;

use super::{version, ProtocolError, BUSY, PROTOCOL_VERSION};

/// The primary's answer to a launch: success or an error, an exit code, and text for the
/// launch to print on its own stdout and stderr.
///
/// ```
/// use solo_instance::Reply;
/// let r = Reply::exit(2).with_stderr("no such file\n");
/// assert!(r.is_ok()); // answered; the exit code says how it went
/// assert_eq!((r.exit_code(), r.stderr()), (2, "no such file\n"));
/// let refused = Reply::error("not a text file");
/// assert!(!refused.is_ok());
/// assert_eq!(refused.error_message(), Some("not a text file"));
/// // In the launch: print what the primary said and exit with its code.
/// # #[allow(dead_code)]
/// # fn launch(reply: Reply) -> std::process::ExitCode {
/// reply.print_output();
/// reply.process_exit_code()
/// # }
/// ```
///
/// # A reply from another user
///
/// In [`Scope::System`](crate::Scope::System) the primary may be any local user's process.
/// A launch knows from the OS who serves it (the socket's peer uid, the pipe owner's SID),
/// and when that is another user, [`is_from_another_user`](Self::is_from_another_user) is
/// true and the texts the launch would print are defused on receipt: control characters
/// other than newline and tab (escape sequences, carriage returns, backspaces, C1 controls
/// such as CSI) and the bidirectional overrides and isolates (U+202A-U+202E,
/// U+2066-U+2069) are written visibly, as `\u{1b}`, so such a primary cannot move the
/// cursor, recolour or retitle the terminal, rewrite what was printed, or reorder text.
/// [`stdout`](Self::stdout), [`stderr`](Self::stderr), [`print_output`](Self::print_output),
/// [`encode`](Self::encode) and an [`Error::Rejected`](crate::Error::Rejected) message all
/// carry the defused text (and `encode` writes the DEL, C1 and bidi characters that JSON
/// leaves raw, in `data` too, as `\u` escapes: the same JSON). The exit code and
/// [`data`](Self::data) are kept as sent: see
/// the README's "Security" for what such a primary can and cannot do to a launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub(crate) ok: bool,
    pub(crate) exit_code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) data: Value,
    pub(crate) error: Option<String>,
    /// Set when the primary is going away: the launch should start over.
    pub(crate) retry: bool,
    /// Launch side: the primary that sent it runs as another user (never on the wire).
    pub(crate) from_another_user: bool,
}

impl Default for Reply {
    fn default() -> Self {
        Reply::ok()
    }
}

impl Reply {
    /// Success, exit code 0.
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            exit_code: 0,
            stdout: String::new(),
            stderr: String::new(),
            data: Value::Null,
            error: None,
            retry: false,
            from_another_user: false,
        }
    }

    /// Success with the given exit code for the launch.
    pub fn exit(code: i32) -> Reply {
        Reply { exit_code: code, ..Reply::ok() }
    }

    /// A refusal: the launch reports `message` and exits with code 1 (or the code set with
    /// [`with_exit_code`](Self::with_exit_code)). Its `stdout` and `stderr` texts, if any,
    /// reach the launch too, inside [`Error::Rejected`](crate::Error::Rejected).
    pub fn error(message: impl Into<String>) -> Reply {
        Reply { ok: false, exit_code: 1, error: Some(message.into()), ..Reply::ok() }
    }

    /// "Start over": the launch does not take this reply as an answer; it connects again
    /// (and may become the primary), until its timeout. On the wire
    /// `{"error":message,"exit_code":1,"ok":false,"retry":true,"v":1}`. A primary sends it
    /// while it goes away, and when it is [busy](Self::busy).
    pub fn retry(message: impl Into<String>) -> Reply {
        Reply { retry: true, ..Reply::error(message) }
    }

    /// The retry reply of a primary that holds too much already (bytes of requests,
    /// connections, D-Bus calls): [`retry`](Self::retry) with the message [`BUSY`].
    ///
    /// ```
    /// use solo_instance::{protocol, Reply};
    /// let line = Reply::busy().encode();
    /// assert_eq!(
    ///     line,
    ///     r#"{"error":"the primary instance is busy","exit_code":1,"ok":false,"retry":true,"v":1}"#
    /// );
    /// let busy = Reply::decode(line.as_bytes()).unwrap();
    /// assert!(busy.is_retry() && busy.error_message() == Some(protocol::BUSY));
    /// ```
    pub fn busy() -> Reply {
        Reply::retry(BUSY)
    }

    /// Whether this is a [retry](Self::retry) reply: the launch starts over.
    pub fn is_retry(&self) -> bool {
        self.retry
    }

    /// The same reply with another exit code for the launch (a refusal's is 1 unless set).
    #[must_use]
    pub fn with_exit_code(mut self, code: i32) -> Reply {
        self.exit_code = code;
        self
    }

    /// Text for the launch to print on its stdout (like a `--version` answer).
    #[must_use]
    pub fn with_stdout(mut self, text: impl Into<String>) -> Reply {
        self.stdout = text.into();
        self
    }

    /// Text for the launch to print on its stderr.
    #[must_use]
    pub fn with_stderr(mut self, text: impl Into<String>) -> Reply {
        self.stderr = text.into();
        self
    }

    /// Custom JSON data for the launch.
    #[must_use]
    pub fn with_data(mut self, data: Value) -> Reply {
        self.data = data;
        self
    }

    /// Whether the primary accepted the launch.
    pub fn is_ok(&self) -> bool {
        self.ok
    }

    /// The exit code the primary chose for the launch.
    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }

    /// Text for the launch's stdout.
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// Text for the launch's stderr.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// The primary's custom data.
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The exit status for the launch: the primary's exit code, or 1 for one outside
    /// 0-255 (a negative code is a failure, never success).
    pub fn process_exit_code(&self) -> std::process::ExitCode {
        std::process::ExitCode::from(u8::try_from(self.exit_code).unwrap_or(1))
    }

    /// Whether the primary that sent this reply runs as another user than this launch, as
    /// the OS reports it: possible only in [`Scope::System`](crate::Scope::System), where
    /// any local user may be the primary (on Windows, also a process of this user below
    /// the launch's integrity level: a sandbox; on Linux, also whenever this launch's own
    /// uid reads as the overflow uid, 65534, as in a user namespace that does not map it,
    /// where every unmapped user reads the same). Its texts were defused on receipt (see
    /// ["A reply from another user"](Self#a-reply-from-another-user)); its exit code is
    /// that user's word. Always `false` for a reply made or decoded by the app itself.
    pub fn is_from_another_user(&self) -> bool {
        self.from_another_user
    }

    /// This reply as received from a primary of another user: its texts defused, and
    /// marked so.
    pub(crate) fn received_from_another_user(self) -> Reply {
        Reply {
            stdout: defuse(&self.stdout).into_owned(),
            stderr: defuse(&self.stderr).into_owned(),
            error: self.error.as_deref().map(|e| defuse(e).into_owned()),
            from_another_user: true,
            ..self
        }
    }

    /// Prints the primary's `stdout` and `stderr` texts on this process's own streams,
    /// as a launch does before it exits with [`process_exit_code`](Self::process_exit_code).
    ///
    /// The texts are written as they are: a primary of the launch's own user may colour
    /// them or draw progress with escape sequences. Those of a primary of another user
    /// ([`is_from_another_user`](Self::is_from_another_user)) were defused on receipt:
    /// their control characters, but for newline and tab, show as `\u{1b}` and the like
    /// instead of acting on the terminal.
    pub fn print_output(&self) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(self.stdout.as_bytes()).and_then(|()| out.flush());
        let _ = std::io::stderr().lock().write_all(self.stderr.as_bytes());
    }

    /// What a forwarded launch does last: prints the primary's answer and gives the exit
    /// code to return from `main`. The `stdout` and `stderr` texts go to this process's own
    /// streams ([`print_output`](Self::print_output)), a refusal's
    /// [message](Self::error_message) to stderr on a line of its own, and the result is
    /// [`process_exit_code`](Self::process_exit_code).
    ///
    /// ```no_run
    /// use std::process::ExitCode;
    /// use solo_instance::{SingleInstance, Start};
    ///
    /// fn main() -> Result<ExitCode, solo_instance::Error> {
    ///     match SingleInstance::new("org.example.Editor")?.start()? {
    ///         Start::Primary(_primary) => { /* serve _primary.requests() */ Ok(ExitCode::SUCCESS) }
    ///         Start::Forwarded(reply) => Ok(reply.finish()),
    ///     }
    /// }
    /// ```
    ///
    /// A refusal ([`Reply::error`]) reaches [`start`](crate::SingleInstance::start) as
    /// [`Error::Rejected`](crate::Error::Rejected), not as a reply: `start()?` in a `main`
    /// that returns `Result` prints it and exits 1, a refusal's exit code.
    pub fn finish(&self) -> std::process::ExitCode {
        self.print_output();
        if let Some(message) = self.error_message() {
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "{message}");
        }
        self.process_exit_code()
    }

    /// The primary's error message, for a refusal.
    pub fn error_message(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The reply line, without its newline.
    pub fn encode(&self) -> String {
        // Written straight out, keys in the order a `serde_json::Value` object sorts them
        // (the bytes a `Value` tree writes: `tests::encode` checks), without building one.
        let mut out = super::JsonOut::with_capacity(96);
        if self.ok {
            out.raw("{\"data\":");
            out.value(&self.data);
            out.raw(",\"exit_code\":");
            out.int(self.exit_code.into());
            out.raw(",\"ok\":true,\"stderr\":");
            out.str(&self.stderr);
            out.raw(",\"stdout\":");
            out.str(&self.stdout);
        } else {
            out.raw("{\"error\":");
            out.str(self.error.as_deref().unwrap_or(""));
            out.raw(",\"exit_code\":");
            out.int(self.exit_code.into());
            out.raw(",\"ok\":false");
            if self.retry {
                out.raw(",\"retry\":true");
            }
            // A refusal's texts only when there are any: the line stays what peers that
            // know no texts in a refusal read.
            if !self.stderr.is_empty() {
                out.raw(",\"stderr\":");
                out.str(&self.stderr);
            }
            if !self.stdout.is_empty() {
                out.raw(",\"stdout\":");
                out.str(&self.stdout);
            }
        }
        out.raw(",\"v\":");
        out.int(PROTOCOL_VERSION as i64);
        out.raw("}");
        let line = out.finish();
        if !self.from_another_user {
            return line;
        }
        // Another user's: JSON leaves DEL, C1 controls and bidi overrides raw, in `data`
        // too. As `\u` escapes they are the same JSON, and nothing a terminal acts on.
        if !line.chars().any(acts_on_a_terminal) {
            return line;
        }
        let mut safe = String::with_capacity(line.len() + 16);
        for c in line.chars() {
            if acts_on_a_terminal(c) {
                use std::fmt::Write;
                let _ = write!(safe, "\\u{:04x}", c as u32);
            } else {
                safe.push(c);
            }
        }
        safe
    }

    /// Decodes a reply line (without its newline).
    ///
    /// ```
    /// use solo_instance::Reply;
    /// let line = Reply::exit(3).with_stdout("done\n").encode();
    /// let reply = Reply::decode(line.as_bytes()).unwrap();
    /// assert_eq!((reply.exit_code(), reply.stdout()), (3, "done\n"));
    /// assert!(Reply::decode(b"{\"v\":99,\"ok\":true}").is_err());
    /// ```
    pub fn decode(line: &[u8]) -> Result<Reply, ProtocolError> {
        Self::decode_text(line).map_err(ProtocolError::from)
    }

    fn decode_text(line: &[u8]) -> Result<Reply, String> {
        // One pass over the fields; the JSON tree only where a value may not convert (or
        // the line is not an object), for its exact message.
        if let Ok(found) = super::fields::fields(line, decode::FIELDS) {
            if found.plain || super::message::unrepresentable(line).is_none() {
                return decode::decode_fields(found.values);
            }
        }
        Self::decode_tree(line)
    }

    /// [`decode_text`](Self::decode_text) through the JSON tree.
    fn decode_tree(line: &[u8]) -> Result<Reply, String> {
        let value: Value = serde_json::from_slice(line).map_err(|e| format!("malformed JSON: {e}"))?;
        let Value::Object(o) = value else { return Err("a reply must be a JSON object".into()) };
        version(&o)?;
        let ok = o.get("ok").and_then(Value::as_bool).ok_or("missing \"ok\"")?;
        let text = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let exit_code = match o.get("exit_code") {
            None => i32::from(!ok),
            Some(c) => {
                c.as_i64().and_then(|c| i32::try_from(c).ok()).ok_or("\"exit_code\" must be an i32")?
            }
        };
        // Keep only what `encode` sends for this kind of reply, so a decoded reply
        // re-encodes to itself: data only with `"ok":true`, `retry` only with
        // `"ok":false` (an ok reply saying retry is an ok reply, not "start over").
        Ok(Reply {
            ok,
            exit_code,
            stdout: text("stdout"),
            stderr: text("stderr"),
            data: if ok { o.get("data").cloned().unwrap_or(Value::Null) } else { Value::Null },
            error: (!ok).then(|| text("error")),
            retry: !ok && o.get("retry").and_then(Value::as_bool).unwrap_or(false),
            from_another_user: false,
        })
    }
}

/// Whether a terminal could act on `c` rather than show it: a C0 control but newline and
/// tab, DEL, a C1 control (U+0080-U+009F: CSI, OSC... in terminals that read them as
/// such), or a bidirectional embedding, override or isolate (U+202A-U+202E,
/// U+2066-U+2069: text shown in another order than it is, "Trojan Source"). The marks
/// U+200E, U+200F and U+061C stay: right-to-left text needs them, and they reorder
/// nothing beyond themselves.
pub(crate) fn acts_on_a_terminal(c: char) -> bool {
    matches!(c, '\0'..='\x08' | '\x0b'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with what [`acts_on_a_terminal`] written visibly, as Rust writes an escape:
/// `\u{1b}[31m` for ESC `[31m`. A carriage return right before a newline stays (a
/// Windows line end: it cannot hide what the line showed). Visible rather than dropped,
/// so that what was sent is still there to read, and a user sees that something odd was.
/// One pass; at most 6 bytes out for each byte in (DEL, 1 byte, becomes `\u{7f}`).
pub(crate) fn defuse(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let needs =
        |(i, c): (usize, char)| acts_on_a_terminal(c) && !(c == '\r' && bytes.get(i + 1) == Some(&b'\n'));
    if !text.char_indices().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, c) in text.char_indices() {
        if needs((i, c)) {
            use std::fmt::Write;
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
