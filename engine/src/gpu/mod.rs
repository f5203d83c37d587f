//! The GPU path's cores (no GStreamer): what this machine offers ([`probe`]) and CUDA pre-processing
//! ([`GpuPreprocessor`]: decoded frames → the model's batched input tensor in device memory, kernels
//! compiled at run time by NVRTC).
//!
//! Everything here loads the CUDA libraries at run time (`cudarc` with dynamic loading): a build or a
//! machine without CUDA works, and every entry point checks that the library is present before calling
//! into it (`cudarc` panics otherwise). What is missing is reported once per process through
//! [`crate::runtime::warn_once`] and as a [`GpuError`] naming it; the callers then use the CPU path.
//!
//! NVRTC (`libnvrtc.so.12`) is found by the dynamic loader (`LD_LIBRARY_PATH`), or, failing that, at
//! `$VIGIL_NVRTC` (the library file) or in the Python packages of Vigil's virtual environment
//! (`$VIGIL_CACHE/venv`, by default `~/.cache/vigil/venv`, where `scripts/setup.sh` installs the
//! `nvidia-cuda-nvrtc-cu12` wheel):
//! such a file is opened by its path first, after which the loader finds it by its soname.

pub mod kernels;
mod preprocess;
pub mod weights;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use kernels::TensorType;
pub use preprocess::{DeviceTensor, GpuPreprocessor, GpuSpec};
pub use weights::{FrameFormat, FrameLayout, YuvMatrix, reference};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum GpuError {
    #[error("no NVIDIA driver: {0}")]
    NoDriver(String),
    #[error("NVRTC (the CUDA run-time compiler) is not available: {0}")]
    NoNvrtc(String),
    #[error("{0}")]
    Compile(String),
    #[error("CUDA: {0}")]
    Cuda(String),
    #[error("GPU pre-processing: {0}")]
    Input(String),
}

/// One CUDA device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub memory_bytes: usize,
}

/// What this process can use of the GPU path.
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    /// The CUDA devices, or why there are none (driver library absent, `cuInit` failed, no device).
    pub driver: Result<Vec<DeviceInfo>, String>,
    /// NVRTC's version, or why it cannot be loaded.
    pub nvrtc: Result<(i32, i32), String>,
}

impl Availability {
    /// The devices when at least one is usable.
    pub fn devices(&self) -> Option<&[DeviceInfo]> {
        self.driver.as_deref().ok().filter(|d| !d.is_empty())
    }
}

/// Probes the CUDA driver and NVRTC once per process; the first call after a probe that found the
/// driver missing issues one warning naming it.
pub fn probe() -> &'static Availability {
    let a = probe_quietly();
    if let Err(e) = &a.driver {
        crate::runtime::warn_once(
            "gpu:no-driver",
            &format!("no NVIDIA GPU is usable ({e}); the GPU path uses the CPU instead"),
        );
    }
    a
}

/// As [`probe`], without the warning: for checks that report through something else (e.g. a
/// configuration error, or the execution provider's own fallback warning).
pub fn probe_quietly() -> &'static Availability {
    static PROBE: OnceLock<Availability> = OnceLock::new();
    PROBE.get_or_init(|| Availability {
        driver: probe_driver(),
        nvrtc: probe_nvrtc(),
    })
}

fn probe_driver() -> Result<Vec<DeviceInfo>, String> {
    // SAFETY: only tries to open the library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("the CUDA driver library (libcuda.so.1) is not installed".into());
    }
    cudarc::driver::result::init().map_err(|e| format!("cuInit failed: {e}"))?;
    let n = cudarc::driver::CudaContext::device_count()
        .map_err(|e| format!("counting CUDA devices: {e}"))?;
    if n <= 0 {
        return Err("the CUDA driver reports no device".into());
    }
    let mut devices = Vec::new();
    for ordinal in 0..n as usize {
        let ctx = cudarc::driver::CudaContext::new(ordinal)
            .map_err(|e| format!("CUDA device {ordinal}: {e}"))?;
        devices.push(DeviceInfo {
            ordinal,
            name: ctx.name().unwrap_or_default(),
            compute_capability: ctx.compute_capability().unwrap_or((0, 0)),
            memory_bytes: ctx.total_mem().unwrap_or(0),
        });
    }
    Ok(devices)
}

/// Where NVRTC may be besides the loader's path: `$VIGIL_NVRTC`, then the wheel in Vigil's venv.
pub fn nvrtc_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("VIGIL_NVRTC") {
        v.push(PathBuf::from(p));
    }
    // The venv `scripts/setup.sh` makes: `$VIGIL_CACHE/venv`, by default `~/.cache/vigil/venv`.
    let venv = std::env::var_os("VIGIL_CACHE")
        .filter(|c| !c.is_empty())
        .map(|c| PathBuf::from(c).join("venv"))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vigil/venv")));
    if let Some(venv) = venv
        && let Ok(libs) = std::fs::read_dir(venv.join("lib"))
    {
        for py in libs.flatten() {
            let dir = py.path().join("site-packages/nvidia/cuda_nvrtc/lib");
            v.push(dir.join("libnvrtc.so.12"));
        }
    }
    v
}

fn probe_nvrtc() -> Result<(i32, i32), String> {
    // SAFETY: only tries to open the library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        // Open a known file by its path; the loader then resolves cudarc's `libnvrtc.so.12` to it.
        let found = nvrtc_candidates().into_iter().find(|p| p.is_file());
        let Some(path) = found else {
            return Err(format!(
                "libnvrtc.so.12 is not on the loader's path, and neither $VIGIL_NVRTC nor {} holds it",
                nvrtc_candidates()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| e.to_string())?;
        // SAFETY: dlopen of a file path; the handle is kept for the life of the process.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        // SAFETY: as above.
        if h.is_null() || !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(format!("{} could not be loaded", path.display()));
        }
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); two out-parameters.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| format!("nvrtcVersion failed: {e:?}"))?;
    Ok((major, minor))
}

/// NVRTC's version when it can be used (probed once).
pub fn nvrtc_available() -> Result<(i32, i32), GpuError> {
    probe().nvrtc.clone().map_err(GpuError::NoNvrtc)
}

/// The usable devices, or the reason there are none.
pub fn devices() -> Result<&'static [DeviceInfo], GpuError> {
    match &probe().driver {
        Ok(d) => Ok(d),
        Err(e) => Err(GpuError::NoDriver(e.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reports_reasons_and_never_panics() {
        let a = probe();
        match &a.driver {
            Ok(d) => assert!(!d.is_empty()),
            Err(e) => {
                assert!(!e.is_empty());
                assert!(matches!(devices(), Err(GpuError::NoDriver(_))));
                assert!(
                    crate::runtime::issued_warnings()
                        .iter()
                        .any(|w| w.contains("no NVIDIA GPU is usable")),
                    "{:?}",
                    crate::runtime::issued_warnings()
                );
            }
        }
        // Probing again gives the same answer and no second warning.
        let before = crate::runtime::issued_warnings().len();
        assert_eq!(probe(), a);
        assert_eq!(crate::runtime::issued_warnings().len(), before);
    }
}
