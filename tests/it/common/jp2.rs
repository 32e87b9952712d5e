//! A lossless JPEG 2000 writer for test archives (OpenJPEG, reversible 5/3 wavelet): a
//! grey image written here decodes to exactly its pixels, so a test server can serve a
//! synthetic archive as Helioviewer-style JP2s.

use openjpeg_sys as opj;
use std::ffi::CString;
use std::path::Path;

/// Writes an 8-bit grey image (`w * h` bytes, row-major) as a lossless JP2 file.
pub fn write_lossless(path: &Path, pixels: &[u8], w: u32, h: u32) {
    assert_eq!(pixels.len(), (w * h) as usize, "pixel count");
    let name = CString::new(path.to_str().expect("UTF-8 path")).unwrap();
    // SAFETY: every pointer comes from OpenJPEG and is checked before use; the image's one
    // component holds w * h samples, filled from `pixels`; all objects are destroyed once.
    unsafe {
        let mut params: opj::opj_cparameters_t = std::mem::zeroed();
        opj::opj_set_default_encoder_parameters(&mut params);
        let mut comp = opj::opj_image_cmptparm_t {
            dx: 1,
            dy: 1,
            w,
            h,
            x0: 0,
            y0: 0,
            prec: 8,
            bpp: 8,
            sgnd: 0,
        };
        let image = opj::opj_image_create(1, &mut comp, opj::COLOR_SPACE::OPJ_CLRSPC_GRAY);
        assert!(!image.is_null(), "opj_image_create");
        (*image).x0 = 0;
        (*image).y0 = 0;
        (*image).x1 = w;
        (*image).y1 = h;
        let data = std::slice::from_raw_parts_mut((*(*image).comps).data, pixels.len());
        for (d, &p) in data.iter_mut().zip(pixels) {
            *d = p as i32;
        }
        let codec = opj::opj_create_compress(opj::CODEC_FORMAT::OPJ_CODEC_JP2);
        assert!(!codec.is_null(), "opj_create_compress");
        assert!(
            opj::opj_setup_encoder(codec, &mut params, image) != 0,
            "setup"
        );
        let stream = opj::opj_stream_create_default_file_stream(name.as_ptr(), 0);
        assert!(!stream.is_null(), "cannot open {}", path.display());
        let ok = opj::opj_start_compress(codec, image, stream) != 0
            && opj::opj_encode(codec, stream) != 0
            && opj::opj_end_compress(codec, stream) != 0;
        opj::opj_stream_destroy(stream);
        opj::opj_destroy_codec(codec);
        opj::opj_image_destroy(image);
        assert!(ok, "JPEG 2000 encoding of {} failed", path.display());
    }
}
