//! Embedding wgml in a program that already owns a wgpu device: the host creates
//! the device and its buffers, hands wgml a clone of the device and queue, and runs
//! a wgml kernel (a fused matmul + bias + ReLU) directly on the host's buffers.
//!
//! `cargo run --release --example embed`

use wgml::kernels::matmul::{Activation, MatmulDesc, matmul};
use wgml::{Context, DType, Tensor};

fn main() -> wgml::Result<()> {
    // The host application's own wgpu set-up.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .map_err(|e| wgml::Error::invalid(format!("no adapter: {e}")))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))
        .map_err(|e| wgml::Error::invalid(format!("no device: {e}")))?;
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let make = |label, floats: &[f32]| {
        let b = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (floats.len() * 4) as u64,
            usage,
            mapped_at_creation: false,
        });
        queue.write_buffer(&b, 0, bytemuck::cast_slice(floats));
        b
    };
    // x [2, 3], w [4, 3] (a Linear layer's [out, in]), bias [4], y [2, 4].
    let x = make("x", &[1.0, 2.0, 3.0, -1.0, -2.0, -3.0]);
    let w = make("w", &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    let bias = make("bias", &[0.5, 0.5, 0.5, 0.5]);
    let y = make("y", &[0.0; 8]);

    // wgml shares the host's device and queue.
    let ctx = Context::from_device(adapter.get_info(), device.clone(), queue.clone());
    let xt = Tensor::from_buffer(x, &[2, 3], DType::F32)?;
    let wt = Tensor::from_buffer(w, &[4, 3], DType::F32)?;
    let bt = Tensor::from_buffer(bias, &[4], DType::F32)?;
    let yt = Tensor::from_buffer(y, &[2, 4], DType::F32)?;
    let mut desc = MatmulDesc::new(2, 4, 3);
    desc.trans_b = true;
    desc.activation = Activation::Relu;
    let d = matmul(&ctx, &desc, &xt, &wt, Some(&bt), &yt)?;
    ctx.run_all(&d)?;
    // y = relu(x · wᵀ + bias): [[1.5, 2.5, 3.5, 6.5], [0, 0, 0, 0]]
    println!("y = {:?}", yt.to_f32(&ctx)?);
    Ok(())
}
