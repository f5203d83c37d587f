//! Tensors as requests give them and as outputs are lent to the caller's closure: in any element
//! type an ONNX model can have (Triton's data types; `TYPE_STRING` is `BYTES`), with an f32 view
//! for the callers that decode numbers.

use std::borrow::Cow;
use std::ops::Range;

pub use vigil_modelrepo::DataType;

/// Declares [`TensorData`] (owned) and [`TensorSlice`] (borrowed) with one variant per element
/// type, and the methods that only differ by variant.
macro_rules! tensors {
    ($($variant:ident($t:ty) = $dtype:ident,)*) => {
        /// A tensor's values, owned, in its element type (row-major).
        #[derive(Debug, Clone, PartialEq)]
        pub enum TensorData {
            $($variant(Vec<$t>),)*
        }

        /// A tensor's values, borrowed, in its element type (row-major).
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum TensorSlice<'a> {
            $($variant(&'a [$t]),)*
        }

        impl TensorData {
            /// The element type.
            pub fn data_type(&self) -> DataType {
                match self {
                    $(TensorData::$variant(_) => DataType::$dtype,)*
                }
            }

            /// The number of elements.
            pub fn len(&self) -> usize {
                match self {
                    $(TensorData::$variant(v) => v.len(),)*
                }
            }

            /// Whether it has no element.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// The values, borrowed.
            pub fn as_slice(&self) -> TensorSlice<'_> {
                match self {
                    $(TensorData::$variant(v) => TensorSlice::$variant(v),)*
                }
            }

            /// An empty tensor of element type `dtype` with room for `capacity` elements; `None`
            /// for `TYPE_INVALID`.
            pub fn with_capacity(dtype: DataType, capacity: usize) -> Option<TensorData> {
                Some(match dtype {
                    $(DataType::$dtype => TensorData::$variant(Vec::with_capacity(capacity)),)*
                    _ => return None,
                })
            }

            /// Appends `other`'s values; `false` (nothing appended) when its element type differs.
            pub fn extend_from(&mut self, other: TensorSlice<'_>) -> bool {
                match (self, other) {
                    $((TensorData::$variant(v), TensorSlice::$variant(o)) => {
                        v.extend_from_slice(o);
                        true
                    })*
                    _ => false,
                }
            }
        }

        impl<'a> TensorSlice<'a> {
            /// The element type.
            pub fn data_type(&self) -> DataType {
                match self {
                    $(TensorSlice::$variant(_) => DataType::$dtype,)*
                }
            }

            /// The number of elements.
            pub fn len(&self) -> usize {
                match self {
                    $(TensorSlice::$variant(v) => v.len(),)*
                }
            }

            /// Whether it has no element.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Elements `range` (which must lie within the slice).
            pub fn range(&self, range: Range<usize>) -> TensorSlice<'a> {
                match *self {
                    $(TensorSlice::$variant(v) => TensorSlice::$variant(&v[range]),)*
                }
            }

            /// The values, copied.
            pub fn to_owned_data(&self) -> TensorData {
                match *self {
                    $(TensorSlice::$variant(v) => TensorData::$variant(v.to_vec()),)*
                }
            }
        }

    };
}

/// `From` a vector (slice) of each element type but FP64, so that a vector of float literals is
/// f32, as the engine's callers mean, and never silently FP64 (write `TensorData::Fp64`).
macro_rules! conversions {
    ($($variant:ident($t:ty),)*) => {
        $(
            impl From<Vec<$t>> for TensorData {
                fn from(v: Vec<$t>) -> Self {
                    TensorData::$variant(v)
                }
            }

            impl<'a> From<&'a [$t]> for TensorSlice<'a> {
                fn from(v: &'a [$t]) -> Self {
                    TensorSlice::$variant(v)
                }
            }
        )*
    };
}

tensors! {
    Bool(bool) = Bool,
    Uint8(u8) = Uint8,
    Uint16(u16) = Uint16,
    Uint32(u32) = Uint32,
    Uint64(u64) = Uint64,
    Int8(i8) = Int8,
    Int16(i16) = Int16,
    Int32(i32) = Int32,
    Int64(i64) = Int64,
    Fp16(half::f16) = Fp16,
    Bf16(half::bf16) = Bf16,
    Fp32(f32) = Fp32,
    Fp64(f64) = Fp64,
    Bytes(Vec<u8>) = String,
}

