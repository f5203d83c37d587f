//! [`GpuPreprocessor`]: one per model instance — its own CUDA stream, the compiled kernel for its
//! input format, tensor layout and type, and device buffers (frames, weights, tensor) reused from call
//! to call (they only grow).

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};

use super::kernels::{self, Params, TensorType};
use super::weights::{FrameFormat, FrameLayout, Geometry, YuvMatrix};
use super::{GpuError, devices};
use crate::preprocess::{ColorOrder, Placement, PreprocessSpec};

/// What a [`GpuPreprocessor`] produces, and from which frames.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSpec {
    /// Size, colour order, resize mode, layout, mean/std, scale and pad value: as the CPU path.
    pub pre: PreprocessSpec,
    pub dtype: TensorType,
    pub format: FrameFormat,
    /// CUDA device ordinal (`instance_group.gpus`).
    pub device: usize,
    /// YUV → RGB for NV12/I420 frames; `None`: [`YuvMatrix::default_for`] the frame height.
    pub yuv: Option<YuvMatrix>,
}

/// The batch tensor in device memory (valid until the next [`GpuPreprocessor::run`]).
#[derive(Debug)]
pub struct DeviceTensor {
    data: CudaSlice<u8>,
    /// Bytes of the current batch.
    len: usize,
    shape: [i64; 4],
    dtype: TensorType,
}

impl DeviceTensor {
    pub fn shape(&self) -> [i64; 4] {
        self.shape
    }

    pub fn dtype(&self) -> TensorType {
        self.dtype
    }

    pub fn bytes(&self) -> usize {
        self.len
    }

    /// The device buffer (its first [`DeviceTensor::bytes`] bytes are the tensor), e.g. for binding
    /// to an ONNX Runtime session's input.
    pub fn buffer(&self) -> &CudaSlice<u8> {
        &self.data
    }

    /// The buffer's device address (for [`crate::runtime::OnnxModel::run_device`]; synchronise the
    /// pre-processor's stream first).
    pub fn device_address(&self, stream: &CudaStream) -> u64 {
        use cudarc::driver::DevicePtr;
        let (address, _sync) = self.data.device_ptr(stream);
        address
    }
}

struct Cached {
    layout: FrameLayout,
    geometry: Geometry,
    xs: CudaSlice<i32>,
    xw: CudaSlice<i32>,
    ys: CudaSlice<i32>,
    yw: CudaSlice<i32>,
}

pub struct GpuPreprocessor {
    spec: GpuSpec,
    stream: Arc<CudaStream>,
    func: CudaFunction,
    frames: Option<CudaSlice<u8>>,
    tensor: Option<DeviceTensor>,
    cached: Option<Cached>,
}

impl std::fmt::Debug for GpuPreprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuPreprocessor")
            .field("spec", &self.spec)
            .finish()
    }
}

fn cuda(what: &str) -> impl Fn(cudarc::driver::DriverError) -> GpuError + '_ {
    move |e| GpuError::Cuda(format!("{what}: {e}"))
}

fn i32_of(v: usize, what: &str) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| GpuError::Input(format!("{what} {v} is too large")))
}

impl GpuPreprocessor {
    /// Checks the driver, the device and NVRTC, compiles the kernels (once per process), loads the
    /// kernel for `spec` and makes a stream.
    pub fn new(spec: GpuSpec) -> Result<Self, GpuError> {
        let devs = devices()?;
        if spec.device >= devs.len() {
            return Err(GpuError::NoDriver(format!(
                "CUDA device {} does not exist ({} device(s))",
                spec.device,
                devs.len()
            )));
        }
        let ptx = kernels::compiled()?;
        let ctx = CudaContext::new(spec.device).map_err(cuda("creating the CUDA context"))?;
        let module = ctx.load_module(ptx).map_err(cuda("loading the kernels"))?;
        let name = kernels::kernel_name(spec.format, spec.pre.layout, spec.dtype);
        let func = module
            .load_function(&name)
            .map_err(cuda("finding the kernel"))?;
        let stream = ctx.new_stream().map_err(cuda("creating a stream"))?;
        Ok(GpuPreprocessor {
            spec,
            stream,
            func,
            frames: None,
            tensor: None,
            cached: None,
        })
    }

