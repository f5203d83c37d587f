//! Tensors on the wire of Triton's protocol: data type names, JSON data (flat or nested,
//! row-major) and the binary tensor data extension (little-endian values; `BYTES` elements each a
//! 4-byte little-endian length then the bytes), both ways.

use serde_json::Value;
use vigil_engine::{DATA_TYPES, DataType, TensorData, TensorSlice};

/// The protocol's name of `dtype` (`INT32`, `FP32`, `BYTES`, …).
pub fn wire_name(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "BOOL",
        DataType::Uint8 => "UINT8",
        DataType::Uint16 => "UINT16",
        DataType::Uint32 => "UINT32",
        DataType::Uint64 => "UINT64",
        DataType::Int8 => "INT8",
        DataType::Int16 => "INT16",
        DataType::Int32 => "INT32",
        DataType::Int64 => "INT64",
        DataType::Fp16 => "FP16",
        DataType::Bf16 => "BF16",
        DataType::Fp32 => "FP32",
        DataType::Fp64 => "FP64",
        DataType::String => "BYTES",
        DataType::Invalid => "INVALID",
    }
}

/// The data type the protocol names `name`; `None` for an unknown name.
pub fn from_wire_name(name: &str) -> Option<DataType> {
    DATA_TYPES.into_iter().find(|t| wire_name(*t) == name)
}

/// The number of elements of `shape`; `None` for a negative dimension or an overflow.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    })
}

/// Reads `count` values of `dtype` from JSON `data` (a flat or nested array of numbers, booleans
/// or strings). The error says what is wrong, for the caller to name the input.
pub fn from_json(dtype: DataType, data: &Value, count: usize) -> Result<TensorData, String> {
    let mut flat = Vec::with_capacity(count.min(1 << 20));
    flatten(data, &mut flat, 0)?;
    if flat.len() != count {
        return Err(format!(
            "has {} values in 'data' but its shape holds {count}",
            flat.len()
        ));
    }
    fn ints<T: TryFrom<i128>>(flat: &[&Value], dtype: DataType) -> Result<Vec<T>, String> {
        flat.iter()
            .enumerate()
            .map(|(k, v)| {
                let n = v
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| v.as_u64().map(i128::from))
                    // JSON's `-0` is an integer too (serde_json reads it as a float).
                    .or_else(|| (v.as_f64() == Some(0.0)).then_some(0))
                    .ok_or_else(|| format!("value {k} ({v}) is not an integer"))?;
                T::try_from(n).map_err(|_| {
                    format!(
                        "value {k} ({n}) is out of the range of {}",
                        wire_name(dtype)
                    )
                })
            })
            .collect()
    }
    fn floats(flat: &[&Value]) -> Result<Vec<f64>, String> {
        flat.iter()
            .enumerate()
            .map(|(k, v)| {
                v.as_f64()
                    .ok_or_else(|| format!("value {k} ({v}) is not a number"))
            })
            .collect()
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(
            flat.iter()
                .enumerate()
                .map(|(k, v)| {
                    v.as_bool()
                        .ok_or_else(|| format!("value {k} ({v}) is not a boolean"))
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => TensorData::Uint8(ints(&flat, dtype)?),
        DataType::Uint16 => TensorData::Uint16(ints(&flat, dtype)?),
        DataType::Uint32 => TensorData::Uint32(ints(&flat, dtype)?),
        DataType::Uint64 => TensorData::Uint64(ints(&flat, dtype)?),
        DataType::Int8 => TensorData::Int8(ints(&flat, dtype)?),
        DataType::Int16 => TensorData::Int16(ints(&flat, dtype)?),
        DataType::Int32 => TensorData::Int32(ints(&flat, dtype)?),
        DataType::Int64 => TensorData::Int64(ints(&flat, dtype)?),
        DataType::Fp16 => TensorData::Fp16(
            floats(&flat)?
                .into_iter()
                .map(half::f16::from_f64)
                .collect(),
        ),
        DataType::Bf16 => TensorData::Bf16(
            floats(&flat)?
                .into_iter()
                .map(half::bf16::from_f64)
                .collect(),
        ),
        DataType::Fp32 => TensorData::Fp32(floats(&flat)?.into_iter().map(|v| v as f32).collect()),
        DataType::Fp64 => TensorData::Fp64(floats(&flat)?),
        DataType::String => TensorData::Bytes(
            flat.iter()
                .enumerate()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| s.as_bytes().to_vec())
                        .ok_or_else(|| format!("value {k} ({v}) is not a string"))
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Invalid => return Err("has no data type".into()),
    })
}

/// Deepest nesting of `data` arrays accepted (a guard against stack exhaustion).
const MAX_NESTING: usize = 64;

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>, depth: usize) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            if depth >= MAX_NESTING {
                return Err(format!("'data' is nested deeper than {MAX_NESTING} arrays"));
            }
            for item in items {
                flatten(item, out, depth + 1)?;
            }
            Ok(())
        }
        other => {
            out.push(other);
            Ok(())
        }
    }
}

