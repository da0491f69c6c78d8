//! IDX datasets, raw or gzip: any bytes give an array or an error, never a panic
//! or an allocation the file cannot back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgml::data::idx::parse_idx("fuzz", data);
});
