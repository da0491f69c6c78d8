// Layer normalization over the last axis of a row-major [rows, cols] f32 matrix
// (Keras' LayerNormalization(axis=-1), PyTorch's nn.LayerNorm(cols)), and its
// uncentred form, RMS normalization (Keras' RMSNormalization, PyTorch's
// nn.RMSNorm, Llama's LlamaRMSNorm): p.centered = 0 takes the mean as 0 (so var is
// the mean square) and adds no shift.
//
// Launchers: src/kernels/layer_norm.rs. CPU twins: src/reference/layer_norm.rs.
//
// Each row belongs to a group of LANES consecutive invocations (a workgroup holds
// WG / LANES rows: short rows share a workgroup instead of leaving most of it idle;
// the row index comes from the linear workgroup id over a possibly folded grid and
// is bounds-checked). Each lane walks its strided share of the row and the lanes'
// sums are combined by a tree reduction in workgroup memory, so the result does not
// depend on timing.
//
//   layer_norm_forward:  mean = Σx / cols, var = Σ(x - mean)² / cols (two passes:
//                        no cancellation), rstd = 1 / sqrt(var + eps),
//                        y = (x - mean)·rstd·gamma + beta; stats[r] = (mean, rstd)
//                        kept for the backward pass.
//   layer_norm_backward: with x̂ = (x - mean)·rstd and g = dy·gamma,
//                        dx = rstd·(g - Σg / cols - x̂·Σ(g·x̂) / cols),
//                        dyx[r, j] = dy·x̂ (its column sums are gamma's gradient;
//                        dy's column sums are beta's). Uncentred, mean = 0 and
//                        the Σg / cols term (the mean's gradient) drops out.
//
// WG must be a power of two no larger than 256 (the scratch arrays), LANES a power
// of two no larger than WG.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    // 1: layer normalization; 0: RMS normalization (see above).
    centered: u32,
}

override WG: u32 = 256;
override LANES: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
// forward: beta (read only when centred); backward: dy.
@group(0) @binding(3) var<storage, read> third: array<f32>;
// forward: y; backward: dx.
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// (mean, rstd) per row: written by forward, read by backward.
@group(0) @binding(5) var<storage, read_write> stats: array<vec2<f32>>;
// backward only: dy·x̂ (a 4-byte stand-in in forward).
@group(0) @binding(6) var<storage, read_write> dyx: array<f32>;

var<workgroup> red: array<vec2<f32>, 256>;

// The row of invocation `lid` of workgroup `wg`.
fn row_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    let group = wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
    return group * (WG / LANES) + lid / LANES;
}

// Sum of the pairs of the LANES invocations sharing `lid`'s row; all of them get it.
fn row_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    let lane = lid % LANES;
    red[lid] = v;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[lid - lane];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn layer_norm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    let lane = lid % LANES;
    let cols = select(0u, p.cols, r < p.rows);
    let base = r * p.cols;
    let n = f32(p.cols);
    let centered = p.centered != 0u;
    var s = 0.0;
    if (centered) {
        for (var j = lane; j < cols; j = j + LANES) {
            s = s + x[base + j];
        }
    }
    let mean = row_sum(lid, vec2<f32>(s, 0.0)).x / n;
    var q = 0.0;
    for (var j = lane; j < cols; j = j + LANES) {
        let d = x[base + j] - mean;
        q = q + d * d;
    }
    let rstd = 1.0 / sqrt(row_sum(lid, vec2<f32>(q, 0.0)).x / n + p.eps);
    for (var j = lane; j < cols; j = j + LANES) {
        var shift = 0.0;
        if (centered) {
            shift = third[j];
        }
        out[base + j] = (x[base + j] - mean) * rstd * gamma[j] + shift;
    }
    if (lane == 0u && r < p.rows) {
        stats[r] = vec2<f32>(mean, rstd);
    }
}

@compute @workgroup_size(WG)
fn layer_norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    let lane = lid % LANES;
    let in_range = r < p.rows;
    let cols = select(0u, p.cols, in_range);
    let base = r * p.cols;
    let n = f32(p.cols);
    var st = vec2<f32>(0.0, 0.0);
    if (in_range) {
        st = stats[r];
    }
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = lane; j < cols; j = j + LANES) {
        let xh = (x[base + j] - st.x) * st.y;
        let g = third[base + j] * gamma[j];
        acc = acc + vec2<f32>(g, g * xh);
    }
    // Uncentred, the mean was 0, not a function of x: no Σg term.
    let sums = row_sum(lid, acc) / n * vec2<f32>(f32(p.centered != 0u), 1.0);
    for (var j = lane; j < cols; j = j + LANES) {
        let xh = (x[base + j] - st.x) * st.y;
        let dy = third[base + j];
        out[base + j] = st.y * (dy * gamma[j] - sums.x - xh * sums.y);
        dyx[base + j] = dy * xh;
    }
}
