//! An object's fields by name, in one pass over its line and without a map: each wanted
//! field's raw value (the last one where a name repeats, as a map keeps it), the others
//! skipped as raw values too (checked as JSON, never converted).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The raw values of `names` in the JSON object `line` (`None`: absent). Errors as
/// `serde_json::from_slice` of a map would give them: `Data` for a JSON text that is not an
/// object, `Syntax` and `Eof` for one that is not JSON.
pub(crate) fn fields<'a, const N: usize>(
    line: &'a [u8],
    names: [&'static str; N],
) -> serde_json::Result<[Option<&'a RawValue>; N]> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let found = Fields(names).deserialize(&mut de)?;
    de.end()?;
    Ok(found)
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
    use super::fields;

    #[test]
    fn fields_are_found_as_a_map_would_keep_them() {
        let line = br#"{"a":1,"\u0062":[2],"c":{"x":"y"},"a":"last"}"#;
        let [a, b, z] = fields(line, ["a", "b", "z"]).unwrap();
        assert_eq!(a.map(|r| r.get()), Some(r#""last""#), "a repeated name: the last value");
        assert_eq!(b.map(|r| r.get()), Some("[2]"), "an escaped key is its text");
        assert!(z.is_none());
        let category = |line: &[u8]| fields(line, ["a"]).unwrap_err().classify();
        assert_eq!(category(b"[1]"), serde_json::error::Category::Data);
        assert_eq!(category(br#"{"a":1} x"#), serde_json::error::Category::Syntax);
        assert_eq!(category(br#"{"a":"#), serde_json::error::Category::Eof);
    }
}
