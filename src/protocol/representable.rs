//! What a `serde_json::Value` cannot hold though the raw parse lets it through (a number
//! beyond `f64`, a lone surrogate escape, nesting 128 deep): found in one linear pass, so a
//! request's `data` and unknown fields are refused rather than becoming `null`.

/// The decimal digits of 2^1024 - 2^970, halfway between `f64::MAX` and 2^1024: the
/// smallest number that rounds to infinity (the tie goes to the even 2^1024).
const F64_OVERFLOW: &[u8; 309] =
    b"179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017\
    977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273\
    854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704\
    342711559699508093042880177904174497792";

/// The same digits, for tests.
#[cfg(test)]
pub(super) const F64_OVERFLOW_TEXT: &str = match std::str::from_utf8(F64_OVERFLOW) {
    Ok(s) => s,
    Err(_) => panic!(),
};

pub(super) const RECURSION: &str = "recursion limit exceeded";

/// What a `serde_json::Value` parse of valid JSON text would refuse, which the raw values
/// that hold `data` (and unknown fields) let through: a `Value` could not hold it, so the
/// app would get `null` instead. Returns the 0-based offset and what it is. One linear
/// pass, no allocation.
///
/// - nesting 128 deep, serde_json's recursion limit;
/// - a number beyond `f64` (`1e400`, a 400-digit integer): serde_json rounds correctly
///   (feature `float_roundtrip`), so it fails exactly from [`F64_OVERFLOW`] on;
/// - a lone surrogate escape (`"\udfff"`, or `"\ud800"` not followed by a trailing one),
///   in a string or an object key: not a Unicode scalar value.
///
/// Raw control characters and invalid UTF-8 are refused by the raw parse already.
pub(crate) fn unrepresentable(json: &[u8]) -> Option<(usize, &'static str)> {
    let (mut i, mut depth) = (0usize, 0usize);
    while i < json.len() {
        match json[i] {
            b'"' => match lone_surrogate(json, i + 1) {
                Ok(end) => i = end,
                Err(found) => return Some(found),
            },
            b'[' | b'{' => {
                depth += 1;
                if depth >= 128 {
                    return Some((i, RECURSION));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let (end, finite) = number(json, i);
                if !finite {
                    return Some((i, "number out of range (JSON numbers must fit an f64)"));
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    None
}

/// The string starting after its opening quote at `i`: `Ok(end)` (after its closing
/// quote), or the offset of a lone surrogate escape in it.
fn lone_surrogate(json: &[u8], mut i: usize) -> Result<usize, (usize, &'static str)> {
    const LONE: &str = "lone surrogate in a \\u escape (a string must be Unicode)";
    let hex = |at: usize| -> Option<u16> {
        let digits = std::str::from_utf8(json.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    while i < json.len() {
        match json[i] {
            b'"' => return Ok(i + 1),
            b'\\' if json.get(i + 1) == Some(&b'u') => {
                let unit = hex(i + 2).unwrap_or(0);
                match unit {
                    0xD800..=0xDBFF => {
                        let trailing = (json.get(i + 6..i + 8) == Some(b"\\u"))
                            .then(|| hex(i + 8))
                            .flatten()
                            .is_some_and(|u| (0xDC00..=0xDFFF).contains(&u));
                        if !trailing {
                            return Err((i, LONE));
                        }
                        i += 12;
                    }
                    0xDC00..=0xDFFF => return Err((i, LONE)),
                    _ => i += 6,
                }
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(i)
}

/// The number token at `i` (valid JSON): where it ends, and whether it fits an `f64`
/// (finite once parsed).
fn number(json: &[u8], start: usize) -> (usize, bool) {
    let digits_from = |mut i: usize| {
        while json.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let int = start + usize::from(json[start] == b'-');
    let int_end = digits_from(int);
    let (frac, frac_end) = match json.get(int_end) {
        Some(b'.') => (int_end + 1, digits_from(int_end + 1)),
        _ => (int_end, int_end),
    };
    let mut end = frac_end;
    // The explicit exponent, saturated far beyond where any f64 can be reached.
    let mut exp: i64 = 0;
    let mut exp_overflows_i32 = false;
    if matches!(json.get(end), Some(b'e' | b'E')) {
        end += 1;
        let sign = match json.get(end) {
            Some(b'-') => {
                end += 1;
                -1
            }
            Some(b'+') => {
                end += 1;
                1
            }
            _ => 1,
        };
        let exp_start = end;
        end = digits_from(end);
        for &d in &json[exp_start..end] {
            exp = (exp * 10 + i64::from(d - b'0')).min(1 << 40);
        }
        // serde_json gives up on an exponent past i32: out of range when positive.
        exp_overflows_i32 = exp > i64::from(i32::MAX);
        exp *= sign;
    }
    // The significant digits: integer and fraction digits, leading zeros skipped.
    let all = json[int..int_end].iter().chain(&json[frac..frac_end]);
    let Some(first) = all.clone().position(|&d| d != b'0') else {
        return (end, true); // zero, whatever its exponent
    };
    if exp_overflows_i32 {
        return (end, exp < 0);
    }
    // The value is 0.d1d2... x 10^e, d1 the first non-zero digit.
    let e = (int_end - int) as i64 - first as i64 + exp;
    let finite = match e.cmp(&(F64_OVERFLOW.len() as i64)) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        // As many integer digits as the threshold: compare digit by digit.
        std::cmp::Ordering::Equal => {
            let mut significant = all.skip(first).copied();
            let mut below = None;
            for &t in F64_OVERFLOW {
                let d = significant.next().unwrap_or(b'0');
                if d != t {
                    below = Some(d < t);
                    break;
                }
            }
            // All of the threshold's digits: at or above it.
            below.unwrap_or(false)
        }
    };
    (end, finite)
}
