//! OS strings on the wire: a JSON string when Unicode, else a lossless object form.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::ProtocolError;

/// Encodes an OS string: a JSON string when it is Unicode, else the lossless form.
pub fn encode_os(s: &OsStr) -> Value {
    if let Some(t) = s.to_str() {
        return Value::String(t.to_owned());
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        // Base64, not an array of numbers (up to 4 bytes per byte): 360 KB of Latin-1 file
        // names must not become a request over the 1 MiB limit.
        json!({ "base64": base64_encode(s.as_bytes()) })
    }
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStrExt;
        json!({ "wide": s.encode_wide().collect::<Vec<u16>>() })
    }
}

/// Decodes what [`encode_os`] produced (on another platform, the foreign form decodes
/// lossily: bytes as UTF-8, UTF-16 units as UTF-16).
///
/// ```
/// use solo_instance::protocol::{decode_os, encode_os};
/// use std::ffi::OsStr;
/// let v = encode_os(OsStr::new("a.txt"));
/// assert_eq!(v, "a.txt");
/// assert_eq!(decode_os(&v).unwrap(), "a.txt");
/// assert!(decode_os(&serde_json::json!({"base64": "not base64!"})).is_err());
/// ```
pub fn decode_os(v: &Value) -> Result<OsString, ProtocolError> {
    decode_os_value(v).map_err(ProtocolError::from)
}

fn decode_os_value(v: &Value) -> Result<OsString, String> {
    match v {
        Value::String(s) => Ok(OsString::from(s)),
        Value::Object(o) if o.len() == 1 => {
            if let Some(Value::String(text)) = o.get("base64") {
                let bytes = base64_decode(text).ok_or("\"base64\" must be standard base64 with padding")?;
                return Ok(bytes_to_os(bytes));
            }
            if let Some(Value::Array(items)) = o.get("bytes") {
                let bytes = items
                    .iter()
                    .map(|b| b.as_u64().filter(|&b| b <= 0xFF).map(|b| b as u8))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or("\"bytes\" must hold integers 0-255")?;
                return Ok(bytes_to_os(bytes));
            }
            if let Some(Value::Array(items)) = o.get("wide") {
                let units = items
                    .iter()
                    .map(|u| u.as_u64().filter(|&u| u <= 0xFFFF).map(|u| u as u16))
                    .collect::<Option<Vec<u16>>>()
                    .ok_or("\"wide\" must hold integers 0-65535")?;
                #[cfg(windows)]
                {
                    use std::os::windows::ffi::OsStringExt;
                    return Ok(OsString::from_wide(&units));
                }
                #[cfg(not(windows))]
                return Ok(OsString::from(String::from_utf16_lossy(&units)));
            }
            Err("an object string must be {\"base64\":\"...\"}, {\"bytes\":[...]} or {\"wide\":[...]}".into())
        }
        _ => Err("expected a string".into()),
    }
}

/// Raw bytes as an OS string: exact on Unix, UTF-8 decoded (lossily) elsewhere.
fn bytes_to_os(bytes: Vec<u8>) -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        OsString::from_vec(bytes)
    }
    #[cfg(not(unix))]
    OsString::from(String::from_utf8_lossy(&bytes).into_owned())
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648, section 4) with `=` padding.
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes [`base64_encode`]'s form exactly; `None` for anything else (other alphabets,
/// missing padding, stray characters, non-zero padding bits).
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| BASE64.iter().position(|&b| b == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (i, quad) in text.chunks(4).enumerate() {
        let last = i + 1 == text.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Some(out)
}

/// One JSON value of a request, decoded from its text (a raw value: JSON already checked):
/// a string, or an object string (`{"base64":...}`, `{"bytes":[...]}`, `{"wide":[...]}`),
/// without a `Value` tree.
pub(super) fn decode_os_raw(text: &str) -> Result<OsString, String> {
    // A checked string without escapes is its text between the quotes.
    if let Some(plain) =
        text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).filter(|t| !t.contains('\\'))
    {
        return Ok(OsString::from(plain));
    }
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text).map(OsString::from).map_err(|e| e.to_string());
    }
    if !text.starts_with('{') {
        return Err("expected a string".into());
    }
    let o: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|_| "expected a string".to_owned())?;
    if o.len() == 1 {
        if let Some(v) = o.get("base64") {
            let text: String = serde_json::from_str(v.get()).map_err(|_| "\"base64\" must be a string")?;
            let bytes = base64_decode(&text).ok_or("\"base64\" must be standard base64 with padding")?;
            return Ok(bytes_to_os(bytes));
        }
        if let Some(v) = o.get("bytes") {
            let bytes: Vec<u8> =
                serde_json::from_str(v.get()).map_err(|_| "\"bytes\" must hold integers 0-255")?;
            return Ok(bytes_to_os(bytes));
        }
        if let Some(v) = o.get("wide") {
            let units: Vec<u16> =
                serde_json::from_str(v.get()).map_err(|_| "\"wide\" must hold integers 0-65535")?;
            #[cfg(windows)]
            {
                use std::os::windows::ffi::OsStringExt;
                return Ok(OsString::from_wide(&units));
            }
            #[cfg(not(windows))]
            return Ok(OsString::from(String::from_utf16_lossy(&units)));
        }
    }
    Err("an object string must be {\"base64\":\"...\"}, {\"bytes\":[...]} or {\"wide\":[...]}".into())
}