/// Reads `count` values of `dtype` from `bytes` (the binary tensor data extension). The error says
/// what is wrong, for the caller to name the input.
pub fn from_binary(dtype: DataType, bytes: &[u8], count: usize) -> Result<TensorData, String> {
    if dtype == DataType::String {
        return strings_from_binary(bytes, count);
    }
    let size = dtype.size_bytes().ok_or("has no data type")?;
    let expected = count.checked_mul(size).ok_or("is too large")?;
    if bytes.len() != expected {
        return Err(format!(
            "byte size mismatch: expected {expected}, got {}",
            bytes.len()
        ));
    }
    fn each<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks of N bytes")))
            .collect()
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Int8 => TensorData::Int8(bytes.iter().map(|&b| b as i8).collect()),
        DataType::Uint16 => TensorData::Uint16(each(bytes, u16::from_le_bytes)),
        DataType::Int16 => TensorData::Int16(each(bytes, i16::from_le_bytes)),
        DataType::Uint32 => TensorData::Uint32(each(bytes, u32::from_le_bytes)),
        DataType::Int32 => TensorData::Int32(each(bytes, i32::from_le_bytes)),
        DataType::Uint64 => TensorData::Uint64(each(bytes, u64::from_le_bytes)),
        DataType::Int64 => TensorData::Int64(each(bytes, i64::from_le_bytes)),
        DataType::Fp16 => TensorData::Fp16(each(bytes, half::f16::from_le_bytes)),
        DataType::Bf16 => TensorData::Bf16(each(bytes, half::bf16::from_le_bytes)),
        DataType::Fp32 => TensorData::Fp32(each(bytes, f32::from_le_bytes)),
        DataType::Fp64 => TensorData::Fp64(each(bytes, f64::from_le_bytes)),
        DataType::String | DataType::Invalid => unreachable!("handled above"),
    })
}

/// `BYTES` elements: each a 4-byte little-endian length, then that many bytes.
fn strings_from_binary(mut bytes: &[u8], count: usize) -> Result<TensorData, String> {
    let mut out = Vec::with_capacity(count.min(1 << 20));
    for k in 0..count {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(format!(
                "holds {k} BYTES elements, but its shape holds {count} (element {k} has no \
                 4-byte length)"
            ));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!(
                "BYTES element {k} says {len} bytes, but only {} remain",
                rest.len()
            ));
        }
        out.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    if !bytes.is_empty() {
        return Err(format!(
            "has {} bytes after its {count} BYTES elements",
            bytes.len()
        ));
    }
    Ok(TensorData::Bytes(out))
}

