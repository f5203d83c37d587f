//! GPU pre-processing (`vigil_engine::gpu`).
//!
//! - `kernels_compile_with_nvrtc`: NVRTC compiles every kernel variant (no GPU needed: NVRTC is a
//!   compiler library), so a syntax or type error in the CUDA source fails here, on CI. NVRTC comes
//!   from the `nvidia-cuda-nvrtc-cu12` wheel that `scripts/setup.sh` installs into Vigil's venv;
//!   without it the test says SKIPPED.
//! - `gpu_matches_the_cpu_path_for_every_format` (acceptance 1 of issue 8): on a GPU, every input
//!   format (NV12, I420, RGBA, BGRA, RGB, BGR), stretch and letterbox, RGB and BGR model order, NCHW
//!   and NHWC, FP32 and FP16, a batch of 3 frames of different content in one launch, against the
//!   CPU path (`frame::to_packed4` + `Preprocessor`, frame by frame) within 1e-3 (FP16: relative,
//!   2e-3), and against `gpu::reference` (which the unit tests show equal to the CPU path). Without
//!   an NVIDIA driver it prints `SKIPPED: no NVIDIA driver` and returns.

use vigil_engine::frame;
use vigil_engine::gpu::{
    self, FrameFormat, FrameLayout, GpuPreprocessor, GpuSpec, TensorType, YuvMatrix,
};
use vigil_engine::preprocess::{ColorOrder, Layout, PreprocessSpec, Preprocessor, ResizeMode};

fn skip(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {message}");
}

#[test]
fn kernels_compile_with_nvrtc() {
    if let Err(e) = gpu::nvrtc_available() {
        skip(&format!("{e} (scripts/setup.sh installs it)"));
        return;
    }
    let ptx = gpu::kernels::compiled().unwrap_or_else(|e| panic!("{e}"));
    let text = ptx.to_src();
    let names = gpu::kernels::all_kernel_names();
    assert_eq!(names.len(), 16);
    for name in &names {
        assert!(
            text.contains(&format!(".entry {name}(")),
            "no kernel {name} in the PTX"
        );
    }
    eprintln!(
        "NVRTC {:?}: {} kernels, {} bytes of PTX",
        gpu::nvrtc_available().unwrap(),
        names.len(),
        text.len()
    );
}

/// A frame of `format` whose RGB content is a gradient with a bright box, shifted by `seed`.
fn frame(format: FrameFormat, w: u32, h: u32, seed: u32) -> (FrameLayout, Vec<u8>) {
    let l = FrameLayout::packed(format, w, h);
    let rgb = |x: u32, y: u32| -> [u8; 3] {
        let inside = (w / 4 + seed..w / 2 + seed).contains(&x) && (h / 3..2 * h / 3).contains(&y);
        [
            if inside { 240 } else { ((x * 255) / w) as u8 },
            ((y * 255) / h) as u8,
            ((x + y + 40 * seed) % 256) as u8,
        ]
    };
    let mut buf = vec![0u8; l.frame_bytes];
    match format {
        FrameFormat::Nv12 | FrameFormat::I420 => {
            for y in 0..h {
                for x in 0..w {
                    let [r, g, b] = rgb(x, y).map(f32::from);
                    let yy = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
                    buf[y as usize * l.stride + x as usize] = yy.round() as u8;
                    if x % 2 == 0 && y % 2 == 0 {
                        let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
                        let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
                        let (cx, cy) = ((x / 2) as usize, (y / 2) as usize);
                        if format == FrameFormat::Nv12 {
                            let o = l.u_offset + cy * l.stride_uv + 2 * cx;
                            buf[o] = u.round() as u8;
                            buf[o + 1] = v.round() as u8;
                        } else {
                            buf[l.u_offset + cy * l.stride_uv + cx] = u.round() as u8;
                            buf[l.v_offset + cy * l.stride_uv + cx] = v.round() as u8;
                        }
                    }
                }
            }
        }
        _ => {
            let bpp = if matches!(format, FrameFormat::Rgba | FrameFormat::Bgra) {
                4
            } else {
                3
            };
            let (ri, bi) = match format {
                FrameFormat::Bgra | FrameFormat::Bgr => (2, 0),
                _ => (0, 2),
            };
            for y in 0..h {
                for x in 0..w {
                    let p = rgb(x, y);
                    let o = y as usize * l.stride + x as usize * bpp;
                    buf[o + ri] = p[0];
                    buf[o + 1] = p[1];
                    buf[o + bi] = p[2];
                    if bpp == 4 {
                        buf[o + 3] = 255;
                    }
                }
            }
        }
    }
    (l, buf)
}

