//! A reply decoded in one pass over its fields (see `protocol::fields`), where every value
//! converts: what the JSON tree would give, without building it.

use serde_json::Value;

use super::Reply;

/// The fields a reply may have, in [`decode_fields`]' order.
pub(super) const FIELDS: [&str; 8] = ["v", "ok", "exit_code", "stdout", "stderr", "data", "error", "retry"];

/// `Reply::decode_text` from the raw values of [`FIELDS`]: each converted as the JSON
/// tree's accessors would (a value of another type counts as absent; `v` and `exit_code`
/// must be integers).
pub(super) fn decode_fields(fields: [Option<&str>; 8]) -> Result<Reply, String> {
    use serde::de::DeserializeOwned;
    let [v, ok, exit_code, stdout, stderr, data, error, retry] = fields;
    fn as_<T: DeserializeOwned>(raw: Option<&str>) -> Option<T> {
        raw.and_then(|r| serde_json::from_str(r).ok())
    }
    match v {
        // Version 2 (`frame`) has the same reply line.
        Some(raw) if matches!(as_::<u64>(Some(raw)), Some(1 | 2)) => {}
        Some(raw) => {
            let v: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
            return Err(format!("unsupported protocol version {v} (this side speaks 1 and 2)"));
        }
        None => return Err("missing protocol version \"v\"".into()),
    }
    let ok: bool = as_(ok).ok_or("missing \"ok\"")?;
    let exit_code = match exit_code {
        None => i32::from(!ok),
        Some(c) => {
            as_::<i64>(Some(c)).and_then(|c| i32::try_from(c).ok()).ok_or("\"exit_code\" must be an i32")?
        }
    };
    let text = |raw| as_::<String>(raw).unwrap_or_default();
    Ok(Reply {
        ok,
        exit_code,
        stdout: text(stdout),
        stderr: text(stderr),
        data: if ok { as_(data).unwrap_or(Value::Null) } else { Value::Null },
        error: (!ok).then(|| text(error)),
        retry: !ok && as_(retry).unwrap_or(false),
        from_another_user: false,
    })
}

#[cfg(test)]
mod tests {
    use super::super::super::fields::fields;
    use super::{decode_fields, Reply, FIELDS};

    /// Whatever the values' types, the one pass decodes as the JSON tree does.
    #[test]
    fn reply_fields_decode_as_the_tree_does() {
        for line in [
            r#"{"v":1,"ok":true}"#,
            r#"{"v":1,"ok":true,"exit_code":3,"stdout":"o","stderr":"e","data":{"a":[1,2.5,null]}}"#,
            r#"{"v":1,"ok":false,"error":"no","retry":true,"data":[1]}"#,
            r#"{"v":1,"ok":true,"ok":false,"error":"later wins"}"#,
            r#"{"v":1,"ok":"yes"}"#,
            r#"{"v":1,"ok":true,"exit_code":1.0}"#,
            r#"{"v":1,"ok":true,"exit_code":4294967296}"#,
            r#"{"v":1,"ok":true,"exit_code":-0}"#,
            r#"{"v":1,"ok":false,"stdout":5,"error":null,"retry":1}"#,
            r#"{"v":"1","ok":true}"#,
            r#"{"v":1.0,"ok":true}"#,
            r#"{"v":2,"ok":true}"#,
            r#"{"ok":true}"#,
            r#"{"\u0076":1,"ok":true,"x":{"deep":[[]]}}"#,
        ] {
            let one_pass = decode_fields(fields(line.as_bytes(), FIELDS).unwrap().values);
            assert_eq!(one_pass, Reply::decode_tree(line.as_bytes()), "{line}");
        }
    }
}