/// `data` as the protocol's JSON (a flat array); `BYTES` elements that are not UTF-8 are an error
/// (the binary form carries any bytes).
pub fn to_json(data: TensorSlice<'_>) -> Result<Value, String> {
    fn nums<T: Copy + Into<Value>>(v: &[T]) -> Value {
        Value::Array(v.iter().map(|&x| x.into()).collect())
    }
    fn float(x: f64) -> Value {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
    Ok(match data {
        TensorSlice::Bool(v) => nums(v),
        TensorSlice::Uint8(v) => nums(v),
        TensorSlice::Uint16(v) => nums(v),
        TensorSlice::Uint32(v) => nums(v),
        TensorSlice::Uint64(v) => nums(v),
        TensorSlice::Int8(v) => nums(v),
        TensorSlice::Int16(v) => nums(v),
        TensorSlice::Int32(v) => nums(v),
        TensorSlice::Int64(v) => nums(v),
        TensorSlice::Fp16(v) => Value::Array(v.iter().map(|x| float(x.to_f64())).collect()),
        TensorSlice::Bf16(v) => Value::Array(v.iter().map(|x| float(x.to_f64())).collect()),
        TensorSlice::Fp32(v) => Value::Array(v.iter().map(|&x| float(f64::from(x))).collect()),
        TensorSlice::Fp64(v) => Value::Array(v.iter().map(|&x| float(x)).collect()),
        TensorSlice::Bytes(v) => Value::Array(
            v.iter()
                .enumerate()
                .map(|(k, b)| {
                    String::from_utf8(b.clone())
                        .map(Value::String)
                        .map_err(|_| {
                            format!("BYTES element {k} is not UTF-8; ask for it as binary data")
                        })
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Appends `data` in the binary tensor data form to `out`.
pub fn to_binary(data: TensorSlice<'_>, out: &mut Vec<u8>) {
    fn each<T: Copy, const N: usize>(v: &[T], out: &mut Vec<u8>, f: impl Fn(T) -> [u8; N]) {
        out.reserve(v.len() * N);
        for &x in v {
            out.extend_from_slice(&f(x));
        }
    }
    match data {
        TensorSlice::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorSlice::Uint8(v) => out.extend_from_slice(v),
        TensorSlice::Int8(v) => out.extend(v.iter().map(|&b| b as u8)),
        TensorSlice::Uint16(v) => each(v, out, u16::to_le_bytes),
        TensorSlice::Int16(v) => each(v, out, i16::to_le_bytes),
        TensorSlice::Uint32(v) => each(v, out, u32::to_le_bytes),
        TensorSlice::Int32(v) => each(v, out, i32::to_le_bytes),
        TensorSlice::Uint64(v) => each(v, out, u64::to_le_bytes),
        TensorSlice::Int64(v) => each(v, out, i64::to_le_bytes),
        TensorSlice::Fp16(v) => each(v, out, half::f16::to_le_bytes),
        TensorSlice::Bf16(v) => each(v, out, half::bf16::to_le_bytes),
        TensorSlice::Fp32(v) => each(v, out, f32::to_le_bytes),
        TensorSlice::Fp64(v) => each(v, out, f64::to_le_bytes),
        TensorSlice::Bytes(v) => {
            for b in v {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_binary_round_trip_every_type() {
        let cases = [
            (DataType::Bool, json!([[true, false], [false, true]])),
            (DataType::Uint8, json!([0, 255, 7, 8])),
            (DataType::Int8, json!([-128, 127, 0, 1])),
            (DataType::Uint16, json!([0, 65535, 1, 2])),
            (DataType::Int16, json!([-32768, 32767, 0, 1])),
            (DataType::Uint32, json!([0, 4294967295u64, 1, 2])),
            (DataType::Int32, json!([[16777217, -1], [0, 2147483647]])),
            (DataType::Uint64, json!([0, u64::MAX, 1, 2])),
            (DataType::Int64, json!([i64::MIN, i64::MAX, 0, -1])),
            (DataType::Fp16, json!([0.5, -2.0, 1024.0, 0.0])),
            (DataType::Bf16, json!([0.5, -2.0, 1024.0, 0.0])),
            (DataType::Fp32, json!([0.1, -2.5, 1e30, 0.0])),
            (DataType::Fp64, json!([0.1, -2.5, 1e300, 0.0])),
            (DataType::String, json!(["a", "", "élan", "4"])),
        ];
        for (dtype, data) in cases {
            let t = from_json(dtype, &data, 4).unwrap_or_else(|e| panic!("{dtype}: {e}"));
            assert_eq!(t.data_type(), dtype);
            let mut bytes = Vec::new();
            to_binary(t.as_slice(), &mut bytes);
            assert_eq!(from_binary(dtype, &bytes, 4).unwrap(), t, "{dtype}");
            let back = to_json(t.as_slice()).unwrap();
            assert_eq!(from_json(dtype, &back, 4).unwrap(), t, "{dtype}");
            assert_eq!(from_wire_name(wire_name(dtype)), Some(dtype));
        }
    }

    #[test]
    fn json_minus_zero_is_the_integer_zero() {
        let v: Value = serde_json::from_str("[-0, 1]").unwrap();
        assert_eq!(
            from_json(DataType::Int32, &v, 2).unwrap(),
            TensorData::Int32(vec![0, 1])
        );
        let half: Value = serde_json::from_str("[0.5]").unwrap();
        assert!(from_json(DataType::Int8, &half, 1).is_err());
    }

    #[test]
    fn bad_data_is_an_error_saying_what() {
        let e = from_json(DataType::Int32, &json!([1, 2, 3]), 4).unwrap_err();
        assert!(e.contains("3 values") && e.contains("holds 4"), "{e}");
        let e = from_json(DataType::Uint8, &json!([1, 256]), 2).unwrap_err();
        assert!(e.contains("value 1 (256)") && e.contains("UINT8"), "{e}");
        let e = from_json(DataType::Int32, &json!([1, 2.5]), 2).unwrap_err();
        assert!(e.contains("not an integer"), "{e}");
        let e = from_json(DataType::String, &json!([1]), 1).unwrap_err();
        assert!(e.contains("not a string"), "{e}");
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!([deep]);
        }
        assert!(
            from_json(DataType::Int32, &deep, 1)
                .unwrap_err()
                .contains("nested")
        );
        let e = from_binary(DataType::Int32, &[0; 7], 2).unwrap_err();
        assert!(e.contains("expected 8, got 7"), "{e}");
        let e = from_binary(DataType::String, &[5, 0, 0, 0, b'a'], 1).unwrap_err();
        assert!(e.contains("says 5 bytes"), "{e}");
        let e = from_binary(DataType::String, &[1, 0, 0, 0, b'a', 9], 1).unwrap_err();
        assert!(e.contains("1 bytes after"), "{e}");
        let e = from_binary(DataType::String, &[1, 0], 1).unwrap_err();
        assert!(e.contains("no 4-byte length"), "{e}");
        assert!(to_json(TensorSlice::Bytes(&[vec![0xff]])).is_err());
        assert_eq!(element_count(&[2, -1]), None);
        assert_eq!(element_count(&[i64::MAX, i64::MAX]), None);
        assert_eq!(element_count(&[]), Some(1));
    }
}
