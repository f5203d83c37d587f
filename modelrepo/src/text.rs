//! Parsing `config.pbtxt` (protobuf text format) into a `DynamicMessage`.
//!
//! Triton's files write lists of messages as `input [ { ... } ]`, without a colon after the field
//! name. The text-format specification allows that, but prost-reflect only accepts `input: [`.
//! [`normalise_lists`] inserts the missing colons (outside strings and comments) and remembers
//! where, so that error positions can be mapped back to the file as written.

use std::path::Path;

use std::fmt::Write as _;

use miette::Diagnostic;
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, ReflectMessage, Value};

use super::RepoError;

/// Source text with the colons that were inserted before list brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalised {
    /// The text prost-reflect parses.
    pub text: String,
    /// Byte offsets, in the original text, where a `:` was inserted (ascending).
    pub inserted_at: Vec<usize>,
}

impl Normalised {
    /// Maps a byte offset in [`Normalised::text`] back to the original text.
    pub fn original_offset(&self, offset: usize) -> usize {
        let mut shift = 0;
        for (i, &at) in self.inserted_at.iter().enumerate() {
            // The i-th inserted colon sits at `at + i` in the normalised text.
            if offset > at + i {
                shift += 1;
            } else {
                break;
            }
        }
        offset - shift
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Message,
    List,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    /// Start of input or of a message body, or a separator.
    Start,
    /// `:`
    Colon,
    /// `-` (a negative number follows)
    Minus,
    /// An identifier in field-name position.
    FieldName,
    /// Any other token (values, closing brackets, ...).
    Other,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// Inserts `:` between a field name and a following `[`, so that `input [ ... ]` becomes
/// `input: [ ... ]`. Strings (`"..."`, `'...'`) and `#` comments are left untouched.
pub(crate) fn normalise_lists(src: &str) -> Normalised {
    let bytes = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 16);
    let mut inserted_at = Vec::new();
    let mut stack = vec![Context::Message];
    let mut prev = Prev::Start;
    let mut last_word_end = 0;
    let mut copied = 0; // bytes of `src` already copied to `out`
    let mut i = 0;

    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                prev = Prev::Other;
            }
            b'[' => {
                if prev == Prev::FieldName {
                    out.push_str(&src[copied..last_word_end]);
                    out.push(':');
                    copied = last_word_end;
                    inserted_at.push(last_word_end);
                }
                stack.push(Context::List);
                prev = Prev::Start;
                i += 1;
            }
            b'{' | b'<' => {
                stack.push(Context::Message);
                prev = Prev::Start;
                i += 1;
            }
            b'}' | b'>' | b']' => {
                if stack.len() > 1 {
                    stack.pop();
                }
                prev = Prev::Other;
                i += 1;
            }
            b':' => {
                prev = Prev::Colon;
                i += 1;
            }
            b'-' => {
                prev = Prev::Minus;
                i += 1;
            }
            b',' | b';' => {
                prev = Prev::Start;
                i += 1;
            }
            _ if is_word_byte(b) => {
                let numeric = b.is_ascii_digit() || b == b'.';
                let start = i;
                while i < bytes.len() {
                    let c = bytes[i];
                    let exponent_sign = numeric
                        && (c == b'+' || c == b'-')
                        && i > start
                        && matches!(bytes[i - 1], b'e' | b'E');
                    if is_word_byte(c) || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                last_word_end = i;
                let in_message = stack.last() == Some(&Context::Message);
                prev = if in_message && !numeric && !matches!(prev, Prev::Colon | Prev::Minus) {
                    Prev::FieldName
                } else {
                    Prev::Other
                };
            }
            _ => {
                // Any other character (including non-ASCII bytes): let the parser judge it.
                prev = Prev::Other;
                i += 1;
            }
        }
    }
    out.push_str(&src[copied..]);
    Normalised {
        text: out,
        inserted_at,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Rewrites prost-reflect's messages into the wording Vigil uses.
fn reword(message: &str) -> String {
    // "field 'foo' not found for message 'inference.ModelInput'"
    if let Some(rest) = message.strip_prefix("field '")
        && let Some((field, rest)) = rest.split_once("' not found for message '")
        && let Some(owner) = rest.strip_suffix('\'')
    {
        return format!("unknown field '{field}' in {owner}");
    }
    // "value 'TYPE_FOO' was not found for enum 'inference.DataType'"
    if let Some(rest) = message.strip_prefix("value '")
        && let Some((value, rest)) = rest.split_once("' was not found for enum '")
        && let Some(owner) = rest.strip_suffix('\'')
    {
        return format!("unknown value '{value}' for enum {owner}");
    }
    message.to_owned()
}

/// Parses protobuf text `src` as a message of type `desc`. `path` is only used in errors,
/// which read `<path>:<line>:<column>: <message>`.
pub(crate) fn parse_text(
    desc: MessageDescriptor,
    src: &str,
    path: &Path,
) -> Result<DynamicMessage, RepoError> {
    let normalised = normalise_lists(src);
    DynamicMessage::parse_text_format(desc, &normalised.text).map_err(|err| {
        let message = reword(&err.to_string());
        let offset = err
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|label| normalised.original_offset(label.offset()))
            .or_else(|| message.contains("end of input").then_some(src.len()));
        match offset {
            Some(offset) => {
                let (line, column) = line_column(src, offset);
                RepoError::ConfigSyntax {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message,
                }
            }
            None => RepoError::ConfigInvalid {
                path: path.to_path_buf(),
                message,
            },
        }
    })
}

