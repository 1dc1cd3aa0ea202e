//! An object's fields by name, in one pass over its line and without a map: each wanted
//! field's raw value (the last one where a name repeats, as a map keeps it), the others
//! skipped as raw values too (checked as JSON, never converted).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// What [`fields`] found: each wanted field's raw JSON text (`None`: absent).
pub(crate) struct Found<'a, const N: usize> {
    pub(crate) values: [Option<&'a str>; N],
    /// The line was read by the plain scan ([`scan`]): nothing in it is what a JSON tree
    /// cannot hold (`message::unrepresentable` would find nothing).
    pub(crate) plain: bool,
}

/// The raw values of `names` in the JSON object `line`. Errors as `serde_json::from_slice`
/// of a map would give them: `Data` for a JSON text that is not an object, `Syntax` and
/// `Eof` for one that is not JSON. A line in the plain shape (see [`scan`]) is read by a
/// scan of its bytes; any other by serde_json.
pub(crate) fn fields<'a, const N: usize>(
    line: &'a [u8],
    names: [&'static str; N],
) -> serde_json::Result<Found<'a, N>> {
    if let Some(values) = scan(line, names) {
        return Ok(Found { values, plain: true });
    }
    Ok(Found { values: by_serde(line, names)?, plain: false })
}

/// [`fields`] through serde_json, whatever the line's shape.
fn by_serde<'a, const N: usize>(
    line: &'a [u8],
    names: [&'static str; N],
) -> serde_json::Result<[Option<&'a str>; N]> {
    // Text checked as UTF-8 once, not value by value; bytes that are not UTF-8 are read as
    // bytes, for the error to say where.
    let raw = match std::str::from_utf8(line) {
        Ok(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            let found = Fields(names).deserialize(&mut de)?;
            de.end()?;
            found
        }
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(line);
            let found = Fields(names).deserialize(&mut de)?;
            de.end()?;
            found
        }
    };
    Ok(raw.map(|r| r.map(RawValue::get)))
}

/// The plain shape's reading, or `None` for a line of another shape (which is then left
/// to serde_json: the scan never decides what is an error). Plain: valid UTF-8, one
/// object whose keys have no escapes, strings whose escapes are the one-character ones
/// (no `\u`: no lone surrogate), numbers without an exponent and at most 300 characters
/// (each fits an f64), nesting under 100 levels. Every such line is JSON, and read so, a
/// value's text is what serde_json's raw value would be: without the spaces around it.
fn scan<'a, const N: usize>(line: &'a [u8], names: [&'static str; N]) -> Option<[Option<&'a str>; N]> {
    // ASCII (the usual line) is UTF-8 without decoding it.
    let text = if line.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(line) }
    } else {
        std::str::from_utf8(line).ok()?
    };
    let mut s = Scan { b: line, i: 0, depth: 1 };
    let mut found = [None; N];
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        s.i += 1;
    } else {
        loop {
            s.ws();
            let key_start = s.i + 1;
            s.string()?;
            let key = &line[key_start..s.i - 1];
            if key.contains(&b'\\') {
                return None;
            }
            s.ws();
            s.eat(b':')?;
            s.ws();
            let start = s.i;
            s.value()?;
            if let Some(k) = names.iter().position(|n| n.as_bytes() == key) {
                found[k] = Some(&text[start..s.i]);
            }
            s.ws();
            match s.peek()? {
                b',' => s.i += 1,
                b'}' => {
                    s.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == line.len()).then_some(found)
}

/// A position in a line being scanned, and its nesting.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// JSON's white space.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => match self.b.get(self.i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                    _ => return None,
                },
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        let start = self.i;
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || self.i - start > 300 {
            return None;
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            open @ (b'[' | b'{') => {
                let close = if open == b'[' { b']' } else { b'}' };
                self.depth += 1;
                if self.depth >= 100 {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.eat(close).is_none() {
                    loop {
                        self.ws();
                        if open == b'{' {
                            self.string()?;
                            self.ws();
                            self.eat(b':')?;
                            self.ws();
                        }
                        self.value()?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            c if c == close => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.depth -= 1;
                Some(())
            }
            _ => None,
        }
    }
}

struct Fields<const N: usize>([&'static str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for Fields<N> {
    type Value = [Option<&'de RawValue>; N];

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Fields<N> {
    type Value = [Option<&'de RawValue>; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = [None; N];
        while let Some(Key(key)) = map.next_key()? {
            let raw: &'de RawValue = map.next_value()?;
            if let Some(i) = self.0.iter().position(|&n| n == key) {
                found[i] = Some(raw);
            }
        }
        Ok(found)
    }
}

/// A key, borrowed from the line unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::{by_serde, fields, scan};

    #[test]
    fn fields_are_found_as_a_map_would_keep_them() {
        let line = br#"{"a":1,"\u0062":[2],"c":{"x":"y"},"a":"last"}"#;
        let [a, b, z] = fields(line, ["a", "b", "z"]).unwrap().values;
        assert_eq!(a, Some(r#""last""#), "a repeated name: the last value");
        assert_eq!(b, Some("[2]"), "an escaped key is its text");
        assert!(z.is_none());
        let category = |line: &[u8]| fields(line, ["a"]).err().unwrap().classify();
        assert_eq!(category(b"[1]"), serde_json::error::Category::Data);
        assert_eq!(category(br#"{"a":1} x"#), serde_json::error::Category::Syntax);
        assert_eq!(category(br#"{"a":"#), serde_json::error::Category::Eof);
    }

    /// Where the plain scan reads a line, it reads what serde_json reads; where it does
    /// not, the line is not plain.
    #[test]
    fn fields_the_plain_scan_reads_as_serde_json_does() {
        let names = ["a", "b", "c"];
        let plain = [
            r#"{}"#,
            r#" { "a" : 1 , "b":[ ] ,"c":{ } } "#,
            r#"{"a":-0.5,"b":[true,false,null,"x\n\"y\/",{"k":[[1]]}],"c":"é€𝄞"}"#,
            r#"{"z":{"a":2},"a":"outer","a":"again"}"#,
            "{\"a\":\t1\r}",
        ];
        for line in plain {
            let scanned = scan(line.as_bytes(), names).unwrap_or_else(|| panic!("not plain: {line}"));
            assert_eq!(scanned, by_serde(line.as_bytes(), names).unwrap(), "{line}");
        }
        let not_plain = [
            r#"{"a":"\u00e9"}"#,
            r#"{"\u0061":1}"#,
            r#"{"a":1e5}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{"a":tru}"#,
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            r#"[1]"#,
            "{\"a\":\"\u{1}\"}",
        ];
        for line in not_plain {
            assert!(scan(line.as_bytes(), names).is_none(), "read as plain: {line}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(120), "]".repeat(120));
        assert!(scan(deep.as_bytes(), names).is_none(), "too deep for the plain scan");
    }
}
