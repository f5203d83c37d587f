//! Tiny ONNX models for the engine's tests, written with a minimal protobuf encoder.
//!
//! `affine`: input `x` `[N, D]` (both dynamic), outputs `y = a·x + 1` (`a` = 2 unless given) and
//! `z = x * x`.

use std::path::{Path, PathBuf};

/// Protobuf wire types.
const VARINT: u8 = 0;
const LEN: u8 = 2;

struct Msg(Vec<u8>);

impl Msg {
    fn new() -> Self {
        Msg(Vec::new())
    }

    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }

    fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, VARINT);
        self.varint(v as u64);
        self
    }

    fn bytes(mut self, field: u32, data: &[u8]) -> Self {
        self.key(field, LEN);
        self.varint(data.len() as u64);
        self.0.extend_from_slice(data);
        self
    }

    fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }

    fn floats(self, field: u32, values: &[f32]) -> Self {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &data)
    }
}

const FLOAT: i64 = 1;
const UINT8: i64 = 2;
const INT32: i64 = 6;
const INT64: i64 = 7;
const STRING: i64 = 8;
const FLOAT16: i64 = 10;
const DOUBLE: i64 = 11;

/// `ValueInfoProto` of a float tensor; dims are names (dynamic) or sizes.
fn value_info(name: &str, dims: &[&str]) -> Msg {
    typed_value_info(name, FLOAT, dims)
}

/// `ValueInfoProto` of a tensor of ONNX element type `elem_type`.
fn typed_value_info(name: &str, elem_type: i64, dims: &[&str]) -> Msg {
    let mut shape = Msg::new();
    for d in dims {
        let dim = match d.parse::<i64>() {
            Ok(v) => Msg::new().int(1, v),
            Err(_) => Msg::new().str(2, d),
        };
        shape = shape.msg(1, dim);
    }
    let tensor = Msg::new().int(1, elem_type).msg(2, shape);
    Msg::new().str(1, name).msg(2, Msg::new().msg(1, tensor))
}

fn scalar(name: &str, v: f32) -> Msg {
    Msg::new().int(2, FLOAT).floats(4, &[v]).str(8, name)
}

fn node(op: &str, inputs: &[&str], output: &str) -> Msg {
    let mut m = Msg::new();
    for i in inputs {
        m = m.str(1, i);
    }
    m.str(2, output).str(3, output).str(4, op)
}

/// A `Cast` node to ONNX element type `to`.
fn cast(input: &str, output: &str, to: i64) -> Msg {
    // AttributeProto: name (1), i (3), type (20) = INT (2).
    let to = Msg::new().str(1, "to").int(3, to).int(20, 2);
    node("Cast", &[input], output).msg(5, to)
}

fn model_of(graph: Msg) -> Vec<u8> {
    Msg::new()
        .int(1, 8)
        .str(2, "vigil-test")
        .msg(7, graph)
        .msg(8, Msg::new().str(1, "").int(2, 13))
        .0
}

/// The `half` model: FP16 input `x [N,D]`; FP32 output `y = 2·x + 1` (computed in FP32 from the FP16
/// value) and FP16 output `h` = `y` rounded to FP16.
pub fn half_model() -> Vec<u8> {
    let graph = Msg::new()
        .msg(1, cast("x", "xf", FLOAT))
        .msg(1, node("Mul", &["xf", "two"], "x2"))
        .msg(1, node("Add", &["x2", "one"], "y"))
        .msg(1, cast("y", "h", FLOAT16))
        .str(2, "half")
        .msg(5, scalar("two", 2.0))
        .msg(5, scalar("one", 1.0))
        .msg(11, typed_value_info("x", FLOAT16, &["N", "D"]))
        .msg(12, value_info("y", &["N", "D"]))
        .msg(12, typed_value_info("h", FLOAT16, &["N", "D"]));
    model_of(graph)
}

/// The `typed` model: UINT8 input `x [N,D]`; outputs `y = 2·x + 1` as FP32, `i` as INT64 and `d` as
/// DOUBLE.
pub fn typed_model() -> Vec<u8> {
    let graph = Msg::new()
        .msg(1, cast("x", "xf", FLOAT))
        .msg(1, node("Mul", &["xf", "two"], "x2"))
        .msg(1, node("Add", &["x2", "one"], "y"))
        .msg(1, cast("y", "i", INT64))
        .msg(1, cast("y", "d", DOUBLE))
        .str(2, "typed")
        .msg(5, scalar("two", 2.0))
        .msg(5, scalar("one", 1.0))
        .msg(11, typed_value_info("x", UINT8, &["N", "D"]))
        .msg(12, value_info("y", &["N", "D"]))
        .msg(12, typed_value_info("i", INT64, &["N", "D"]))
        .msg(12, typed_value_info("d", DOUBLE, &["N", "D"]));
    model_of(graph)
}