conversions! {
    Bool(bool),
    Uint8(u8),
    Uint16(u16),
    Uint32(u32),
    Uint64(u64),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Fp16(half::f16),
    Bf16(half::bf16),
    Fp32(f32),
    Bytes(Vec<u8>),
}

/// Every data type a tensor can have (Triton's, but `TYPE_INVALID`).
pub const DATA_TYPES: [DataType; 14] = [
    DataType::Bool,
    DataType::Uint8,
    DataType::Uint16,
    DataType::Uint32,
    DataType::Uint64,
    DataType::Int8,
    DataType::Int16,
    DataType::Int32,
    DataType::Int64,
    DataType::Fp16,
    DataType::Bf16,
    DataType::Fp32,
    DataType::Fp64,
    DataType::String,
];

/// The Triton data type of ONNX Runtime's element type `name` (as [`crate::runtime::IoInfo::dtype`]
/// names it, e.g. `Int32`); `None` for a name no Triton data type has.
pub fn data_type_of_element(name: &str) -> Option<DataType> {
    DATA_TYPES
        .into_iter()
        .find(|t| t.element_name() == Some(name))
}

impl TensorData {
    /// `values` as a tensor of `dtype` for the numeric types a pre-processed image is sent as
    /// (FP32, FP16 rounded to nearest, UINT8/INT8/INT32/INT64 rounded then saturated); `None` for
    /// the others.
    pub fn from_f32(dtype: DataType, values: &[f32]) -> Option<TensorData> {
        Some(match dtype {
            DataType::Fp32 => TensorData::Fp32(values.to_vec()),
            DataType::Fp16 => {
                TensorData::Fp16(values.iter().map(|&v| half::f16::from_f32(v)).collect())
            }
            DataType::Uint8 => TensorData::Uint8(values.iter().map(|v| v.round() as u8).collect()),
            DataType::Int8 => TensorData::Int8(values.iter().map(|v| v.round() as i8).collect()),
            DataType::Int32 => TensorData::Int32(values.iter().map(|v| v.round() as i32).collect()),
            DataType::Int64 => TensorData::Int64(values.iter().map(|v| v.round() as i64).collect()),
            _ => return None,
        })
    }

    /// The f32 values of an FP32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            TensorData::Fp32(v) => Some(v),
            _ => None,
        }
    }
}

impl<'a> TensorSlice<'a> {
    /// The values as f32: borrowed for FP32, widened for the other numeric types (integers up to
    /// 2^24 exactly, booleans as 0/1); `None` for `BYTES`.
    pub fn to_f32(&self) -> Option<Cow<'a, [f32]>> {
        fn all<T: Copy>(v: &[T], f: impl Fn(T) -> f32) -> Option<Cow<'static, [f32]>> {
            Some(Cow::Owned(v.iter().map(|&x| f(x)).collect()))
        }
        match *self {
            TensorSlice::Fp32(v) => Some(Cow::Borrowed(v)),
            TensorSlice::Bool(v) => all(v, |x| f32::from(u8::from(x))),
            TensorSlice::Uint8(v) => all(v, f32::from),
            TensorSlice::Uint16(v) => all(v, f32::from),
            TensorSlice::Uint32(v) => all(v, |x| x as f32),
            TensorSlice::Uint64(v) => all(v, |x| x as f32),
            TensorSlice::Int8(v) => all(v, f32::from),
            TensorSlice::Int16(v) => all(v, f32::from),
            TensorSlice::Int32(v) => all(v, |x| x as f32),
            TensorSlice::Int64(v) => all(v, |x| x as f32),
            TensorSlice::Fp16(v) => all(v, half::f16::to_f32),
            TensorSlice::Bf16(v) => all(v, half::bf16::to_f32),
            TensorSlice::Fp64(v) => all(v, |x| x as f32),
            TensorSlice::Bytes(_) => None,
        }
    }
}

