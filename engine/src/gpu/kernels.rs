//! The pre-processing kernels: CUDA C compiled at run time by NVRTC, once per process.
//!
//! One kernel per (input family, tensor layout, element type), named
//! `vigil_pre_<family>_<layout>_<type>` (family `packed4`, `packed3`, `nv12`, `i420`; layout `nchw`,
//! `nhwc`; type `f32`, `f16`). Colour order, red/blue byte positions, mean/std, placement, pad value
//! and the YUV matrix are run-time parameters (a `Params` struct passed by value). A launch covers a
//! whole batch: grid `(ceil(W/16), ceil(H/16), N)`, one thread per output pixel. Each thread does in
//! integers what the CPU path does (see [`super::weights`]): per horizontal tap, the vertical pass
//! over the source column (YUV converted per sample with the fixed-point matrix) rounded and clamped
//! to 8 bits, then the horizontal pass over those values, rounded and clamped; then the three
//! normalised channels `v * a + b` in `f32` (no FMA contraction, as the host computes it). FP16 is
//! written with `cvt.rn.f16.f32` (inline PTX, so no CUDA header is needed at compile time).

use std::sync::OnceLock;

use super::GpuError;
use super::weights::FrameFormat;
use crate::preprocess::Layout;

/// Element type of the model input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    F32,
    F16,
}

impl TensorType {
    pub fn bytes(self) -> usize {
        match self {
            TensorType::F32 => 4,
            TensorType::F16 => 2,
        }
    }
}

const FAMILIES: [&str; 4] = ["packed4", "packed3", "nv12", "i420"];

/// The kernel's name for frames of `format` into a tensor of `layout` and `dtype`.
pub fn kernel_name(format: FrameFormat, layout: Layout, dtype: TensorType) -> String {
    format!(
        "vigil_pre_{}_{}_{}",
        FAMILIES[format.family()],
        match layout {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        },
        match dtype {
            TensorType::F32 => "f32",
            TensorType::F16 => "f16",
        }
    )
}

/// Every kernel name the source defines.
pub fn all_kernel_names() -> Vec<String> {
    let mut v = Vec::new();
    for format in [
        FrameFormat::Rgba,
        FrameFormat::Rgb,
        FrameFormat::Nv12,
        FrameFormat::I420,
    ] {
        for layout in [Layout::Nchw, Layout::Nhwc] {
            for dtype in [TensorType::F32, TensorType::F16] {
                v.push(kernel_name(format, layout, dtype));
            }
        }
    }
    v
}

/// The kernel parameters, as the CUDA `Params` struct lays them out (all 4-byte fields).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Params {
    pub src_w: i32,
    pub src_h: i32,
    pub stride: i32,
    pub stride_uv: i32,
    pub frame_bytes: i32,
    pub u_offset: i32,
    pub v_offset: i32,
    pub dst_w: i32,
    pub dst_h: i32,
    pub px: i32,
    pub py: i32,
    pub pw: i32,
    pub ph: i32,
    pub taps_x: i32,
    pub taps_y: i32,
    /// Fraction bits of the x and y weights.
    pub prec_x: i32,
    pub prec_y: i32,
    pub red: i32,
    pub blue: i32,
    /// 1: the model wants BGR.
    pub bgr: i32,
    pub a: [f32; 3],
    pub b: [f32; 3],
    pub pad: f32,
    /// The fixed-point YUV matrix (`crate::frame::YuvMatrix`).
    pub m: [i32; 9],
    pub y_offset: i32,
}

// SAFETY: plain old data of 4-byte fields, laid out as the CUDA struct.
unsafe impl cudarc::driver::DeviceRepr for Params {}

/// The CUDA C source of every kernel.
pub fn source() -> String {
    let mut s = String::from(HEADER);
    for (fam, fetch) in [
        ("packed4", "fetch_packed<4>"),
        ("packed3", "fetch_packed<3>"),
        ("nv12", "fetch_nv12"),
        ("i420", "fetch_i420"),
    ] {
        for (layout, index) in [
            ("nchw", "((vsize)(n * 3 + c) * p.dst_h + y) * p.dst_w + x"),
            ("nhwc", "((vsize)(n * p.dst_h + y) * p.dst_w + x) * 3 + c"),
        ] {
            for (ty, cty) in [("f32", "float"), ("f16", "unsigned short")] {
                s.push_str(&format!(
                    "extern \"C\" __global__ void vigil_pre_{fam}_{layout}_{ty}(\n\
                     const unsigned char* src, const int* xs, const int* xw, const int* ys,\n\
                     const int* yw, {cty}* out, Params p) {{\n\
                     int x = blockIdx.x * blockDim.x + threadIdx.x;\n\
                     int y = blockIdx.y * blockDim.y + threadIdx.y;\n\
                     int n = blockIdx.z;\n\
                     if (x >= p.dst_w || y >= p.dst_h) return;\n\
                     float v[3];\n\
                     sample<{fetch}>(src + (vsize)n * p.frame_bytes, xs, xw, ys, yw, p, x, y, v);\n\
                     for (int c = 0; c < 3; c++) {{\n\
                       store(out, {index}, v[c]);\n\
                     }}\n\
                     }}\n"
                ));
            }
        }
    }
    s
}