    pub fn spec(&self) -> &GpuSpec {
        &self.spec
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Pre-processes a batch of host frames (all of `layout`, each at least `layout.frame_bytes`
    /// long): one upload per frame into the reused device buffer, one kernel launch for the batch.
    /// The tensor is in [`GpuPreprocessor::tensor`] once the stream gets there (the call does not
    /// wait); returns where the frames landed.
    pub fn run(&mut self, layout: &FrameLayout, frames: &[&[u8]]) -> Result<Placement, GpuError> {
        if frames.is_empty() {
            return Err(GpuError::Input("empty batch".into()));
        }
        if layout.format != self.spec.format {
            return Err(GpuError::Input(format!(
                "{} frames given to a pre-processor for {}",
                layout.format.name(),
                self.spec.format.name()
            )));
        }
        if layout.width == 0 || layout.height == 0 {
            return Err(GpuError::Input("empty frame".into()));
        }
        if let Some(f) = frames.iter().find(|f| f.len() < layout.frame_bytes) {
            return Err(GpuError::Input(format!(
                "a {}x{} {} frame has {} bytes, {} expected",
                layout.width,
                layout.height,
                layout.format.name(),
                f.len(),
                layout.frame_bytes
            )));
        }
        let n = frames.len();
        let pre = &self.spec.pre;
        let (w, h) = (pre.width as usize, pre.height as usize);

        if self.cached.as_ref().is_none_or(|c| c.layout != *layout) {
            let geometry = Geometry::new(pre, layout.width, layout.height);
            let s = &self.stream;
            let up = "uploading the resize weights";
            self.cached = Some(Cached {
                xs: s.clone_htod(&geometry.x.start).map_err(cuda(up))?,
                xw: s.clone_htod(&geometry.x.weights).map_err(cuda(up))?,
                ys: s.clone_htod(&geometry.y.start).map_err(cuda(up))?,
                yw: s.clone_htod(&geometry.y.weights).map_err(cuda(up))?,
                layout: *layout,
                geometry,
            });
        }
        let in_bytes = n * layout.frame_bytes;
        if self.frames.as_ref().is_none_or(|b| b.len() < in_bytes) {
            self.frames = Some(
                self.stream
                    .alloc_zeros::<u8>(in_bytes)
                    .map_err(cuda("allocating the frame buffer"))?,
            );
        }
        let out_bytes = n * 3 * w * h * self.spec.dtype.bytes();
        if self
            .tensor
            .as_ref()
            .is_none_or(|t| t.data.len() < out_bytes)
        {
            self.tensor = Some(DeviceTensor {
                data: self
                    .stream
                    .alloc_zeros::<u8>(out_bytes)
                    .map_err(cuda("allocating the tensor"))?,
                len: 0,
                shape: [0; 4],
                dtype: self.spec.dtype,
            });
        }
        let (Some(cached), Some(buf), Some(tensor)) =
            (&self.cached, &mut self.frames, &mut self.tensor)
        else {
            unreachable!("allocated above");
        };
        for (i, f) in frames.iter().enumerate() {
            let off = i * layout.frame_bytes;
            let mut dst = buf.slice_mut(off..off + layout.frame_bytes);
            self.stream
                .memcpy_htod(&f[..layout.frame_bytes], &mut dst)
                .map_err(cuda("uploading a frame"))?;
        }

        let g = &cached.geometry;
        let p = g.placement;
        let (red, blue) = layout.format.red_blue();
        let yuv = self
            .spec
            .yuv
            .unwrap_or_else(|| YuvMatrix::default_for(layout.height));
        let params = Params {
            src_w: i32_of(layout.width as usize, "width")?,
            src_h: i32_of(layout.height as usize, "height")?,
            stride: i32_of(layout.stride, "stride")?,
            stride_uv: i32_of(layout.stride_uv, "chroma stride")?,
            frame_bytes: i32_of(layout.frame_bytes, "frame size")?,
            u_offset: i32_of(layout.u_offset, "plane offset")?,
            v_offset: i32_of(layout.v_offset, "plane offset")?,
            dst_w: w as i32,
            dst_h: h as i32,
            px: p.x as i32,
            py: p.y as i32,
            pw: p.w as i32,
            ph: p.h as i32,
            taps_x: g.x.taps as i32,
            taps_y: g.y.taps as i32,
            prec_x: g.x.precision as i32,
            prec_y: g.y.precision as i32,
            red: red as i32,
            blue: blue as i32,
            bgr: i32::from(pre.color == ColorOrder::Bgr),
            a: std::array::from_fn(|c| pre.scale / pre.std[c]),
            b: std::array::from_fn(|c| -pre.mean[c] / pre.std[c]),
            pad: f32::from(pre.pad_value),
            m: yuv.m,
            y_offset: yuv.y_offset,
        };
        let cfg = LaunchConfig {
            grid_dim: ((w as u32).div_ceil(16), (h as u32).div_ceil(16), n as u32),
            block_dim: (16, 16, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = self.stream.launch_builder(&self.func);
        launch
            .arg(&*buf)
            .arg(&cached.xs)
            .arg(&cached.xw)
            .arg(&cached.ys)
            .arg(&cached.yw)
            .arg(&mut tensor.data)
            .arg(&params);
        // SAFETY: the kernel's parameters are exactly these (`kernels::source`); every index it forms
        // stays inside the buffers sized above (weights are clamped to the source, output to dst).
        unsafe { launch.launch(cfg) }.map_err(cuda("launching the pre-processing kernel"))?;
        tensor.len = out_bytes;
        tensor.shape = pre.batch_shape(n);
        Ok(p)
    }

    /// Waits until the stream has written the tensor.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.stream.synchronize().map_err(cuda("synchronising"))
    }

    /// The tensor of the last [`GpuPreprocessor::run`].
    pub fn tensor(&self) -> Option<&DeviceTensor> {
        self.tensor.as_ref().filter(|t| t.len > 0)
    }

    /// Copies the last tensor to the host as `f32` (FP16 values widened): for tests and checks.
    pub fn download(&self) -> Result<Vec<f32>, GpuError> {
        let Some(t) = self.tensor() else {
            return Err(GpuError::Input("nothing was pre-processed yet".into()));
        };
        let bytes = self
            .stream
            .clone_dtoh(&t.data.slice(0..t.len))
            .map_err(cuda("downloading the tensor"))?;
        Ok(match t.dtype {
            TensorType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            TensorType::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        })
    }
}

/// IEEE half → single precision.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_decoding() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    }
}