/// Removes fields that hold their default value without presence (e.g. an explicit
/// `max_batch_size: 0`), recursively, so that equal configurations compare equal.
pub(crate) fn strip_defaults(msg: &mut DynamicMessage) {
    let desc = msg.descriptor();
    for field in desc.fields() {
        if !msg.has_field(&field) {
            msg.clear_field(&field);
        }
    }
    for (_, value) in msg.fields_mut() {
        match value {
            Value::Message(m) => strip_defaults(m),
            Value::List(list) => {
                for v in list {
                    if let Value::Message(m) = v {
                        strip_defaults(m);
                    }
                }
            }
            Value::Map(map) => {
                for v in map.values_mut() {
                    if let Value::Message(m) = v {
                        strip_defaults(m);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Formats a message as `config.pbtxt` text in Triton's style: fields in field-number order,
/// fields holding their default value left out, lists of messages as `name [ {...}, ... ]`,
/// scalar lists as `dims: [ 1, 2 ]`, map entries sorted by key. The output parses back to the
/// same message with [`parse_text`].
pub(crate) fn format_message(msg: &DynamicMessage) -> String {
    let mut out = String::new();
    write_fields(&mut out, msg, 0);
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_fields(out: &mut String, msg: &DynamicMessage, level: usize) {
    for field in msg.descriptor().fields() {
        if !msg.has_field(&field) {
            continue;
        }
        let value = msg.get_field(&field);
        let kind = field.kind();
        let name = field.name();
        match value.as_ref() {
            Value::List(items) => match kind {
                Kind::Message(_) => {
                    indent(out, level);
                    let _ = writeln!(out, "{name} [");
                    for (i, item) in items.iter().enumerate() {
                        indent(out, level + 1);
                        out.push_str("{\n");
                        if let Value::Message(m) = item {
                            write_fields(out, m, level + 2);
                        }
                        indent(out, level + 1);
                        out.push('}');
                        out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                    }
                    indent(out, level);
                    out.push_str("]\n");
                }
                _ => {
                    indent(out, level);
                    let _ = write!(out, "{name}: [ ");
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        write_scalar(out, item, &kind);
                    }
                    out.push_str(" ]\n");
                }
            },
            Value::Map(map) => {
                let (key_kind, value_kind) = match &kind {
                    Kind::Message(entry) => (
                        entry.map_entry_key_field().kind(),
                        entry.map_entry_value_field().kind(),
                    ),
                    _ => continue,
                };
                let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (key, value) in entries {
                    indent(out, level);
                    let _ = writeln!(out, "{name} {{");
                    indent(out, level + 1);
                    out.push_str("key: ");
                    write_scalar(out, &Value::from(key.clone()), &key_kind);
                    out.push('\n');
                    write_single(out, "value", value, &value_kind, level + 1);
                    indent(out, level);
                    out.push_str("}\n");
                }
            }
            single => write_single(out, name, single, &kind, level),
        }
    }
}

fn write_single(out: &mut String, name: &str, value: &Value, kind: &Kind, level: usize) {
    indent(out, level);
    if let Value::Message(m) = value {
        let _ = writeln!(out, "{name} {{");
        write_fields(out, m, level + 1);
        indent(out, level);
        out.push_str("}\n");
    } else {
        let _ = write!(out, "{name}: ");
        write_scalar(out, value, kind);
        out.push('\n');
    }
}

fn write_float(out: &mut String, v: f64, text: String) {
    if v.is_nan() {
        out.push_str("nan");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
    } else {
        out.push_str(&text);
    }
}

fn write_bytes(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
}

fn write_scalar(out: &mut String, value: &Value, kind: &Kind) {
    match value {
        Value::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
        Value::I32(v) => {
            let _ = write!(out, "{v}");
        }
        Value::I64(v) => {
            let _ = write!(out, "{v}");
        }
        Value::U32(v) => {
            let _ = write!(out, "{v}");
        }
        Value::U64(v) => {
            let _ = write!(out, "{v}");
        }
        Value::F32(v) => write_float(out, f64::from(*v), v.to_string()),
        Value::F64(v) => write_float(out, *v, v.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Bytes(b) => write_bytes(out, b),
        Value::EnumNumber(n) => {
            let name = match kind {
                Kind::Enum(e) => e.get_value(*n).map(|v| v.name().to_owned()),
                _ => None,
            };
            match name {
                Some(name) => out.push_str(&name),
                None => {
                    let _ = write!(out, "{n}");
                }
            }
        }
        Value::Message(m) => {
            out.push_str("{ ");
            out.push_str(&format_message(m).replace('\n', " "));
            out.push('}');
        }
        Value::List(_) | Value::Map(_) => {}
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::model_config_descriptor;

    #[test]
    fn inserts_colons_only_after_field_names() {
        let src = "input [ { dims: [1, 2] } ]\noutput[{ name: \"a [b\" }] # x [y\nparameters: [ ]";
        let n = normalise_lists(src);
        assert_eq!(
            n.text,
            "input: [ { dims: [1, 2] } ]\noutput:[{ name: \"a [b\" }] # x [y\nparameters: [ ]"
        );
        assert_eq!(n.inserted_at, vec![5, 33]);
    }

    #[test]
    fn leaves_values_and_numbers_alone() {
        // An enum value followed by `[` (an extension name) is not a field name.
        let src = "kind: KIND_GPU [ext.x]: 1\nf: -inf [ext.y]: 2\nlevel: 1e-5 [z]: 3";
        assert_eq!(normalise_lists(src).text, src);
    }

    #[test]
    fn offsets_map_back_to_the_original() {
        let src = "a [ ] b [ ] c";
        let n = normalise_lists(src);
        assert_eq!(n.text, "a: [ ] b: [ ] c");
        assert_eq!(n.inserted_at, vec![1, 7]);
        // 'c' is at 14 in the normalised text and at 12 in the original.
        assert_eq!(n.original_offset(14), 12);
        assert_eq!(n.original_offset(0), 0); // 'a'
        assert_eq!(n.original_offset(1), 1); // the inserted colon maps to where it was inserted
        assert_eq!(n.original_offset(3), 2); // first '['
        assert_eq!(n.original_offset(7), 6); // 'b'
        assert_eq!(n.original_offset(10), 8); // second '['
    }

    #[test]
    fn line_and_column_are_one_based_characters() {
        let src = "ab\n\u{e9}\u{e9}x\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 3), (2, 1));
        assert_eq!(line_column(src, 7), (2, 3)); // after two 2-byte characters
        assert_eq!(line_column(src, 100), (3, 1));
    }

    #[test]
    fn error_positions_are_in_the_original_text() {
        let desc = model_config_descriptor().unwrap();
        let src = "name: \"m\"\ninput [\n  {\n    name: \"x\"\n    bogus: 3\n  }\n]\n";
        let err = parse_text(desc, src, Path::new("/m/config.pbtxt")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/m/config.pbtxt:5:5: unknown field 'bogus' in inference.ModelInput"
        );
    }

    fn parse(src: &str) -> DynamicMessage {
        let desc = model_config_descriptor().unwrap();
        let mut m = parse_text(desc, src, Path::new("t.pbtxt")).unwrap();
        strip_defaults(&mut m);
        m
    }

    #[test]
    fn format_is_triton_style_and_sorted() {
        let src = r#"
            max_batch_size: 0
            input [ { name: "in" data_type: TYPE_FP32 dims: [ 1, -1 ] } ]
            name: "m"
            parameters { key: "zeta" value { string_value: "z" } }
            parameters { key: "alpha" value { string_value: "a\"b\\c\n\u00e9" } }
            dynamic_batching { priority_queue_policy { key: 2 value { timeout_action: DELAY } }
                               priority_queue_policy { key: 1 value { max_queue_size: 4 } } }
        "#;
        let m = parse(src);
        let text = format_message(&m);
        assert_eq!(
            text,
            concat!(
                "name: \"m\"\n",
                "input [\n",
                "  {\n",
                "    name: \"in\"\n",
                "    data_type: TYPE_FP32\n",
                "    dims: [ 1, -1 ]\n",
                "  }\n",
                "]\n",
                "dynamic_batching {\n",
                "  priority_queue_policy {\n",
                "    key: 1\n",
                "    value {\n",
                "      max_queue_size: 4\n",
                "    }\n",
                "  }\n",
                "  priority_queue_policy {\n",
                "    key: 2\n",
                "    value {\n",
                "      timeout_action: DELAY\n",
                "    }\n",
                "  }\n",
                "}\n",
                "parameters {\n",
                "  key: \"alpha\"\n",
                "  value {\n",
                "    string_value: \"a\\\"b\\\\c\\n\u{e9}\"\n",
                "  }\n",
                "}\n",
                "parameters {\n",
                "  key: \"zeta\"\n",
                "  value {\n",
                "    string_value: \"z\"\n",
                "  }\n",
                "}\n",
            )
        );
        assert_eq!(parse(&text), m);
    }

    #[test]
    fn format_round_trips_floats_warmup_and_sequences() {
        let src = r#"
            name: "seq"
            sequence_batching {
              oldest { max_candidate_sequences: 4 preferred_batch_size: [2, 4] }
              control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START
                fp32_false_true: [ 0, 1.5e-3 ] bool_false_true: [false, true] } ] } ]
              state [ { input_name: "i" output_name: "o" data_type: TYPE_INT32 dims: [-1]
                        initial_state [ { name: "s" zero_data: true dims: [1] } ] } ]
            }
            model_warmup [ { name: "w" batch_size: 1
              inputs { key: "b" value { data_type: TYPE_FP32 dims: [3] random_data: true } }
              inputs { key: "a" value { data_type: TYPE_STRING dims: [1] input_data_file: "x.bin" } } } ]
            optimization { cuda { graphs: true graph_spec [ { batch_size: 2 input { key: "in" value { dim: [3, 4] } } } ] }
                           graph { level: -1 } }
            model_metrics { metric_control [ { metric_identifier { family: "f" }
                            histogram_options { buckets: [ -5.0, 0.25, 1e10, inf ] } } ] }
            cc_model_filenames { key: "8.6" value: "model_86.onnx" }
        "#;
        let m = parse(src);
        let text = format_message(&m);
        assert_eq!(parse(&text), m, "{text}");
        assert_eq!(format_message(&parse(&text)), text);
        assert!(
            text.contains("buckets: [ -5, 0.25, 10000000000, inf ]"),
            "{text}"
        );
    }
}