const HEADER: &str = r#"
typedef unsigned long long vsize;

struct Params {
  int src_w, src_h, stride, stride_uv, frame_bytes, u_offset, v_offset;
  int dst_w, dst_h, px, py, pw, ph, taps_x, taps_y, prec_x, prec_y, red, blue, bgr;
  float a[3], b[3];
  float pad;
  int m[9];
  int y_offset;
};

__device__ __forceinline__ void store(float* o, vsize i, float v) { o[i] = v; }
__device__ __forceinline__ void store(unsigned short* o, vsize i, float v) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  o[i] = h;
}

__device__ __forceinline__ int clamp8(int v) { return min(max(v, 0), 255); }

// Fixed point (1/65536) YUV -> RGB, rounded and clamped: crate::frame::YuvMatrix::rgb.
__device__ __forceinline__ void yuv(const Params& p, int yy, int u, int v, int* rgb) {
  yy -= p.y_offset; u -= 128; v -= 128;
  rgb[0] = clamp8((p.m[0] * yy + p.m[1] * u + p.m[2] * v + 32768) >> 16);
  rgb[1] = clamp8((p.m[3] * yy + p.m[4] * u + p.m[5] * v + 32768) >> 16);
  rgb[2] = clamp8((p.m[6] * yy + p.m[7] * u + p.m[8] * v + 32768) >> 16);
}

template <int BPP>
__device__ __forceinline__ void fetch_packed(const unsigned char* f, const Params& p, int x, int y, int* rgb) {
  const unsigned char* q = f + (vsize)y * p.stride + (vsize)x * BPP;
  rgb[0] = q[p.red]; rgb[1] = q[1]; rgb[2] = q[p.blue];
}

__device__ __forceinline__ void fetch_nv12(const unsigned char* f, const Params& p, int x, int y, int* rgb) {
  const unsigned char* c = f + p.u_offset + (vsize)(y >> 1) * p.stride_uv + (vsize)(x >> 1) * 2;
  yuv(p, f[(vsize)y * p.stride + x], c[0], c[1], rgb);
}

__device__ __forceinline__ void fetch_i420(const unsigned char* f, const Params& p, int x, int y, int* rgb) {
  vsize c = (vsize)(y >> 1) * p.stride_uv + (x >> 1);
  yuv(p, f[(vsize)y * p.stride + x], f[p.u_offset + c], f[p.v_offset + c], rgb);
}

// The normalised model-order channels of output pixel (x, y): padding outside the placed image,
// else the two passes of the CPU resizer in its integer arithmetic (vertical first, each rounded
// and clamped to 8 bits).
template <void (*FETCH)(const unsigned char*, const Params&, int, int, int*)>
__device__ __forceinline__ void sample(const unsigned char* f, const int* xs, const int* xw,
    const int* ys, const int* yw, const Params& p, int x, int y, float* out) {
  int rgb[3];
  if (x < p.px || x >= p.px + p.pw || y < p.py || y >= p.py + p.ph) {
    rgb[0] = rgb[1] = rgb[2] = (int)p.pad;
  } else {
    int ox = x - p.px, oy = y - p.py;
    int x0 = xs[ox], y0 = ys[oy];
    int hx = 1 << (p.prec_x - 1), hy = 1 << (p.prec_y - 1);
    int acc[3] = {hx, hx, hx};
    for (int i = 0; i < p.taps_x; i++) {
      int wx = xw[ox * p.taps_x + i];
      if (wx == 0) continue;
      int col[3] = {hy, hy, hy};
      for (int j = 0; j < p.taps_y; j++) {
        int wy = yw[oy * p.taps_y + j];
        if (wy == 0) continue;
        int s[3];
        FETCH(f, p, x0 + i, y0 + j, s);
        col[0] += wy * s[0]; col[1] += wy * s[1]; col[2] += wy * s[2];
      }
      for (int c = 0; c < 3; c++) acc[c] += wx * clamp8(col[c] >> p.prec_y);
    }
    for (int c = 0; c < 3; c++) rgb[c] = clamp8(acc[c] >> p.prec_x);
  }
  if (p.bgr) { int t = rgb[0]; rgb[0] = rgb[2]; rgb[2] = t; }
  for (int c = 0; c < 3; c++) out[c] = (float)rgb[c] * p.a[c] + p.b[c];
}
"#;

/// The kernels compiled to PTX: once per process (NVRTC takes about a second), the outcome kept.
pub fn compiled() -> Result<cudarc::nvrtc::Ptx, GpuError> {
    static PTX: OnceLock<Result<cudarc::nvrtc::Ptx, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        super::nvrtc_available().map_err(|e| e.to_string())?;
        let opts = cudarc::nvrtc::CompileOptions {
            // No FMA contraction: the results stay those of the host reference's separate multiply
            // and add within float rounding.
            fmad: Some(false),
            name: Some("vigil_preprocess.cu".into()),
            ..Default::default()
        };
        cudarc::nvrtc::compile_ptx_with_opts(source(), opts).map_err(|e| match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => format!(
                "NVRTC could not compile the pre-processing kernels: {}",
                log.to_string_lossy()
            ),
            other => format!("NVRTC: {other:?}"),
        })
    })
    .clone()
    .map_err(GpuError::Compile)
}
