//! Every WGSL file parses and validates with naga. Needs no GPU.

use wgml::kernels::{Shader, validate_wgsl};

#[test]
fn every_shader_validates_with_naga() {
    let mut failures = Vec::new();
    for shader in Shader::ALL {
        if let Err(e) = validate_wgsl(shader) {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "invalid WGSL:\n{}", failures.join("\n"));
}
