//! A GPU that goes away in the middle of training (driver reset, GPU removed;
//! here `wgpu::Device::destroy` from another thread): the training returns
//! `Error::DeviceLost`, never panics or hangs, every later call on that context
//! says the same, and the run started again on a new context resumes from its
//! backup to the weights of the run that was never interrupted.

use std::time::{Duration, Instant};

use wgml::data::Dataset;
use wgml::kernels::optim::Optimizer;
use wgml::nn::{Layer, LayerActivation as A, Loss, Sequential};
use wgml::train::{Backup, FitConfig, fit};
use wgml::{Context, ContextOptions, DType, Error, Tensor};

use crate::common::*;

fn context() -> Context {
    Context::new(&ContextOptions::default()).expect("a wgpu adapter (apt-get install mesa-vulkan-drivers)")
}

fn weights(model: &wgml::nn::Model, ctx: &Context) -> Vec<Vec<f32>> {
    model
        .store
        .params
        .iter()
        .map(|p| p.value.to_f32(ctx).unwrap())
        .collect()
}

#[test]
fn a_lost_device_is_an_error_and_the_run_resumes_on_a_new_context() {
    // Holds a slot of the pool, so this test's own contexts do not crowd the others.
    let (_g, _) = gpu();
    let data = Dataset::two_blobs(9);
    let spec = Sequential::new(&[2])
        .add(Layer::dense(32, A::Relu))
        .add(Layer::dense(1, A::Sigmoid));
    let dir = fresh_dir("device-lost");
    // Many short epochs: the device goes away in the middle of the run.
    let cfg = |backup: Option<Backup>| FitConfig {
        epochs: 200,
        batch_size: 4,
        verbose: false,
        backup,
        ..FitConfig::default()
    };
    let compile = |ctx: &Context| {
        spec.compile(ctx, Loss::BinaryCrossentropy, Optimizer::sgd(0.05, 0.9), 3)
            .unwrap()
    };

    let whole_ctx = context();
    let mut whole = compile(&whole_ctx);
    let start = Instant::now();
    fit(&mut whole, &whole_ctx, &data.train, &cfg(None)).unwrap();
    let run_time = start.elapsed();
    let want = weights(&whole, &whole_ctx);

    let lost_ctx = context();
    let mut lost = compile(&lost_ctx);
    let backup = Backup::new(&dir);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            // Once an epoch is backed up, a little later: mid-epoch, mid-run.
            let give_up = Instant::now() + Duration::from_secs(60);
            while !backup.path().exists() && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(run_time / 5);
            lost_ctx.device.destroy();
        });
        fit(&mut lost, &lost_ctx, &data.train, &cfg(Some(backup.clone())))
    });
    match result {
        Err(Error::DeviceLost { .. }) => {}
        other => panic!("training on a destroyed device gave {other:?} instead of DeviceLost"),
    }
    // Everything after says the same, promptly.
    let t = Instant::now();
    assert!(matches!(
        Tensor::zeros(&lost_ctx, &[4], DType::F32),
        Err(Error::DeviceLost { .. })
    ));
    assert!(matches!(lost_ctx.wait(), Err(Error::DeviceLost { .. })));
    let again = fit(&mut lost, &lost_ctx, &data.train, &cfg(Some(backup.clone())));
    assert!(matches!(again, Err(Error::DeviceLost { .. })), "{again:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a lost device made calls hang"
    );
    let message = Error::DeviceLost {
        reason: "Destroyed".into(),
        message: String::new(),
    }
    .to_string();
    assert!(message.contains("new Context"), "{message}");

    // A new context, the same model and the same backup: the run continues.
    assert!(backup.path().exists(), "no epoch was backed up before the loss");
    let new_ctx = context();
    let mut resumed = compile(&new_ctx);
    fit(&mut resumed, &new_ctx, &data.train, &cfg(Some(backup))).unwrap();
    assert_eq!(resumed.step, whole.step);
    assert_eq!(weights(&resumed, &new_ctx), want);
    std::fs::remove_dir_all(&dir).ok();
}
