//! Pipelines and layouts (`src/gpu/pipeline.rs`): layouts read from the WGSL,
//! and deferred builds whose pipelines compile together when the build returns.
//! These tests make their own contexts: they count pipeline creations from an
//! empty cache.

use wgml::gpu::{Dispatch, group0_bindings};
use wgml::kernels::{Shader, elementwise};
use wgml::{Context, ContextOptions, Error, Tensor};

use crate::common::*;

fn fresh_context() -> Context {
    Context::new(&ContextOptions::default())
        .expect("a wgpu adapter (lavapipe: apt-get install mesa-vulkan-drivers)")
}

fn compiled(d: &Dispatch) -> bool {
    d.pipeline.get().is_some()
}

#[test]
fn layouts_hold_exactly_the_buffers_each_entry_point_uses() {
    let scale = group0_bindings(Shader::Elementwise.module()).unwrap();
    let (_, entries) = scale.iter().find(|(name, _)| name == "scale").unwrap();
    let summary: Vec<(u32, Option<bool>)> = entries
        .iter()
        .map(|e| match e.ty {
            wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                ..
            } => (e.binding, None),
            wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                ..
            } => (e.binding, Some(read_only)),
            ref other => panic!("unexpected binding type {other:?}"),
        })
        .collect();
    // params (uniform), y (written), a (read); b is declared but scale never uses it.
    assert_eq!(summary, vec![(0, None), (1, Some(false)), (2, Some(true))]);
    for shader in Shader::ALL {
        let all = group0_bindings(shader.module()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!all.is_empty(), "{} has no entry point", shader.name());
        for (entry, entries) in all.iter() {
            assert!(!entries.is_empty(), "{}::{entry} binds nothing", shader.name());
        }
    }
}

#[test]
fn deferred_dispatches_get_their_pipelines_when_the_build_returns() {
    let (_guard, _) = gpu();
    let ctx = fresh_context();
    let other = fresh_context();
    let mut r = rng(71);
    let xs = uniform(&mut r, 1000, -1.0, 1.0);
    let x = Tensor::from_f32(&ctx, &xs, &[1000]).unwrap();
    let y = nan_tensor(&ctx, &[1000]);
    let z = nan_tensor(&ctx, &[1000]);
    let before = ctx.counters().pipelines_created;

    let (d, other_d) = ctx
        .deferring_pipelines(|| {
            let d = vec![
                elementwise::scale(&ctx, &x, 2.0, &y)?,
                elementwise::axpy(&ctx, 1.0, &x, &y)?,
                elementwise::scale(&ctx, &x, -1.0, &z)?,
            ];
            // A nested deferral joins this one.
            let nested = ctx.deferring_pipelines(|| elementwise::scale(&ctx, &x, 0.5, &z))?;
            assert!(
                d.iter().chain([&nested]).all(|d| !compiled(d)),
                "compiled inside the build"
            );
            assert_eq!(
                ctx.counters().pipelines_created,
                before,
                "nothing compiles inside the build"
            );
            // Another context's dispatch inside compiles at once, as outside.
            let ox = Tensor::from_f32(&other, &xs, &[1000])?;
            let oy = nan_tensor(&other, &[1000]);
            let other_d = elementwise::scale(&other, &ox, 3.0, &oy)?;
            assert!(compiled(&other_d));
            Ok((d, (other_d, oy)))
        })
        .unwrap();

    assert!(d.iter().all(compiled));
    // Two distinct pipelines (scale, axpy), each compiled once and shared.
    assert_eq!(ctx.counters().pipelines_created - before, 2);
    let (a, b) = (d[0].pipeline.get().unwrap(), d[2].pipeline.get().unwrap());
    assert!(std::sync::Arc::ptr_eq(a, b));

    ctx.run(&d.iter().collect::<Vec<_>>()).unwrap();
    let want_y: Vec<f32> = xs.iter().map(|v| 3.0 * v).collect();
    let want_z: Vec<f32> = xs.iter().map(|v| -v).collect();
    assert_close("y = 2x + x", &y.to_f32(&ctx).unwrap(), &want_y, 0.0, 1e-6);
    assert_close("z = -x", &z.to_f32(&ctx).unwrap(), &want_z, 0.0, 0.0);
    let (od, oy) = other_d;
    other.run(&[&od]).unwrap();
    let want_o: Vec<f32> = xs.iter().map(|v| 3.0 * v).collect();
    assert_close("other context", &oy.to_f32(&other).unwrap(), &want_o, 0.0, 1e-6);
}

#[test]
fn a_failed_build_or_compile_is_an_error_and_ends_the_deferral() {
    let (_guard, _) = gpu();
    let ctx = fresh_context();
    let x = Tensor::from_f32(&ctx, &[1.0, 2.0], &[2]).unwrap();
    let y = nan_tensor(&ctx, &[2]);
    let before = ctx.counters().pipelines_created;

    // The build fails: its error comes back and nothing is compiled.
    let e = ctx
        .deferring_pipelines(|| {
            elementwise::scale(&ctx, &x, 2.0, &y)?;
            Err::<(), _>(Error::invalid("the build gave up"))
        })
        .unwrap_err();
    assert!(e.to_string().contains("the build gave up"), "{e}");
    assert_eq!(ctx.counters().pipelines_created, before);

    // A pipeline that cannot compile (an override the shader does not declare).
    let bad = Shader::Elementwise.kernel("scale");
    let e = ctx
        .deferring_pipelines(|| {
            ctx.dispatch(
                bad,
                &[("NO_SUCH_OVERRIDE", 1.0)],
                &[0u32; 8],
                &[(1, &y.buffer), (2, &x.buffer)],
                [1, 1, 1],
            )
        })
        .unwrap_err();
    assert!(
        matches!(e, Error::Shader { .. }) && e.to_string().contains("scale"),
        "{e:?}"
    );

    // The deferral ended with the errors: a dispatch made now compiles at once.
    let d = elementwise::scale(&ctx, &x, 2.0, &y).unwrap();
    assert!(compiled(&d));
    ctx.run(&[&d]).unwrap();
    assert_eq!(y.to_f32(&ctx).unwrap(), vec![2.0, 4.0]);
}

/// Running a dispatch inside its own deferral compiles what is queued so far
/// instead of failing; the deferral goes on.
#[test]
fn running_inside_a_deferral_compiles_what_is_queued() {
    let (_guard, _) = gpu();
    let ctx = fresh_context();
    let x = Tensor::from_f32(&ctx, &[1.0, -2.0], &[2]).unwrap();
    let y = nan_tensor(&ctx, &[2]);
    let later = ctx
        .deferring_pipelines(|| {
            let d = elementwise::scale(&ctx, &x, 3.0, &y)?;
            assert!(!compiled(&d));
            ctx.run(&[&d])?;
            assert!(compiled(&d));
            elementwise::axpy(&ctx, 1.0, &x, &y)
        })
        .unwrap();
    assert!(compiled(&later));
    ctx.run(&[&later]).unwrap();
    assert_eq!(y.to_f32(&ctx).unwrap(), vec![4.0, -8.0]);
}

#[test]
fn an_unknown_entry_point_is_an_error_naming_it() {
    let (_guard, ctx) = gpu();
    let x = Tensor::from_f32(ctx, &[1.0], &[1]).unwrap();
    let e = ctx
        .dispatch(
            Shader::Elementwise.kernel("no_such_entry"),
            &[],
            &[0u32; 8],
            &[(1, &x.buffer)],
            [1, 1, 1],
        )
        .unwrap_err();
    assert!(e.to_string().contains("no_such_entry"), "{e}");
}
