//! JSON model descriptions (`wgml train --model FILE.json`): parsed and their
//! shapes and sizes checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = serde_json::from_str::<wgml::checkpoint::Architecture>(text) {
        let _ = a.model.summary(a.loss);
    }
});
