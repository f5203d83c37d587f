//! `VigilMeta`: the GStreamer buffer meta that carries [`FrameObjects`] between Vigil elements.
//!
//! API name `VigilMetaAPI`, tags `video` and `size`: it is copied by elements that copy metadata
//! (`videoconvert`, `queue`, `tee`, encoders' input) and **rescaled** by `videoscale` (boxes follow the
//! new frame size). Other transforms drop it.
//!
//! ```no_run
//! use gstvigil::meta::VigilMeta;
//! # fn f(buffer: &gst::BufferRef) {
//! if let Some(meta) = buffer.meta::<VigilMeta>() {
//!     for o in &meta.frame().objects {
//!         println!("{} {:.2} track {:?}", o.label, o.confidence, o.track_id);
//!     }
//! }
//! # }
//! ```

use gst::glib;
use gst::prelude::*;
use std::fmt;
use vigil_core::objects::FrameObjects;

#[repr(transparent)]
pub struct VigilMeta(imp::VigilMetaFfi);

// SAFETY: the meta only holds plain owned Rust data.
unsafe impl Send for VigilMeta {}
unsafe impl Sync for VigilMeta {}

impl VigilMeta {
    /// Attaches `frame` to `buffer`, replacing an existing `VigilMeta`.
    pub fn add(
        buffer: &mut gst::BufferRef,
        frame: FrameObjects,
    ) -> gst::MetaRefMut<'_, Self, gst::meta::Standalone> {
        if let Some(mut existing) = buffer.meta_mut::<VigilMeta>() {
            *existing.frame_mut() = frame;
            // Re-borrow as standalone through a lookup (the meta stays in place).
        } else {
            unsafe {
                let mut params = std::mem::ManuallyDrop::new(imp::VigilMetaParams { frame });
                gst::ffi::gst_buffer_add_meta(
                    buffer.as_mut_ptr(),
                    imp::meta_get_info(),
                    &mut *params as *mut imp::VigilMetaParams as glib::ffi::gpointer,
                );
            }
        }
        buffer.meta_mut::<VigilMeta>().expect("meta was just added")
    }

    pub fn frame(&self) -> &FrameObjects {
        &self.0.frame
    }

    pub fn frame_mut(&mut self) -> &mut FrameObjects {
        &mut self.0.frame
    }
}

unsafe impl MetaAPI for VigilMeta {
    type GstType = imp::VigilMetaFfi;

    fn meta_api() -> glib::Type {
        imp::meta_api_get_type()
    }
}

impl fmt::Debug for VigilMeta {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("VigilMeta")
            .field("frame", &self.0.frame)
            .finish()
    }
}

/// Returns a copy of the objects attached to `buffer`, if any.
pub fn frame_objects(buffer: &gst::BufferRef) -> Option<FrameObjects> {
    buffer.meta::<VigilMeta>().map(|m| m.frame().clone())
}

mod imp {
    use glib::translate::*;
    use gst::glib;
    use std::ptr;
    use std::sync::LazyLock;
    use vigil_core::objects::FrameObjects;

    pub(super) struct VigilMetaParams {
        pub frame: FrameObjects,
    }

    #[repr(C)]
    pub struct VigilMetaFfi {
        parent: gst::ffi::GstMeta,
        pub(super) frame: FrameObjects,
    }

    pub(super) fn meta_api_get_type() -> glib::Type {
        static TYPE: LazyLock<glib::Type> = LazyLock::new(|| unsafe {
            let tags = [c"video".as_ptr(), c"size".as_ptr(), ptr::null()];
            let t = from_glib(gst::ffi::gst_meta_api_type_register(
                c"VigilMetaAPI".as_ptr(),
                tags.as_ptr() as *mut *const _,
            ));
            assert_ne!(t, glib::Type::INVALID, "VigilMetaAPI registered twice");
            t
        });
        *TYPE
    }