fn spec(resize: ResizeMode, color: ColorOrder, layout: Layout) -> PreprocessSpec {
    PreprocessSpec {
        width: 416,
        height: 416,
        color,
        layout,
        resize,
        mean: [103.53, 116.28, 123.675],
        std: [57.375, 57.12, 58.395],
        scale: 1.0,
        pad_value: 114,
    }
}

#[test]
fn gpu_matches_the_cpu_path_for_every_format() {
    if let Err(e) = gpu::devices() {
        skip(&e.to_string());
        return;
    }
    let (w, h) = (1280, 720);
    let mut worst_cpu = 0f32;
    let mut worst_ref = 0f32;
    for format in FrameFormat::ALL {
        let frames: Vec<(FrameLayout, Vec<u8>)> =
            (0..3).map(|s| frame(format, w, h, s * 7)).collect();
        let layout = frames[0].0;
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.1.as_slice()).collect();
        for resize in [ResizeMode::Stretch, ResizeMode::Letterbox] {
            for color in [ColorOrder::Rgb, ColorOrder::Bgr] {
                for tl in [Layout::Nchw, Layout::Nhwc] {
                    let pre = spec(resize, color, tl);
                    let m = YuvMatrix::default_for(h);
                    let want = gpu::reference(&pre, &layout, &m, &refs);
                    // The CPU path, frame by frame.
                    let mut cpu = vec![0f32; 3 * pre.tensor_len()];
                    let mut packed = vec![0u8; (4 * w * h) as usize];
                    let mut p = Preprocessor::new(pre.clone());
                    for (f, out) in refs.iter().zip(cpu.chunks_exact_mut(pre.tensor_len())) {
                        frame::to_packed4(f, &layout, &m, color, &mut packed).unwrap();
                        p.run(&packed, w, h, out).unwrap();
                    }
                    assert_eq!(cpu, want, "the host reference is the CPU path");
                    for dtype in [TensorType::F32, TensorType::F16] {
                        let mut g = GpuPreprocessor::new(GpuSpec {
                            pre: pre.clone(),
                            dtype,
                            format,
                            device: 0,
                            yuv: None,
                        })
                        .unwrap();
                        // Twice: the second call reuses every buffer.
                        g.run(&layout, &refs).unwrap();
                        g.run(&layout, &refs).unwrap();
                        let got = g.download().unwrap();
                        assert_eq!(got.len(), want.len());
                        assert_eq!(g.tensor().unwrap().shape(), pre.batch_shape(3));
                        let diff = |b: &[f32]| {
                            got.iter()
                                .zip(b)
                                .map(|(a, b)| {
                                    (a - b).abs()
                                        / if dtype == TensorType::F16 {
                                            b.abs().max(1.0)
                                        } else {
                                            1.0
                                        }
                                })
                                .fold(0f32, f32::max)
                        };
                        let (d_cpu, d_ref) = (diff(&cpu), diff(&want));
                        worst_cpu = worst_cpu.max(d_cpu);
                        worst_ref = worst_ref.max(d_ref);
                        let limit = if dtype == TensorType::F32 { 1e-3 } else { 2e-3 };
                        eprintln!(
                            "{} {resize:?} {color:?} {tl:?} {dtype:?}: max |gpu - CPU path| \
                             {d_cpu:.2e}, |gpu - reference| {d_ref:.2e}",
                            format.name()
                        );
                        assert!(
                            d_cpu <= limit && d_ref <= limit,
                            "{} {resize:?} {color:?} {tl:?} {dtype:?}: {d_cpu} / {d_ref}",
                            format.name()
                        );
                    }
                }
            }
        }
    }
    eprintln!(
        "every format: max |gpu - CPU path| {worst_cpu:.2e}, max |gpu - reference| {worst_ref:.2e}"
    );
}
