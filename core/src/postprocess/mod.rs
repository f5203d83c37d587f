//! Output parsers: turn a model's raw output tensors into detections in model-input pixels.
//!
//! The parser is chosen per model by its repository entry (`parameters` of `config.pbtxt`, see
//! [`crate::modelspec`]), never by model name:
//! - [`Decoder::Gfl`]: NanoDet-style heads — per stride a class-score tensor `[B,N,C]` (sigmoid applied)
//!   and a box-distribution tensor `[B,N,4*(reg_max+1)]` (Generalized Focal Loss); tensors are matched by
//!   shape, not by order.
//! - [`Decoder::Boxes`]: boxes decoded inside the graph, `[B,K,6]` = `x1,y1,x2,y2,score,class`.
//! - [`Decoder::Yolov8`]: `[B,4+C,N]` = `cx,cy,w,h` then `C` class scores per candidate.
//! - [`Decoder::CenterFace`]: CenterFace-style heatmap, box-size and offset maps (faces, class 0).

mod boxes;
mod centerface;
mod gfl;
mod nms;
mod yolov8;

pub use nms::nms;

use crate::objects::BBox;

use vigil_engine::TensorError;
pub use vigil_engine::TensorView;

/// One detection in model-input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub class_id: usize,
    pub score: f32,
    pub bbox: BBox,
}

/// Where boxes of [`Decoder::Boxes`] live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxUnits {
    /// Model-input pixels.
    Pixels,
    /// 0..1 of the model input.
    Normalized,
}

/// The output parser of a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoder {
    Gfl {
        strides: Vec<u32>,
        reg_max: usize,
        num_classes: usize,
        /// Offset of the anchor point inside its cell (0.5 = cell centre).
        center_offset: f32,
    },
    Boxes {
        /// Output to read; `None` = the first output whose last dimension is 6.
        output: Option<String>,
        units: BoxUnits,
    },
    Yolov8 {
        output: Option<String>,
        num_classes: usize,
    },
    /// Heatmap peaks with box size and centre offset maps (see `centerface.rs`); one class.
    CenterFace {
        /// Output stride of the maps (CenterFace: 4).
        stride: u32,
        /// Output names; `None` = found by shape (heatmap: 1 channel; size, then offset: 2 channels).
        heatmap: Option<String>,
        size: Option<String>,
        offset: Option<String>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PostprocessError {
    #[error("output tensor '{tensor}' {detail}")]
    Shape { tensor: String, detail: String },
    #[error("no output tensor matches {0}")]
    Missing(String),
}

impl From<TensorError> for PostprocessError {
    fn from(e: TensorError) -> Self {
        PostprocessError::Shape {
            tensor: e.tensor,
            detail: e.detail,
        }
    }
}

impl Decoder {
    /// Decodes batch item `b`, keeping candidates with score ≥ `threshold`. Boxes are in model-input pixels
    /// of an `input_w` x `input_h` input. No NMS is applied.
    pub fn decode(
        &self,
        outputs: &[TensorView],
        b: usize,
        input_w: u32,
        input_h: u32,
        threshold: f32,
    ) -> Result<Vec<Detection>, PostprocessError> {
        match self {
            Decoder::Gfl {
                strides,
                reg_max,
                num_classes,
                center_offset,
            } => gfl::decode(
                outputs,
                b,
                gfl::GflParams {
                    input_w,
                    input_h,
                    strides,
                    reg_max: *reg_max,
                    num_classes: *num_classes,
                    center_offset: *center_offset,
                },
                threshold,
            ),
            Decoder::Boxes { output, units } => {
                let t = find_output(
                    outputs,
                    output.as_deref(),
                    |s| s.len() == 3 && s[2] == 6,
                    "[B,K,6]",
                )?;
                boxes::decode(&t, b, *units, input_w, input_h, threshold)
            }
            Decoder::Yolov8 {
                output,
                num_classes,
            } => {
                let t = find_output(
                    outputs,
                    output.as_deref(),
                    |s| s.len() == 3 && (*num_classes == 0 || s[1] == 4 + num_classes),
                    "[B,4+C,N]",
                )?;
                yolov8::decode(&t, b, threshold)
            }
            Decoder::CenterFace {
                stride,
                heatmap,
                size,
                offset,
            } => {
                let names = [heatmap.clone(), size.clone(), offset.clone()];
                let heads = centerface::find_heads(outputs, &names)?;
                centerface::decode(&heads, b, *stride as f32, threshold)
            }
        }
    }
}

fn find_output<'a>(
    outputs: &[TensorView<'a>],
    name: Option<&str>,
    fits: impl Fn(&[usize]) -> bool,
    what: &str,
) -> Result<TensorView<'a>, PostprocessError> {
    match name {
        Some(n) => {
            let t = outputs
                .iter()
                .find(|t| t.name == n)
                .ok_or_else(|| PostprocessError::Missing(format!("name '{n}'")))?;
            if !fits(t.shape) {
                return Err(PostprocessError::Shape {
                    tensor: n.to_string(),
                    detail: format!("has shape {:?}, expected {what}", t.shape),
                });
            }
            Ok(*t)
        }
        None => outputs
            .iter()
            .find(|t| fits(t.shape))
            .copied()
            .ok_or_else(|| PostprocessError::Missing(format!("shape {what}"))),
    }
}
