//! What a pipeline is built from: a WGSL module ([`ShaderSource`]) and one of its
//! entry points ([`Kernel`]). The kernel library (`crate::kernels`) names its
//! shaders and entry points with these; this layer only compiles and caches them.

use std::hash::{Hash, Hasher};

use crate::error::{Error, Result};

/// A WGSL module: its name (in messages and as its identity: two sources with one
/// name are one module) and its text.
#[derive(Clone, Copy, Debug)]
pub struct ShaderSource {
    /// Module name, for messages and as the module's identity.
    pub name: &'static str,
    /// The WGSL source text.
    pub wgsl: &'static str,
}

impl PartialEq for ShaderSource {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ShaderSource {}

impl Hash for ShaderSource {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialOrd for ShaderSource {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShaderSource {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(other.name)
    }
}

/// One entry point of one shader module: what a pipeline is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// The module the entry point is in.
    pub shader: ShaderSource,
    /// Name of the entry point (`@compute fn`).
    pub entry: &'static str,
    /// Name in profiles; the entry point unless set with [`Kernel::labelled`].
    label: &'static str,
}

impl Kernel {
    /// Entry point `entry` of `shader`, labelled with the entry point's name in profiles.
    pub const fn new(shader: ShaderSource, entry: &'static str) -> Kernel {
        Kernel {
            shader,
            entry,
            label: entry,
        }
    }

    /// The same kernel shown as `label` in profiles (e.g. an entry point built
    /// with another epilogue).
    pub const fn labelled(self, label: &'static str) -> Kernel {
        Kernel { label, ..self }
    }

    /// Name for profiles.
    pub fn label(self) -> &'static str {
        self.label
    }
}

/// The naga module of `shader` and its validation info (which globals each entry
/// point uses, among the rest). No GPU needed.
pub fn parse_wgsl(shader: ShaderSource) -> Result<(naga::Module, naga::valid::ModuleInfo)> {
    let module = naga::front::wgsl::parse_str(shader.wgsl).map_err(|e| Error::Shader {
        shader: shader.name,
        message: e.emit_to_string(shader.wgsl),
    })?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| Error::Shader {
        shader: shader.name,
        message: e.emit_to_string(shader.wgsl),
    })?;
    Ok((module, info))
}