/// A borrowed output tensor: its values in the model's element type (`raw`) and, for numeric
/// types, as f32 (`data`: the same memory for FP32, widened for the others; empty for `BYTES`).
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
    pub raw: TensorSlice<'a>,
}

/// A tensor that does not have the shape its reader asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("output tensor '{tensor}' {detail}")]
pub struct TensorError {
    pub tensor: String,
    pub detail: String,
}

impl<'a> TensorView<'a> {
    /// An FP32 tensor's view (`raw` is `data`).
    pub fn f32(name: &'a str, shape: &'a [usize], data: &'a [f32]) -> Self {
        TensorView {
            name,
            shape,
            data,
            raw: TensorSlice::Fp32(data),
        }
    }

    /// The f32 values of batch item `b` (first dimension).
    pub fn item(&self, b: usize) -> Result<&'a [f32], TensorError> {
        let n = *self.shape.first().ok_or_else(|| TensorError {
            tensor: self.name.to_string(),
            detail: "is a scalar".into(),
        })?;
        if b >= n {
            return Err(TensorError {
                tensor: self.name.to_string(),
                detail: format!("has batch size {n}, item {b} requested"),
            });
        }
        let per = self.data.len() / n.max(1);
        Ok(&self.data[b * per..(b + 1) * per])
    }

    /// The view of batch item `i` of `n` (first dimension), with `shape` (the item's shape,
    /// leading dimension 1).
    pub fn split(&self, i: usize, n: usize, shape: &'a [usize]) -> TensorView<'a> {
        let per = self.raw.len() / n.max(1);
        let per_f32 = self.data.len() / n.max(1);
        TensorView {
            name: self.name,
            shape,
            data: &self.data[i * per_f32..(i + 1) * per_f32],
            raw: self.raw.range(i * per..(i + 1) * per),
        }
    }
}

/// Lends owned outputs `(name, shape, values)` as views: `widened` holds their f32 values
/// ([`widen`]), which the views borrow.
pub(crate) fn views_of<'a, N: AsRef<str>>(
    outputs: &'a [(N, Vec<usize>, TensorData)],
    widened: &'a [Cow<'a, [f32]>],
) -> Vec<TensorView<'a>> {
    outputs
        .iter()
        .zip(widened)
        .map(|((name, shape, data), f)| TensorView {
            name: name.as_ref(),
            shape,
            data: f,
            raw: data.as_slice(),
        })
        .collect()
}

/// The f32 values of owned outputs, for [`views_of`] (empty for `BYTES`).
pub(crate) fn widen<N>(outputs: &[(N, Vec<usize>, TensorData)]) -> Vec<Cow<'_, [f32]>> {
    outputs
        .iter()
        .map(|(_, _, data)| data.as_slice().to_f32().unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_tensors_stack_split_and_widen() {
        let mut all = TensorData::with_capacity(DataType::Int32, 4).unwrap();
        assert!(all.extend_from(TensorSlice::from(&[1i32, 16_777_217][..])));
        assert!(all.extend_from(TensorSlice::from(&[-3i32, 4][..])));
        assert!(
            !all.extend_from(TensorSlice::from(&[1.0f32][..])),
            "types differ"
        );
        assert_eq!(all, TensorData::Int32(vec![1, 16_777_217, -3, 4]));
        assert_eq!(all.data_type(), DataType::Int32);
        let widened = all.as_slice().to_f32().unwrap();
        let shape = [1usize, 2];
        let view = TensorView {
            name: "OUT",
            shape: &[2, 2],
            data: &widened,
            raw: all.as_slice(),
        };
        let second = view.split(1, 2, &shape);
        assert_eq!(second.raw, TensorSlice::Int32(&[-3, 4]));
        assert_eq!(second.data, &[-3.0, 4.0]);
        assert_eq!(
            view.split(0, 2, &shape).raw,
            TensorSlice::Int32(&[1, 16_777_217])
        );
        let bytes = TensorData::from(vec![b"ab".to_vec(), vec![0, 255]]);
        assert_eq!(bytes.data_type(), DataType::String);
        assert!(bytes.as_slice().to_f32().is_none());
        assert_eq!(
            bytes.as_slice().range(1..2).to_owned_data(),
            TensorData::Bytes(vec![vec![0, 255]])
        );
    }
}
