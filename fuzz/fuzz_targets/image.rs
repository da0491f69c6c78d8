//! Image-folder images and `wgml predict` inputs: decoded with allocations
//! bounded by the file's size, then resized as the folders' images are.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = wgml::data::image_folder::decode(Path::new("fuzz"), data) {
        let _ = img.resize_exact(8, 8, image::imageops::FilterType::Triangle);
    }
});
