//! How Vigil feeds a model and reads its outputs, taken from the model's repository entry.
//!
//! The input geometry and layout come from the first input of `config.pbtxt` (`dims` and `format`;
//! with `max_batch_size > 0` the batch dimension is implicit, as in Triton). Everything else comes from
//! `parameters` with string values:
//!
//! | key | values | default |
//! | --- | --- | --- |
//! | `vigil.preprocess.color` | `RGB`, `BGR` | `RGB` |
//! | `vigil.preprocess.resize` | `stretch`, `letterbox` | `stretch` |
//! | `vigil.preprocess.scale` | factor applied to 0..255 pixel values first | `1` |
//! | `vigil.preprocess.mean` | three numbers, model channel order, after scale | `0,0,0` |
//! | `vigil.preprocess.std` | three numbers, model channel order | `1,1,1` |
//! | `vigil.preprocess.pad` | letterbox padding value 0..255 | `114` |
//! | `vigil.preprocess.size` | `W,H` network size where `dims` are dynamic (-1) | — |
//! | `vigil.postprocess` | `gfl`, `boxes`, `yolov8`, `centerface` | required |
//! | `vigil.gfl.strides` | comma-separated strides | `8,16,32` |
//! | `vigil.gfl.reg_max` | bins per side minus one | `7` |
//! | `vigil.gfl.center_offset` | anchor offset within a cell | `0.5` |
//! | `vigil.num_classes` | number of classes | number of labels |
//! | `vigil.boxes.output` / `vigil.yolov8.output` | output tensor name | found by shape |
//! | `vigil.boxes.units` | `pixels` (model input), `normalized` | `pixels` |
//! | `vigil.centerface.stride` | output stride of the maps | `4` |
//! | `vigil.centerface.heatmap` / `.size` / `.offset` | output tensor names | found by shape |
//!
//! Example (NanoDet):
//! ```text
//! parameters { key: "vigil.preprocess.color" value { string_value: "BGR" } }
//! parameters { key: "vigil.preprocess.mean" value { string_value: "103.53,116.28,123.675" } }
//! parameters { key: "vigil.preprocess.std" value { string_value: "57.375,57.12,58.395" } }
//! parameters { key: "vigil.postprocess" value { string_value: "gfl" } }
//! parameters { key: "vigil.gfl.reg_max" value { string_value: "10" } }
//! ```

use std::collections::BTreeMap;

use crate::postprocess::{BoxUnits, Decoder};
use vigil_engine::ModelRuntime;
use vigil_engine::preprocess::{ColorOrder, Layout, PreprocessSpec, ResizeMode};
use vigil_modelrepo::{DataType, ModelConfig, TensorFormat};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("model '{model}': {message}")]
pub struct SpecError {
    pub model: String,
    pub message: String,
}

/// The complete recipe for running a detector: input tensor, pre-processing, output parser, labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub model: String,
    pub input_name: String,
    /// `max_batch_size > 0`: the input has a leading batch dimension not listed in `dims`.
    pub batched: bool,
    pub max_batch_size: usize,
    pub preprocess: PreprocessSpec,
    pub decoder: Decoder,
    pub labels: Vec<String>,
}

impl ModelSpec {
    /// The spec of the model `runtime` serves (its configuration and labels).
    pub fn of_runtime(runtime: &ModelRuntime) -> Result<Self, SpecError> {
        Self::from_config(runtime.config(), runtime.labels())
    }

