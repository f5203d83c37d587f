//! Borrowed output tensors handed to the caller's closure.

/// A borrowed output tensor (f32, row-major).
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

/// A tensor that does not have the shape its reader asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("output tensor '{tensor}' {detail}")]
pub struct TensorError {
    pub tensor: String,
    pub detail: String,
}

impl<'a> TensorView<'a> {
    /// The part of the tensor that belongs to batch item `b` (first dimension).
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
}