/// Triton's `simple` model: INT32 inputs `INPUT0`, `INPUT1` `[N,16]`; outputs `OUTPUT0` = sum and
/// `OUTPUT1` = difference, INT32.
pub fn simple_model() -> Vec<u8> {
    let graph = Msg::new()
        .msg(1, node("Add", &["INPUT0", "INPUT1"], "OUTPUT0"))
        .msg(1, node("Sub", &["INPUT0", "INPUT1"], "OUTPUT1"))
        .str(2, "simple")
        .msg(11, typed_value_info("INPUT0", INT32, &["N", "16"]))
        .msg(11, typed_value_info("INPUT1", INT32, &["N", "16"]))
        .msg(12, typed_value_info("OUTPUT0", INT32, &["N", "16"]))
        .msg(12, typed_value_info("OUTPUT1", INT32, &["N", "16"]));
    model_of(graph)
}

/// Triton's `simple_string` model: the `simple` model on numbers written as strings (STRING inputs
/// and outputs, cast to and from INT32 inside the graph).
pub fn simple_string_model() -> Vec<u8> {
    let graph = Msg::new()
        .msg(1, cast("INPUT0", "a", INT32))
        .msg(1, cast("INPUT1", "b", INT32))
        .msg(1, node("Add", &["a", "b"], "sum"))
        .msg(1, node("Sub", &["a", "b"], "difference"))
        .msg(1, cast("sum", "OUTPUT0", STRING))
        .msg(1, cast("difference", "OUTPUT1", STRING))
        .str(2, "simple_string")
        .msg(11, typed_value_info("INPUT0", STRING, &["N", "16"]))
        .msg(11, typed_value_info("INPUT1", STRING, &["N", "16"]))
        .msg(12, typed_value_info("OUTPUT0", STRING, &["N", "16"]))
        .msg(12, typed_value_info("OUTPUT1", STRING, &["N", "16"]));
    model_of(graph)
}

/// Triton's `simple_identity` model: STRING `INPUT0 [N,-1]` → `OUTPUT0`, the same strings.
pub fn string_identity_model() -> Vec<u8> {
    let graph = Msg::new()
        .msg(1, node("Identity", &["INPUT0"], "OUTPUT0"))
        .str(2, "simple_identity")
        .msg(11, typed_value_info("INPUT0", STRING, &["N", "D"]))
        .msg(12, typed_value_info("OUTPUT0", STRING, &["N", "D"]));
    model_of(graph)
}

/// The bytes of the `affine` model with `y = scale·x + 1`.
pub fn affine_model(scale: f32) -> Vec<u8> {
    let graph = Msg::new()
        .msg(1, node("Mul", &["x", "two"], "x2"))
        .msg(1, node("Add", &["x2", "one"], "y"))
        .msg(1, node("Mul", &["x", "x"], "z"))
        .str(2, "affine")
        .msg(5, scalar("two", scale))
        .msg(5, scalar("one", 1.0))
        .msg(11, value_info("x", &["N", "D"]))
        .msg(12, value_info("y", &["N", "D"]))
        .msg(12, value_info("z", &["N", "D"]));
    model_of(graph)
}

/// Writes the `affine` model (`y = 2x + 1`) as `<dir>/<name>/1/model.onnx` and returns its path.
pub fn write_affine(dir: &Path, name: &str) -> PathBuf {
    write_version(dir, name, 1, &affine_model(2.0))
}

/// Writes `bytes` as `<dir>/<name>/<version>/model.onnx` and returns its path.
pub fn write_version(dir: &Path, name: &str, version: u64, bytes: &[u8]) -> PathBuf {
    let version_dir = dir.join(name).join(version.to_string());
    std::fs::create_dir_all(&version_dir).expect("create test model folder");
    let path = version_dir.join("model.onnx");
    std::fs::write(&path, bytes).expect("write test model");
    path
}