    /// The spec a model's configuration describes (its `vigil.*` parameters, input and outputs).
    pub fn from_config(config: &ModelConfig, labels: &[String]) -> Result<Self, SpecError> {
        let err = |message: String| SpecError {
            model: config.name.clone(),
            message,
        };
        let input = config
            .input
            .first()
            .ok_or_else(|| err("config has no input".into()))?;
        if !matches!(
            input.data_type,
            DataType::Fp32 | DataType::Fp16 | DataType::Uint8
        ) {
            return Err(err(format!(
                "input '{}': data_type {} is not supported (TYPE_FP32, TYPE_FP16 or TYPE_UINT8)",
                input.name, input.data_type
            )));
        }
        let batched = config.max_batch_size > 0;
        let mut dims: Vec<i64> = input.dims.clone();
        if !batched {
            // Explicit batch dimension in dims: must be 1 or dynamic.
            if dims.len() == 4 {
                if dims[0] != 1 && dims[0] != -1 {
                    return Err(err(format!(
                        "input '{}': batch dimension {} is not supported",
                        input.name, dims[0]
                    )));
                }
                dims.remove(0);
            }
        }
        if dims.len() != 3 {
            return Err(err(format!(
                "input '{}': dims {:?} are not an image (expected [3,H,W] or [H,W,3])",
                input.name, input.dims
            )));
        }
        let layout = match input.format {
            TensorFormat::Nchw => Layout::Nchw,
            TensorFormat::Nhwc => Layout::Nhwc,
            TensorFormat::None if dims[0] == 3 => Layout::Nchw,
            TensorFormat::None if dims[2] == 3 => Layout::Nhwc,
            TensorFormat::None => {
                return Err(err(format!(
                    "input '{}': cannot tell the layout of dims {dims:?}; set format",
                    input.name
                )));
            }
        };
        let (c, mut h, mut w) = match layout {
            Layout::Nchw => (dims[0], dims[1], dims[2]),
            Layout::Nhwc => (dims[2], dims[0], dims[1]),
        };
        let p = &config.parameters;
        // A dynamic height/width (-1) takes the network size from `vigil.preprocess.size`.
        if let Some(v) = param(p, "vigil.preprocess.size") {
            let (sw, sh) = size_pair(v)
                .ok_or_else(|| err(format!("parameter vigil.preprocess.size: '{v}' is not W,H")))?;
            for (dim, given, axis) in [(&mut w, sw, "width"), (&mut h, sh, "height")] {
                if *dim > 0 && *dim != given {
                    return Err(err(format!(
                        "parameter vigil.preprocess.size: {axis} {given} differs from the fixed {axis} {dim} of input '{}'",
                        input.name
                    )));
                }
                *dim = given;
            }
        }
        if c != 3 || h <= 0 || w <= 0 {
            return Err(err(format!(
                "input '{}': dims {dims:?} must have 3 channels and a fixed size (or set vigil.preprocess.size to W,H)",
                input.name
            )));
        }
        let color = match param(p, "vigil.preprocess.color")
            .unwrap_or("RGB")
            .to_ascii_uppercase()
            .as_str()
        {
            "RGB" => ColorOrder::Rgb,
            "BGR" => ColorOrder::Bgr,
            other => {
                return Err(err(format!(
                    "parameter vigil.preprocess.color: '{other}' is not RGB or BGR"
                )));
            }
        };
        let resize = match param(p, "vigil.preprocess.resize").unwrap_or("stretch") {
            "stretch" => ResizeMode::Stretch,
            "letterbox" => ResizeMode::Letterbox,
            other => {
                return Err(err(format!(
                    "parameter vigil.preprocess.resize: '{other}' is not stretch or letterbox"
                )));
            }
        };
        let preprocess = PreprocessSpec {
            width: w as u32,
            height: h as u32,
            color,
            layout,
            resize,
            mean: triple(p, "vigil.preprocess.mean", [0.0; 3]).map_err(err)?,
            std: triple(p, "vigil.preprocess.std", [1.0; 3]).map_err(err)?,
            scale: number(p, "vigil.preprocess.scale", 1.0f32).map_err(err)?,
            pad_value: number(p, "vigil.preprocess.pad", 114u8).map_err(err)?,
        };
        if preprocess.std.contains(&0.0) {
            return Err(err(
                "parameter vigil.preprocess.std: must not contain 0".into()
            ));
        }
        let num_classes: usize = number(p, "vigil.num_classes", labels.len()).map_err(err)?;
        let decoder = match param(p, "vigil.postprocess") {
            Some("gfl") => {
                if num_classes == 0 {
                    return Err(err("gfl needs vigil.num_classes or a labels file".into()));
                }
                let strides = param(p, "vigil.gfl.strides")
                    .unwrap_or("8,16,32")
                    .split(',')
                    .map(|s| s.trim().parse::<u32>().ok().filter(|&v| v > 0))
                    .collect::<Option<Vec<u32>>>()
                    .ok_or_else(|| {
                        err("parameter vigil.gfl.strides: expected positive integers".into())
                    })?;
                Decoder::Gfl {
                    strides,
                    reg_max: number(p, "vigil.gfl.reg_max", 7usize).map_err(err)?,
                    num_classes,
                    center_offset: number(p, "vigil.gfl.center_offset", 0.5f32).map_err(err)?,
                }
            }
            Some("boxes") => Decoder::Boxes {
                output: param(p, "vigil.boxes.output").map(str::to_string),
                units: match param(p, "vigil.boxes.units").unwrap_or("pixels") {
                    "pixels" => BoxUnits::Pixels,
                    "normalized" => BoxUnits::Normalized,
                    other => {
                        return Err(err(format!(
                            "parameter vigil.boxes.units: '{other}' is not pixels or normalized"
                        )));
                    }
                },
            },
            Some("yolov8") => Decoder::Yolov8 {
                output: param(p, "vigil.yolov8.output").map(str::to_string),
                num_classes,
            },
            Some("centerface") => Decoder::CenterFace {
                stride: number(p, "vigil.centerface.stride", 4u32)
                    .map_err(err)?
                    .max(1),
                heatmap: param(p, "vigil.centerface.heatmap").map(str::to_string),
                size: param(p, "vigil.centerface.size").map(str::to_string),
                offset: param(p, "vigil.centerface.offset").map(str::to_string),
            },
            Some(other) => {
                return Err(err(format!(
                    "parameter vigil.postprocess: '{other}' is not one of gfl, boxes, yolov8, centerface"
                )));
            }
            None => {
                return Err(err(
                    "parameters lack vigil.postprocess (gfl, boxes, yolov8 or centerface)".into(),
                ));
            }
        };
        Ok(Self {
            model: config.name.clone(),
            input_name: input.name.clone(),
            batched,
            max_batch_size: config.max_batch_size.max(0) as usize,
            preprocess,
            decoder,
            labels: labels.to_vec(),
        })
    }

