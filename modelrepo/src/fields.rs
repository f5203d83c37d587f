//! Reading and writing fields of a parsed `inference.ModelConfig` (`DynamicMessage`) by name.
//!
//! Field names come from the embedded schema; a name the schema does not have reads as the
//! field's absence and is not written (the unit tests exercise every name used).

use std::borrow::Cow;

use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value};

fn field<'a>(m: &'a DynamicMessage, name: &str) -> Option<Cow<'a, Value>> {
    m.get_field_by_name(name)
}

/// Whether the field is present (message fields: set, even empty; lists: not empty).
pub(super) fn has(m: &DynamicMessage, name: &str) -> bool {
    m.descriptor().get_field_by_name(name).is_some() && m.has_field_by_name(name)
}

pub(super) fn text(m: &DynamicMessage, name: &str) -> String {
    field(m, name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Any integer or enum field as `i64` (`u64` values above `i64::MAX` saturate).
pub(super) fn int(m: &DynamicMessage, name: &str) -> i64 {
    field(m, name).map_or(0, |v| value_int(&v))
}

fn value_int(v: &Value) -> i64 {
    match v {
        Value::I32(n) | Value::EnumNumber(n) => i64::from(*n),
        Value::I64(n) => *n,
        Value::U32(n) => i64::from(*n),
        Value::U64(n) => i64::try_from(*n).unwrap_or(i64::MAX),
        _ => 0,
    }
}

pub(super) fn uint(m: &DynamicMessage, name: &str) -> u64 {
    match field(m, name).as_deref() {
        Some(Value::U64(n)) => *n,
        Some(other) => u64::try_from(value_int(other)).unwrap_or(0),
        None => 0,
    }
}

pub(super) fn flag(m: &DynamicMessage, name: &str) -> bool {
    field(m, name).and_then(|v| v.as_bool()).unwrap_or(false)
}

pub(super) fn float(m: &DynamicMessage, name: &str) -> f64 {
    match field(m, name).as_deref() {
        Some(Value::F32(v)) => f64::from(*v),
        Some(Value::F64(v)) => *v,
        _ => 0.0,
    }
}

/// The name of an enum field's value (`KIND_GPU`), or its number when the schema has none.
pub(super) fn enum_name(m: &DynamicMessage, name: &str) -> String {
    let number = int(m, name) as i32;
    enum_value_name(m, name, number)
}

/// The name of value `number` of enum field `name` of `m`'s message type.
pub(super) fn enum_value_name(m: &DynamicMessage, name: &str, number: i32) -> String {
    m.descriptor()
        .get_field_by_name(name)
        .and_then(|f| match f.kind() {
            Kind::Enum(e) => e.get_value(number).map(|v| v.name().to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| number.to_string())
}

/// Number of elements of a repeated field.
pub(super) fn len(m: &DynamicMessage, name: &str) -> usize {
    field(m, name)
        .and_then(|v| v.as_list().map(<[Value]>::len))
        .unwrap_or(0)
}

pub(super) fn ints(m: &DynamicMessage, name: &str) -> Vec<i64> {
    field(m, name)
        .and_then(|v| v.as_list().map(|l| l.iter().map(value_int).collect()))
        .unwrap_or_default()
}

pub(super) fn texts(m: &DynamicMessage, name: &str) -> Vec<String> {
    field(m, name)
        .and_then(|v| {
            v.as_list().map(|l| {
                l.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// A singular message field, only when present.
pub(super) fn child(m: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    if !has(m, name) {
        return None;
    }
    field(m, name).and_then(|v| v.as_message().cloned())
}

/// A repeated message field.
pub(super) fn children(m: &DynamicMessage, name: &str) -> Vec<DynamicMessage> {
    field(m, name)
        .and_then(|v| {
            v.as_list()
                .map(|l| l.iter().filter_map(|x| x.as_message().cloned()).collect())
        })
        .unwrap_or_default()
}

/// Entries of a map field, sorted by key (integer keys as their decimal text).
pub(super) fn map_entries(m: &DynamicMessage, name: &str) -> Vec<(MapKey, Value)> {
    let mut entries: Vec<(MapKey, Value)> = field(m, name)
        .and_then(|v| {
            v.as_map()
                .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        })
        .unwrap_or_default();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// A `map<string, string>` field, sorted by key.
pub(super) fn string_map(m: &DynamicMessage, name: &str) -> Vec<(String, String)> {
    map_entries(m, name)
        .into_iter()
        .filter_map(|(k, v)| match (k, v) {
            (MapKey::String(k), Value::String(v)) => Some((k, v)),
            _ => None,
        })
        .collect()
}

/// Sets a field; ignored when the schema has no such field or the value does not fit it.
pub(super) fn set(m: &mut DynamicMessage, name: &str, value: Value) {
    let ok = m.try_set_field_by_name(name, value).is_ok();
    debug_assert!(ok, "{}.{name} cannot be set", m.descriptor().full_name());
}

/// A mutable singular message field, created (empty) when absent.
pub(super) fn child_mut<'a>(
    m: &'a mut DynamicMessage,
    name: &str,
) -> Option<&'a mut DynamicMessage> {
    if !has(m, name) {
        let kind = m.descriptor().get_field_by_name(name)?.kind();
        let Kind::Message(desc) = kind else {
            return None;
        };
        set(m, name, Value::Message(DynamicMessage::new(desc)));
    }
    m.get_field_by_name_mut(name)?.as_message_mut()
}

/// A mutable repeated field (created empty when absent).
pub(super) fn list_mut<'a>(m: &'a mut DynamicMessage, name: &str) -> Option<&'a mut Vec<Value>> {
    m.get_field_by_name_mut(name)?.as_list_mut()
}

/// A new, empty message of the type of (repeated or singular) message field `name` of `m`.
pub(super) fn new_child(m: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    match m.descriptor().get_field_by_name(name)?.kind() {
        Kind::Message(desc) => Some(DynamicMessage::new(desc)),
        _ => None,
    }
}

/// The number of enum value `value_name` of enum field `name` of `m`.
pub(super) fn enum_number(m: &DynamicMessage, name: &str, value_name: &str) -> Option<i32> {
    match m.descriptor().get_field_by_name(name)?.kind() {
        Kind::Enum(e) => e.get_value_by_name(value_name).map(|v| v.number()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::model_config_descriptor;

    #[test]
    fn read_and_write_by_name() {
        let mut m = DynamicMessage::new(model_config_descriptor().unwrap());
        assert!(!has(&m, "dynamic_batching"));
        assert!(!has(&m, "no_such_field"));
        let db = child_mut(&mut m, "dynamic_batching").unwrap();
        set(db, "priority_levels", Value::U64(3));
        assert!(has(&m, "dynamic_batching"));
        let db = child(&m, "dynamic_batching").unwrap();
        assert_eq!(uint(&db, "priority_levels"), 3);
        assert_eq!(int(&db, "priority_levels"), 3);

        let mut input = new_child(&m, "input").unwrap();
        set(&mut input, "name", Value::String("x".into()));
        let fp32 = enum_number(&input, "data_type", "TYPE_FP32").unwrap();
        set(&mut input, "data_type", Value::EnumNumber(fp32));
        set(
            &mut input,
            "dims",
            Value::List(vec![Value::I64(3), Value::I64(-1)]),
        );
        list_mut(&mut m, "input")
            .unwrap()
            .push(Value::Message(input));
        let inputs = children(&m, "input");
        assert_eq!(inputs.len(), 1);
        assert_eq!(len(&m, "input"), 1);
        assert_eq!(text(&inputs[0], "name"), "x");
        assert_eq!(enum_name(&inputs[0], "data_type"), "TYPE_FP32");
        assert_eq!(ints(&inputs[0], "dims"), vec![3, -1]);
        assert_eq!(enum_value_name(&inputs[0], "data_type", 99), "99");
        assert!(!flag(&inputs[0], "optional"));
        assert_eq!(float(&m, "name"), 0.0);
        assert!(texts(&m, "name").is_empty());
        assert!(string_map(&m, "cc_model_filenames").is_empty());
    }
}
