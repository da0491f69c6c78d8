//! Checkpoints (and training backups, the same safetensors container): the file,
//! its architecture JSON and the described model's shapes, as read before
//! anything reaches the GPU.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = wgml::checkpoint::from_bytes("fuzz", data) else {
        return;
    };
    if let Ok(Some(a)) = c.architecture(Path::new("fuzz")) {
        let _ = a.model.summary(a.loss);
    }
    for key in ["settings", "progress"] {
        if let Some(text) = c.metadata.get(key) {
            let _ = serde_json::from_str::<serde_json::Value>(text);
        }
    }
});
