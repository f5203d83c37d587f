//! GStreamer frames as `vigil_engine::frame` sees them: the [`FrameLayout`] of a mapped buffer (its
//! `GstVideoMeta` or else its caps), and the [`YuvMatrix`] of the caps' colorimetry.

use vigil_engine::frame::{FrameFormat, FrameLayout, YuvMatrix, YuvStandard};

/// Vigil's name for `format`, when Vigil converts it itself (CPU) or on the GPU.
pub(crate) fn frame_format(format: gst_video::VideoFormat) -> Option<FrameFormat> {
    FrameFormat::from_name(format.to_str())
}

/// The fixed-point YUV → RGB matrix of `info`'s colorimetry; `None` for a matrix Vigil does not
/// define (those frames keep `gst_video::VideoConverter`). RGB formats get BT.601 (unused).
pub(crate) fn yuv_matrix(info: &gst_video::VideoInfo) -> Option<YuvMatrix> {
    if !info.is_yuv() {
        return Some(YuvMatrix::BT601);
    }
    let c = info.colorimetry();
    let standard = match c.matrix() {
        gst_video::VideoColorMatrix::Bt601 => YuvStandard::Bt601,
        gst_video::VideoColorMatrix::Bt709 => YuvStandard::Bt709,
        gst_video::VideoColorMatrix::Bt2020 => YuvStandard::Bt2020,
        gst_video::VideoColorMatrix::Unknown => {
            return Some(YuvMatrix::default_for(info.height()));
        }
        _ => return None,
    };
    Some(YuvMatrix::new(
        standard,
        c.range() == gst_video::VideoColorRange::Range0_255,
    ))
}

/// The layout of `buf`'s frame of `info` in its whole-buffer mapping: plane offsets and strides from
/// its `GstVideoMeta` when it has one (decoders with padded planes), else from the caps.
pub(crate) fn layout_of(
    info: &gst_video::VideoInfo,
    buf: &gst::BufferRef,
    format: FrameFormat,
) -> FrameLayout {
    let (offsets, strides): (Vec<usize>, Vec<usize>) = match buf.meta::<gst_video::VideoMeta>() {
        Some(m) => (
            m.offset().to_vec(),
            m.stride().iter().map(|&s| s.max(0) as usize).collect(),
        ),
        None => (
            info.offset().to_vec(),
            info.stride().iter().map(|&s| s.max(0) as usize).collect(),
        ),
    };
    let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(0);
    FrameLayout {
        format,
        width: info.width(),
        height: info.height(),
        stride: at(&strides, 0),
        stride_uv: at(&strides, 1),
        u_offset: at(&offsets, 1).saturating_sub(at(&offsets, 0)),
        v_offset: at(&offsets, 2).saturating_sub(at(&offsets, 0)),
        frame_bytes: buf.size().saturating_sub(at(&offsets, 0)),
    }
}

/// The plane-0 offset of `buf`'s frame in its whole-buffer mapping.
pub(crate) fn first_offset(info: &gst_video::VideoInfo, buf: &gst::BufferRef) -> usize {
    match buf.meta::<gst_video::VideoMeta>() {
        Some(m) => m.offset().first().copied().unwrap_or(0),
        None => info.offset().first().copied().unwrap_or(0),
    }
}
