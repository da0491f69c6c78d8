//! GPU tensors: a storage buffer with a shape and an element type.
//!
//! Tensors are dense and row-major (the last dimension is contiguous). Uploads go
//! through `queue.write_buffer`; downloads copy into a staging buffer and map it
//! asynchronously (a futures-intrusive channel carries the map result): as a
//! future the host awaits while it polls its device ([`read_buffer_async`]), or
//! waiting through [`Context::wait`] ([`read_buffer`]).

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::gpu::Context;

/// Element type of a tensor. Both are 4 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer.
    U32,
}

impl DType {
    /// The WGSL type name: `f32` or `u32`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    }
}

/// A dense row-major tensor resident on the GPU.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// The storage buffer; its first `numel() · 4` bytes hold the elements, row-major.
    pub buffer: wgpu::Buffer,
    shape: Vec<usize>,
    dtype: DType,
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Context {
    /// Creates a raw buffer (counted), checking it against the device's limits.
    pub fn create_buffer(&self, what: &str, bytes: u64, usage: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
        let limit = if usage.contains(wgpu::BufferUsages::STORAGE) {
            self.max_binding_bytes()
        } else {
            self.limits.max_buffer_size
        };
        if bytes > limit {
            return Err(Error::TooLarge {
                what: what.to_string(),
                bytes,
                limit,
            });
        }
        // wgpu rejects zero-sized bindings; keep at least one element.
        let size = bytes.max(4).next_multiple_of(4);
        let buffer = self.scoped(&format!("allocating {what} ({bytes} bytes)"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage,
                mapped_at_creation: false,
            })
        })?;
        self.counters.buffers_created.fetch_add(1, Ordering::Relaxed);
        Ok(buffer)
    }
}

const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// An uninitialised (zeroed by wgpu) tensor.
    pub fn zeros(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = (numel(shape) as u64).saturating_mul(4);
        let buffer = ctx.create_buffer(&format!("tensor {shape:?} {}", dtype.name()), bytes, TENSOR_USAGE)?;
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// Wraps a buffer that the host program created, so wgml kernels can read and
    /// write it in place. It must have STORAGE usage and hold `shape`'s elements.
    pub fn from_buffer(buffer: wgpu::Buffer, shape: &[usize], dtype: DType) -> Result<Tensor> {
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::invalid(format!(
                "a buffer wrapped as a tensor needs STORAGE usage, it has {:?}",
                buffer.usage()
            )));
        }
        let need = (numel(shape) as u64) * 4;
        if buffer.size() < need {
            return Err(Error::shape(
                "Tensor::from_buffer",
                format!(
                    "shape {shape:?} needs {need} bytes, the buffer has {}",
                    buffer.size()
                ),
            ));
        }
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// Uploads f32 data with the given shape.
    pub fn from_f32(ctx: &Context, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Self::from_pod(ctx, data, shape, DType::F32)
    }

    /// Uploads u32 data (labels, indices) with the given shape.
    pub fn from_u32(ctx: &Context, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        Self::from_pod(ctx, data, shape, DType::U32)
    }

    fn from_pod<T: bytemuck::Pod>(
        ctx: &Context,
        data: &[T],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::shape(
                "Tensor::upload",
                format!(
                    "{} values given for shape {shape:?} ({} elements)",
                    data.len(),
                    numel(shape)
                ),
            ));
        }
        let t = Tensor::zeros(ctx, shape, dtype)?;
        t.write(ctx, data)?;
        Ok(t)
    }

    /// Overwrites the whole tensor with `data` (queued; ordered before later submits).
    pub fn write<T: bytemuck::Pod>(&self, ctx: &Context, data: &[T]) -> Result<()> {
        self.write_at(ctx, 0, data)
    }

    /// Writes `data` starting at element `offset` (queued).
    pub fn write_at<T: bytemuck::Pod>(&self, ctx: &Context, offset: usize, data: &[T]) -> Result<()> {
        if std::mem::size_of::<T>() != 4 || offset + data.len() > self.numel() {
            return Err(Error::shape(
                "Tensor::write",
                format!(
                    "{} elements of {} bytes at offset {offset} do not fit a tensor of {} elements",
                    data.len(),
                    std::mem::size_of::<T>(),
                    self.numel()
                ),
            ));
        }
        ctx.check()?;
        if !data.is_empty() {
            ctx.queue
                .write_buffer(&self.buffer, (offset * 4) as u64, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements (the product of the shape).
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// The same buffer seen with another shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape(
                "Tensor::reshape",
                format!("cannot view {:?} as {shape:?}", self.shape),
            ));
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// The first `numel(shape)` elements of this tensor seen as `shape` (a
    /// row-major prefix: a table's first rows); errors if it has fewer.
    pub fn prefix(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) > self.numel() {
            return Err(Error::shape(
                "Tensor::prefix",
                format!("{shape:?} is not a prefix of {:?}", self.shape),
            ));
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// Errors unless this tensor has element type `dtype`.
    pub fn expect_dtype(&self, op: &'static str, what: &'static str, dtype: DType) -> Result<()> {
        if self.dtype != dtype {
            return Err(Error::DType {
                op,
                what,
                expected: dtype.name(),
                got: self.dtype.name(),
            });
        }
        Ok(())
    }

    /// Reads the tensor back as f32, waiting for the GPU (blocking convenience for
    /// [`Tensor::read_async`]).
    pub fn to_f32(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.expect_dtype("Tensor::to_f32", "the tensor", DType::F32)?;
        read_buffer(ctx, &self.buffer, self.numel())
    }

    /// Reads `len` f32 values from element `start` of the tensor back, waiting for
    /// the GPU: a part of a large output without copying the rest.
    pub fn to_f32_range(&self, ctx: &Context, start: usize, len: usize) -> Result<Vec<f32>> {
        self.expect_dtype("Tensor::to_f32_range", "the tensor", DType::F32)?;
        if start + len > self.numel() {
            return Err(Error::shape(
                "Tensor::to_f32_range",
                format!("values {start}..{} of a tensor of {}", start + len, self.numel()),
            ));
        }
        let pending = read_buffer_range_async(ctx, &self.buffer, start, len)?;
        ctx.wait()?;
        pollster::block_on(pending)
    }

    /// Reads the tensor back as u32 (blocking).
    pub fn to_u32(&self, ctx: &Context) -> Result<Vec<u32>> {
        self.expect_dtype("Tensor::to_u32", "the tensor", DType::U32)?;
        read_buffer(ctx, &self.buffer, self.numel())
    }

    /// Starts reading the tensor back (see [`read_buffer_async`]): the copy is
    /// submitted now, and the returned future resolves once the device has been
    /// polled past it. wgml does not poll for it: the host does, on its own
    /// schedule (`Device::poll`), or calls [`Context::wait`].
    pub fn read_async<T: bytemuck::Pod>(
        &self,
        ctx: &Context,
    ) -> Result<impl std::future::Future<Output = Result<Vec<T>>> + Send + 'static> {
        read_buffer_async(ctx, &self.buffer, self.numel())
    }
}