    unsafe extern "C" fn init(
        meta: *mut gst::ffi::GstMeta,
        params: glib::ffi::gpointer,
        _buffer: *mut gst::ffi::GstBuffer,
    ) -> glib::ffi::gboolean {
        unsafe {
            let meta = &mut *(meta as *mut VigilMetaFfi);
            let frame = if params.is_null() {
                FrameObjects::default()
            } else {
                ptr::read(params as *const VigilMetaParams).frame
            };
            ptr::write(&mut meta.frame, frame);
        }
        true.into_glib()
    }

    unsafe extern "C" fn free(meta: *mut gst::ffi::GstMeta, _buffer: *mut gst::ffi::GstBuffer) {
        unsafe {
            let meta = &mut *(meta as *mut VigilMetaFfi);
            ptr::drop_in_place(&mut meta.frame);
        }
    }

    unsafe extern "C" fn transform(
        dest: *mut gst::ffi::GstBuffer,
        meta: *mut gst::ffi::GstMeta,
        _buffer: *mut gst::ffi::GstBuffer,
        type_: glib::ffi::GQuark,
        data: glib::ffi::gpointer,
    ) -> glib::ffi::gboolean {
        static COPY: LazyLock<glib::ffi::GQuark> =
            LazyLock::new(|| glib::Quark::from_str("gst-copy").into_glib());
        unsafe {
            let src = &*(meta as *const VigilMetaFfi);
            let mut frame = src.frame.clone();
            if type_ == *COPY {
                // plain copy
            } else if type_ == gst_video::ffi::gst_video_meta_transform_scale_get_quark()
                && !data.is_null()
            {
                let t = &*(data as *const gst_video::ffi::GstVideoMetaTransform);
                if t.out_info.is_null() {
                    return false.into_glib();
                }
                let out = &*t.out_info;
                frame.rescale(out.width.max(0) as u32, out.height.max(0) as u32);
            } else {
                return false.into_glib();
            }
            let mut params = std::mem::ManuallyDrop::new(VigilMetaParams { frame });
            // An existing meta on `dest` is replaced by the transformed one.
            let existing = gst::ffi::gst_buffer_get_meta(dest, meta_api_get_type().into_glib());
            if !existing.is_null() {
                gst::ffi::gst_buffer_remove_meta(dest, existing);
            }
            gst::ffi::gst_buffer_add_meta(
                dest,
                meta_get_info(),
                &mut *params as *mut VigilMetaParams as glib::ffi::gpointer,
            );
        }
        true.into_glib()
    }

    struct MetaInfo(ptr::NonNull<gst::ffi::GstMetaInfo>);
    unsafe impl Send for MetaInfo {}
    unsafe impl Sync for MetaInfo {}

    pub(super) fn meta_get_info() -> *const gst::ffi::GstMetaInfo {
        static INFO: LazyLock<MetaInfo> = LazyLock::new(|| unsafe {
            MetaInfo(
                ptr::NonNull::new(gst::ffi::gst_meta_register(
                    meta_api_get_type().into_glib(),
                    c"VigilMeta".as_ptr(),
                    std::mem::size_of::<VigilMetaFfi>(),
                    Some(init),
                    Some(free),
                    Some(transform),
                ) as *mut gst::ffi::GstMetaInfo)
                .expect("VigilMeta registered"),
            )
        });
        INFO.0.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::objects::{BBox, Object};

    #[test]
    fn add_read_copy_and_replace() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::with_size(16).unwrap();
        let mut f = FrameObjects::new(100, 100);
        f.objects
            .push(Object::new(0, "person", 0.5, BBox::new(1.0, 2.0, 3.0, 4.0)));
        {
            let b = buffer.get_mut().unwrap();
            VigilMeta::add(b, f.clone());
        }
        assert_eq!(frame_objects(&buffer).unwrap(), f);
        let copy = buffer.copy();
        assert_eq!(frame_objects(&copy).unwrap(), f);
        {
            let b = buffer.get_mut().unwrap();
            VigilMeta::add(b, FrameObjects::new(5, 5));
        }
        assert_eq!(buffer.iter_meta::<VigilMeta>().count(), 1);
        assert_eq!(frame_objects(&buffer).unwrap().width, 5);
    }
}
