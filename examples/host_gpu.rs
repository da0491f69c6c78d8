//! A host program that owns its wgpu device and uses wgml as its learning engine:
//! it trains the MNIST MLP on its own device (following the run through a
//! callback, wgml printing nothing), saves it, loads it back from the checkpoint
//! alone, then classifies a batch of digits that sit in one of its own buffers:
//! wgml's inference and the host's own compute pass (an arg-max over wgml's output
//! buffer) go into one command encoder of the host's, submitted once; the host
//! polls its device itself and reads only the final classes.
//!
//! `cargo run --release --example host_gpu`

use wgml::checkpoint;
use wgml::data::Dataset;
use wgml::nn::zoo;
use wgml::train::{Callback, Control, EpochStats, FitConfig, fit_with};
use wgml::{Context, Result};

/// The host's own progress display.
struct Progress;

impl Callback for Progress {
    fn on_epoch_end(&mut self, stats: &EpochStats, epochs: usize) -> Control {
        println!(
            "host: epoch {}/{epochs}, loss {:.4}, accuracy {:.4}",
            stats.epoch,
            stats.loss,
            stats.accuracy.unwrap_or(0.0)
        );
        Control::Continue
    }
}

/// The host's own kernel: the arg-max of each row of `probs` (`n × 10`).
const ARGMAX: &str = r#"
@group(0) @binding(0) var<storage, read> probs: array<f32>;
@group(0) @binding(1) var<storage, read_write> classes: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let n = arrayLength(&classes);
    if (id.x >= n) {
        return;
    }
    var best = 0u;
    for (var j = 1u; j < 10u; j++) {
        if (probs[id.x * 10u + j] > probs[id.x * 10u + best]) {
            best = j;
        }
    }
    classes[id.x] = best;
}
"#;

fn main() -> Result<()> {
    // The host application's own wgpu set-up.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .map_err(|e| wgml::Error::invalid(format!("no adapter: {e}")))?;
    let info = adapter.get_info();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .map_err(|e| wgml::Error::invalid(format!("no device: {e}")))?;
    let ctx = Context::from_device(info, device.clone(), queue.clone());

    // Train on the host's device; the host shows the progress.
    let data = Dataset::mnist_10k()?;
    let recipe = zoo::mlp();
    let mut model = recipe
        .model
        .compile(&ctx, recipe.loss, recipe.optimizer.clone(), 1)?;
    let cfg = FitConfig {
        epochs: 2,
        verbose: false,
        ..recipe.fit.clone()
    };
    fit_with(&mut model, &ctx, &data.train, &cfg, &mut [&mut Progress])?;

    // Save, and load back from the checkpoint alone.
    let path = std::env::temp_dir().join("wgml-host-gpu-mlp.safetensors");
    checkpoint::save_model(&path, &ctx, &model, "mlp", &data.class_names)?;
    let (mut loaded, _) = checkpoint::load_model(&ctx, &path)?;

    // A batch of test digits in a buffer of the host's.
    let n = 16;
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let buffer = |label, bytes: usize, usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes as u64,
            usage,
            mapped_at_creation: false,
        })
    };
    let images = buffer("host images", n * 784 * 4, usage);
    queue.write_buffer(&images, 0, bytemuck::cast_slice(&data.test.x[..n * 784]));
    let probs = buffer("host probabilities", n * 10 * 4, usage);
    let classes = buffer("host classes", n * 4, usage);
    let readback = buffer(
        "host readback",
        n * 4,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    );

    // The host's own pipeline.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("host argmax"),
        source: wgpu::ShaderSource::Wgsl(ARGMAX.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("host argmax"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("host argmax"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: probs.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: classes.as_entire_binding(),
            },
        ],
    });

    // One encoder: wgml's inference, then the host's pass over its output.
    let mut encoder = device.create_command_encoder(&Default::default());
    loaded.predict_on_buffers(&ctx, &images, n, &probs, Some(&mut encoder))?;
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(n.div_ceil(64) as u32, 1, 1);
    }
    encoder.copy_buffer_to_buffer(&classes, 0, &readback, 0, (n * 4) as u64);
    queue.submit(Some(encoder.finish()));

    // The host polls its own device and reads only the classes.
    readback
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("mapping the classes"));
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| wgml::Error::invalid(format!("polling: {e}")))?;
    let view = readback
        .slice(..)
        .get_mapped_range()
        .map_err(|e| wgml::Error::invalid(format!("reading the classes: {e}")))?;
    let predicted: Vec<u32> = bytemuck::cast_slice(&view).to_vec();
    drop(view);
    let truth = match &data.test.y {
        wgml::data::Targets::Classes { labels, .. } => labels[..n].to_vec(),
        _ => unreachable!("MNIST has class labels"),
    };
    let right = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
    println!("host: predicted {predicted:?}");
    println!("host: true      {truth:?}");
    println!("host: {right} of {n} right");
    std::fs::remove_file(&path).ok();
    Ok(())
}