/// Reads the first `len` elements of type `T` of `buffer` back to the CPU,
/// waiting for the GPU: [`read_buffer_async`], then [`Context::wait`].
pub fn read_buffer<T: bytemuck::Pod>(ctx: &Context, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
    let pending = read_buffer_async(ctx, buffer, len)?;
    ctx.wait()?;
    pollster::block_on(pending)
}

/// Starts reading the first `len` elements of type `T` of `buffer` back to the
/// CPU: records and submits a copy into a staging buffer and asks to map it. The
/// future owns the staging buffer and resolves to the values once the map is
/// done, which happens when the device is polled after the copy finished; it
/// never polls, blocks or spawns a thread, so a host that drives its device from
/// its own loop (or shares it with other programs) keeps that control. Dropping
/// the future abandons the read.
pub fn read_buffer_async<T: bytemuck::Pod>(
    ctx: &Context,
    buffer: &wgpu::Buffer,
    len: usize,
) -> Result<impl std::future::Future<Output = Result<Vec<T>>> + Send + 'static> {
    read_buffer_range_async(ctx, buffer, 0, len)
}

/// [`read_buffer_async`] of the `len` elements from element `start` on.
fn read_buffer_range_async<T: bytemuck::Pod>(
    ctx: &Context,
    buffer: &wgpu::Buffer,
    start: usize,
    len: usize,
) -> Result<impl std::future::Future<Output = Result<Vec<T>>> + Send + 'static> {
    let bytes = (len * std::mem::size_of::<T>()) as u64;
    let offset = (start * std::mem::size_of::<T>()) as u64;
    let staging = if bytes == 0 {
        None
    } else {
        let staging = ctx.create_buffer(
            "readback staging",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
        ctx.submit(encoder.finish())?;
        Some(staging)
    };
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    if let Some(staging) = &staging {
        staging.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
    }
    Ok(async move {
        let Some(staging) = staging else {
            return Ok(Vec::new());
        };
        match receiver.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback(e.to_string())),
            None => return Err(Error::Readback("the map callback never ran".into())),
        }
        let view = staging
            .slice(..bytes)
            .get_mapped_range()
            .map_err(|e| Error::Readback(e.to_string()))?;
        let out = bytemuck::cast_slice::<u8, T>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    })
}
