//! The protocol's unit tests: the encoders against a `serde_json::Value` tree
//! (`encode`), what decoding takes and refuses (`decode`), replies (`reply`).

mod decode;
mod encode;
mod reply;

use std::ffi::OsString;

use serde_json::{json, Map, Number, Value};

/// A small deterministic generator for the property tests (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn string(&mut self) -> String {
        const ODD: [char; 12] = [
            '"',
            '\\',
            '/',
            '\u{7f}',
            '\u{2028}',
            '\u{2029}',
            '\u{fffd}',
            '\u{feff}',
            'é',
            '€',
            '\u{1f600}',
            '\u{10ffff}',
        ];
        let len = self.below(12);
        (0..len)
            .map(|_| match self.below(4) {
                0 => char::from_u32(self.below(0x20) as u32).unwrap(),
                1 => ODD[self.below(ODD.len() as u64) as usize],
                2 => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('x'),
                _ => char::from(b'a' + self.below(26) as u8),
            })
            .collect()
    }
    fn os(&mut self) -> OsString {
        #[cfg(unix)]
        if self.below(3) == 0 {
            use std::os::unix::ffi::OsStringExt;
            let len = self.below(10);
            return OsString::from_vec((0..len).map(|_| self.next() as u8).collect());
        }
        OsString::from(self.string())
    }
    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth == 0 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 0),
            2 => match self.below(4) {
                0 => json!(i64::MIN),
                1 => json!(u64::MAX),
                2 => json!(self.next() as i64),
                _ => json!(self.next()),
            },
            3 => Number::from_f64(f64::from_bits(self.next())).map_or(Value::Null, Value::Number),
            4 => json!(self.below(1000) as f64 / 8.0 - 60.0),
            5 => Value::String(self.string()),
            6 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
            _ => {
                let o: Map<String, Value> =
                    (0..self.below(4)).map(|_| (self.string(), self.value(depth - 1))).collect();
                Value::Object(o)
            }
        }
    }
}
