//! Pipeline cache: one compute pipeline per (kernel, override constants), created
//! once and shared. Shader modules are created once per shader file.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::Kernel;

/// Cache key: the kernel and its override constants (values as f64 bit patterns).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    kernel: Kernel,
    constants: Vec<(&'static str, u64)>,
}

impl Context {
    /// The compute pipeline of `kernel` with WGSL `override` constants set to
    /// `constants`; created on first use, then served from the cache.
    pub fn pipeline(
        &self,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = PipelineKey {
            kernel,
            constants: constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        };
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(kernel)?;
        let label = format!("{}::{}", kernel.shader.name(), kernel.entry);
        let pipeline = self
            .scoped(&format!("creating pipeline {label} {constants:?}"), || {
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(&label),
                        layout: None,
                        module: &module,
                        entry_point: Some(kernel.entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants,
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: None,
                    })
            })
            .map_err(|e| match e {
                Error::Gpu { message, .. } => Error::Shader {
                    shader: kernel.shader.name(),
                    message: format!("entry point {}: {message}", kernel.entry),
                },
                other => other,
            })?;
        self.counters.pipelines_created.fetch_add(1, Ordering::Relaxed);
        let pipeline = Arc::new(pipeline);
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, kernel: Kernel) -> Result<Arc<wgpu::ShaderModule>> {
        let shader = kernel.shader;
        if let Some(m) = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&shader)
        {
            return Ok(m.clone());
        }
        let module = self
            .scoped(&format!("compiling shader {}", shader.name()), || {
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name()),
                    source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                })
            })
            .map_err(|e| Error::Shader {
                shader: shader.name(),
                message: e.to_string(),
            })?;
        let module = Arc::new(module);
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shader, module.clone());
        Ok(module)
    }
}
