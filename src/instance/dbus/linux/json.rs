//! A call's platform data (`a{sv}`) as JSON.

use super::*;

pub(super) fn to_map(platform_data: &PlatformData) -> Map<String, Value> {
    platform_data.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
}

/// A variant as JSON (see [`Origin`]).
pub(super) fn to_json(v: &Variant<'_>) -> Value {
    match v {
        Variant::U8(n) => (*n).into(),
        Variant::Bool(b) => (*b).into(),
        Variant::I16(n) => (*n).into(),
        Variant::U16(n) => (*n).into(),
        Variant::I32(n) => (*n).into(),
        Variant::U32(n) => (*n).into(),
        Variant::I64(n) => (*n).into(),
        Variant::U64(n) => (*n).into(),
        Variant::F64(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Variant::Str(s) => s.as_str().into(),
        Variant::Signature(s) => s.to_string().into(),
        Variant::ObjectPath(p) => p.as_str().into(),
        Variant::Value(v) => to_json(v),
        Variant::Array(a) => a.iter().map(to_json).collect(),
        Variant::Dict(d) => Value::Object(
            d.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Variant::Structure(s) => s.fields().iter().map(to_json).collect(),
        _ => Value::Null,
    }
}
