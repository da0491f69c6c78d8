//! Device selection and limits: what a user gets when there is no adapter, when the
//! named adapter or backend does not exist, and when a tensor is larger than the
//! device lets one binding be. Each is an `Error` that says what to do, never a panic.

use wgml::gpu::ContextOptions;
use wgml::{Context, DType, Error, Tensor};

use crate::common::*;

fn options(backend: Option<&str>, adapter: Option<&str>) -> ContextOptions {
    ContextOptions {
        backend: backend.map(String::from),
        adapter: adapter.map(String::from),
    }
}

#[test]
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
fn no_adapter_on_a_backend_this_machine_lacks_is_an_error() {
    // Metal exists only on Apple systems: here it finds no adapter at all.
    match Context::new(&options(Some("metal"), None)) {
        Err(e @ Error::NoAdapter { .. }) => {
            let msg = e.to_string();
            assert!(msg.to_lowercase().contains("adapter"), "{msg}");
        }
        Err(other) => panic!("expected NoAdapter, got {other:?}"),
        Ok(ctx) => panic!("unexpected adapter {}", ctx.info.name),
    }
}

#[test]
fn unknown_backend_name_is_an_error_listing_the_choices() {
    let e = match Context::new(&options(Some("cuda"), None)) {
        Err(e) => e,
        Ok(c) => panic!("cuda is not a wgpu backend, yet got adapter {}", c.info.name),
    };
    let msg = e.to_string();
    assert!(msg.contains("cuda") && msg.contains("vulkan"), "{msg}");
}

#[test]
fn adapter_name_that_matches_nothing_lists_the_adapters_found() {
    let (_g, ctx) = gpu();
    match Context::new(&options(None, Some("no-such-gpu-xyz"))) {
        Err(e @ Error::AdapterNotFound { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("no-such-gpu-xyz") && msg.contains(&ctx.info.name),
                "{msg}"
            );
        }
        Err(other) => panic!("expected AdapterNotFound, got {other:?}"),
        Ok(c) => panic!("unexpected adapter {}", c.info.name),
    }
}

#[test]
fn tensor_larger_than_a_binding_is_an_error_naming_the_limit() {
    let (_g, ctx) = gpu();
    let limit = ctx.max_binding_bytes();
    let elems = (limit / 4 + 1) as usize;
    match Tensor::zeros(ctx, &[elems], DType::F32) {
        Err(e @ Error::TooLarge { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&limit.to_string()), "{msg}");
        }
        Err(other) => panic!("expected TooLarge, got {other:?}"),
        Ok(_) => panic!("a {elems}-element tensor exceeds the {limit}-byte binding limit"),
    }
}

/// Readback as a future the host drives: nothing completes it until the host
/// polls its device (wgml polls on no thread of its own), then it holds the
/// values; the blocking convenience gives the same.
#[test]
fn readback_is_a_future_the_host_drives() {
    use std::future::Future;
    use std::task::{Context as TaskContext, Poll, Waker};
    let (_g, ctx) = crate::common::gpu();
    let values = [1.5f32, -2.0, 3.25, 0.0, 7.0];
    let t = wgml::Tensor::from_f32(ctx, &values, &[5]).unwrap();
    let mut pending = Box::pin(t.read_async::<f32>(ctx).unwrap());
    let mut cx = TaskContext::from_waker(Waker::noop());
    assert!(
        pending.as_mut().poll(&mut cx).is_pending(),
        "resolved before the host polled"
    );
    ctx.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    match pending.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(v)) => assert_eq!(v, values),
        other => panic!("after the host's poll: {other:?}"),
    }
    assert_eq!(t.to_f32(ctx).unwrap(), values);
    // Empty tensors resolve at once.
    let empty = wgml::gpu::read_buffer_async::<f32>(ctx, &t.buffer, 0).unwrap();
    assert_eq!(pollster::block_on(empty).unwrap(), Vec::<f32>::new());
}