    /// Shape of the input tensor for `n` images.
    pub fn input_shape(&self, n: usize) -> Vec<i64> {
        self.preprocess.batch_shape(n).to_vec()
    }

    /// The label of a class, or its number as text.
    pub fn label(&self, class_id: usize) -> String {
        self.labels
            .get(class_id)
            .cloned()
            .unwrap_or_else(|| class_id.to_string())
    }

    /// Resolves a class filter (`person,car` or `0,2`) to class ids.
    pub fn class_filter(&self, spec: &str) -> Result<Vec<usize>, SpecError> {
        let mut ids = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(i) = self.labels.iter().position(|l| l == item) {
                ids.push(i);
            } else if let Ok(i) = item.parse::<usize>() {
                ids.push(i);
            } else {
                return Err(SpecError {
                    model: self.model.clone(),
                    message: format!(
                        "class '{item}' is not a label of the model nor a class number"
                    ),
                });
            }
        }
        Ok(ids)
    }
}

fn param<'a>(p: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    p.get(key).map(|s| s.trim())
}

fn number<T: std::str::FromStr>(
    p: &BTreeMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, String> {
    match param(p, key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("parameter {key}: '{v}' is not a valid number")),
    }
}

/// `W,H` with both positive.
fn size_pair(v: &str) -> Option<(i64, i64)> {
    let (a, b) = v.split_once(',')?;
    let (w, h) = (a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

fn triple(p: &BTreeMap<String, String>, key: &str, default: [f32; 3]) -> Result<[f32; 3], String> {
    let Some(v) = param(p, key) else {
        return Ok(default);
    };
    let parts: Vec<f32> = v
        .split(',')
        .map(|s| s.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("parameter {key}: '{v}' is not three numbers"))?;
    <[f32; 3]>::try_from(parts).map_err(|_| format!("parameter {key}: '{v}' is not three numbers"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const NANODET: &str = r#"
name: "nanodet"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "input_1:0" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 416, 416 ] } ]
parameters { key: "vigil.preprocess.color" value { string_value: "BGR" } }
parameters { key: "vigil.preprocess.mean" value { string_value: "103.53,116.28,123.675" } }
parameters { key: "vigil.preprocess.std" value { string_value: "57.375,57.12,58.395" } }
parameters { key: "vigil.postprocess" value { string_value: "gfl" } }
parameters { key: "vigil.gfl.reg_max" value { string_value: "10" } }
"#;

    fn labels() -> Vec<String> {
        (0..80)
            .map(|i| {
                if i == 0 {
                    "person".into()
                } else {
                    format!("c{i}")
                }
            })
            .collect()
    }

    #[test]
    fn nanodet_entry() {
        let c = ModelConfig::parse(NANODET, Path::new("nanodet/config.pbtxt")).unwrap();
        let s = ModelSpec::from_config(&c, &labels()).unwrap();
        assert_eq!(s.preprocess.color, ColorOrder::Bgr);
        assert_eq!(s.preprocess.layout, Layout::Nchw);
        assert_eq!((s.preprocess.width, s.preprocess.height), (416, 416));
        assert_eq!(s.preprocess.std, [57.375, 57.12, 58.395]);
        assert_eq!(
            s.decoder,
            Decoder::Gfl {
                strides: vec![8, 16, 32],
                reg_max: 10,
                num_classes: 80,
                center_offset: 0.5
            }
        );
        assert_eq!(s.input_shape(2), vec![2, 3, 416, 416]);
        assert_eq!(s.class_filter("person, 3").unwrap(), vec![0, 3]);
        assert!(s.class_filter("unicorn").is_err());
    }

    #[test]
    fn nhwc_unbatched_boxes_entry_and_errors() {
        let text = r#"
name: "centernet"
max_batch_size: 0
input [ { name: "img" data_type: TYPE_FP32 dims: [ 1, 512, 512, 3 ] } ]
parameters { key: "vigil.postprocess" value { string_value: "boxes" } }
"#;
        let c = ModelConfig::parse(text, Path::new("c/config.pbtxt")).unwrap();
        let s = ModelSpec::from_config(&c, &labels()).unwrap();
        assert_eq!(s.preprocess.layout, Layout::Nhwc);
        assert!(!s.batched);
        assert_eq!(s.input_shape(1), vec![1, 512, 512, 3]);
        let bad = text.replace("\"boxes\"", "\"ssd\"");
        let c = ModelConfig::parse(&bad, Path::new("c/config.pbtxt")).unwrap();
        let e = ModelSpec::from_config(&c, &labels()).unwrap_err();
        assert!(e.to_string().contains("'ssd' is not one of"), "{e}");
        // 8-bit image inputs (many TensorFlow exports) and FP16 inputs are detectors too; INT32 is not.
        for t in ["TYPE_UINT8", "TYPE_FP16"] {
            let c = ModelConfig::parse(&text.replace("TYPE_FP32", t), Path::new("c/config.pbtxt"))
                .unwrap();
            assert!(ModelSpec::from_config(&c, &labels()).is_ok(), "{t}");
        }
        let c = ModelConfig::parse(
            &text.replace("TYPE_FP32", "TYPE_INT32"),
            Path::new("c/config.pbtxt"),
        )
        .unwrap();
        let e = ModelSpec::from_config(&c, &labels()).unwrap_err();
        assert!(e.to_string().contains("TYPE_INT32 is not supported"), "{e}");
    }

    #[test]
    fn dynamic_dims_take_the_size_parameter() {
        let text = r#"
name: "centerface"
max_batch_size: 8
input [ { name: "input.1" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, -1, -1 ] } ]
parameters { key: "vigil.preprocess.resize" value { string_value: "letterbox" } }
parameters { key: "vigil.postprocess" value { string_value: "centerface" } }
"#;
        let parse = |t: &str| {
            let c = ModelConfig::parse(t, Path::new("centerface/config.pbtxt")).unwrap();
            ModelSpec::from_config(&c, &["face".to_string()])
        };
        let e = parse(text).unwrap_err();
        assert!(e.to_string().contains("vigil.preprocess.size"), "{e}");
        let sized = format!(
            "{text}parameters {{ key: \"vigil.preprocess.size\" value {{ string_value: \"192, 384\" }} }}\n"
        );
        let s = parse(&sized).unwrap();
        assert_eq!((s.preprocess.width, s.preprocess.height), (192, 384));
        assert_eq!(s.input_shape(3), vec![3, 3, 384, 192]);
        assert_eq!(
            s.decoder,
            Decoder::CenterFace {
                stride: 4,
                heatmap: None,
                size: None,
                offset: None
            }
        );
        let e = parse(&sized.replace("192, 384", "192")).unwrap_err();
        assert!(e.to_string().contains("is not W,H"), "{e}");
        // A fixed dim that disagrees with the parameter is an error naming both.
        let fixed = sized.replace("dims: [ 3, -1, -1 ]", "dims: [ 3, 384, 160 ]");
        let e = parse(&fixed).unwrap_err();
        assert!(
            e.to_string()
                .contains("width 192 differs from the fixed width 160"),
            "{e}"
        );
    }
}
