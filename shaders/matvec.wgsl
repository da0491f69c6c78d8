// Products of one or a few rows with a Dense weight (a key/value-cached decode
// step's projections): y[m, j] = act(sum_k x[m, k] * w[j, k] + bias[j]).
//
// Launcher: src/kernels/matvec.rs. CPU twin: src/reference/matvec.rs.
// Contract (all f32, dense row-major): x [M, K], w [N, K] (PyTorch Linear's
// [out, in]), bias [N] (read only with p.has_bias = 1), y [M, N] separate from
// the inputs. Activation kinds as shaders/activation.wgsl (prepended to this text).
//
// A general matmul spends its tile's rows on padding when M is 1 and gives too
// few workgroups to fill a GPU (N / 64 for N = 768); these kernels are bound by
// reading w once, which is what they are shaped for:
// - matvec_rows: one invocation per output column j, all M rows, k in order.
//   On CPU adapters the invocations of a workgroup run as SIMD lanes, each
//   streaming its own row of w; nothing is shared, no barrier.
// - matvec_lanes: LANES invocations per column stride over k together (adjacent
//   invocations read adjacent values of w: coalesced on a GPU), then a tree sum
//   in workgroup memory; 8 columns per workgroup of 256, so N / 8 workgroups.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    act: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64;       // matvec_rows
const LANES: u32 = 32u;       // matvec_lanes: invocations per column
const LANES_WG: u32 = 256u;   // matvec_lanes: invocations per workgroup

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn block_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

fn finish(m: u32, j: u32, sum: f32) {
    var v = sum;
    if (p.has_bias == 1u) {
        v += bias[j];
    }
    y[m * p.n + j] = apply_activation(p.act, v);
}

@compute @workgroup_size(WG)
fn matvec_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let j = block_index(wg, nwg) * WG + lid;
    if (j >= p.n) {
        return;
    }
    let row = j * p.k;
    for (var m = 0u; m < p.m; m++) {
        let xr = m * p.k;
        // Four independent sums, so the adds of one k do not wait on the last.
        var s = vec4<f32>(0.0);
        var k = 0u;
        for (; k + 4u <= p.k; k += 4u) {
            s += vec4<f32>(x[xr + k], x[xr + k + 1u], x[xr + k + 2u], x[xr + k + 3u]) *
                 vec4<f32>(w[row + k], w[row + k + 1u], w[row + k + 2u], w[row + k + 3u]);
        }
        var sum = (s.x + s.y) + (s.z + s.w);
        for (; k < p.k; k++) {
            sum += x[xr + k] * w[row + k];
        }
        finish(m, j, sum);
    }
}

var<workgroup> partial: array<f32, LANES_WG>;

@compute @workgroup_size(LANES_WG)
fn matvec_lanes(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let j = block_index(wg, nwg) * (LANES_WG / LANES) + lid / LANES;
    let row = j * p.k;
    for (var m = 0u; m < p.m; m++) {
        var sum = 0.0;
        if (j < p.n) {
            let xr = m * p.k;
            for (var k = lane; k < p.k; k += LANES) {
                sum += x[xr + k] * w[row + k];
            }
        }
        partial[lid] = sum;
        workgroupBarrier();
        for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
            if (lane < stride) {
                partial[lid] += partial[lid + stride];
            }
            workgroupBarrier();
        }
        if (lane == 0u && j < p.n) {
            finish(m, j, partial[lid]);
        }
        workgroupBarrier();
    }
}
