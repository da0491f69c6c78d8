// Reductions: per-channel sums, sums over one axis, whole-tensor sums/means, row
// argmax and accuracy counters.
//
// Launchers: src/kernels/reduce.rs. CPU twins: src/reference/reduce.rs.
//
// Bindings: @binding(1) x (f32, read), @binding(2) out (f32, read_write),
// @binding(3) labels (u32, read), @binding(4) idx (u32, read_write),
// @binding(5) targets (f32, read). Each entry point uses only the ones it names.
//
// WG (the workgroup size) must be a power of two no larger than 256 (the size of the
// workgroup scratch arrays); the launchers pass 256. Kernels that give a workgroup
// per output (channel, row, ...) take its index from the linear workgroup id over a
// possibly folded grid and bounds-check it; every invocation still reaches every
// barrier.
//
// The single-workgroup kernels (sum_all, count_correct, count_correct_binary) read
// and update out[0] from one invocation after a workgroup reduction, so accumulators
// that live across many dispatches are race-free without atomics.
//
// argmax semantics (argmax_rows_*, count_correct): the first index of the largest
// value, NaN entries ignored; a row that is all NaN gives index 0.

struct Params {
    d0: u32,      // see each entry point
    d1: u32,
    d2: u32,
    flags: u32,   // bit 0: accumulate into out instead of overwriting
    scale: f32,   // sum_all: factor applied to the sum (1/n for a mean)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256;

const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> idx: array<u32>;
@group(0) @binding(5) var<storage, read> targets: array<f32>;

var<workgroup> red_v: array<f32, 256>;
var<workgroup> red_i: array<u32, 256>;

fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

fn is_nan(v: f32) -> bool {
    // Bit test: immune to compilers that assume comparisons never see NaN.
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Sum of `v` over the workgroup; every invocation gets the result.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red_v[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red_v[lid] = red_v[lid] + red_v[lid + s];
        }
        workgroupBarrier();
    }
    let r = red_v[0];
    workgroupBarrier();
    return r;
}

// True when candidate (v2, i2) beats (v1, i1) for argmax: larger value, then smaller
// index; NONE marks "no non-NaN value seen".
fn beats(v2: f32, i2: u32, v1: f32, i1: u32) -> bool {
    if (i2 == NONE) { return false; }
    if (i1 == NONE) { return true; }
    return v2 > v1 || (v2 == v1 && i2 < i1);
}

// Sequential argmax of row `r` of a row-major [*, cols] matrix x (one invocation).
fn row_argmax(r: u32, cols: u32) -> u32 {
    var bv = 0.0;
    var bi = NONE;
    let base = r * cols;
    for (var j = 0u; j < cols; j = j + 1u) {
        let v = x[base + j];
        if (!is_nan(v) && (bi == NONE || v > bv)) {
            bv = v;
            bi = j;
        }
    }
    return select(bi, 0u, bi == NONE);
}

// channel_sum: x viewed as [a = d0, c = d1, b = d2]; one workgroup per channel j:
// out[j] (+)= sum_{i < a, k < b} x[i, j, k].
@compute @workgroup_size(WG)
fn channel_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let j = group_index(wg, nwg);
    let a = p.d0;
    let c = p.d1;
    let b = p.d2;
    let valid = j < c;
    let m = select(0u, a * b, valid);
    var acc = 0.0;
    for (var t = lid; t < m; t = t + WG) {
        let i = t / b;
        let k = t - i * b;
        acc = acc + x[(i * c + j) * b + k];
    }
    let total = workgroup_sum(lid, acc);
    if (valid && lid == 0u) {
        if ((p.flags & 1u) != 0u) {
            out[j] = out[j] + total;
        } else {
            out[j] = total;
        }
    }
}

// sum_axis_thread: x viewed as [outer = d0, len = d1, inner = d2]; one invocation per
// output: out[o, i] = sum_l x[o, l, i]. For short axes or many outputs.
@compute @workgroup_size(WG)
fn sum_axis_thread(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let q = group_index(wg, nwg) * WG + lid;
    let len = p.d1;
    let inner = p.d2;
    if (q >= p.d0 * inner) {
        return;
    }
    let o = q / inner;
    let i = q - o * inner;
    let base = o * len * inner + i;
    var acc = 0.0;
    for (var l = 0u; l < len; l = l + 1u) {
        acc = acc + x[base + l * inner];
    }
    out[q] = acc;
}

// sum_axis_wg: same contract as sum_axis_thread, one workgroup per output (for long
// axes and few outputs).
@compute @workgroup_size(WG)
fn sum_axis_wg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let q = group_index(wg, nwg);
    let len = p.d1;
    let inner = p.d2;
    let valid = q < p.d0 * inner;
    let m = select(0u, len, valid);
    let o = q / inner;
    let i = q - o * inner;
    let base = o * len * inner + i;
    var acc = 0.0;
    for (var l = lid; l < m; l = l + WG) {
        acc = acc + x[base + l * inner];
    }
    let total = workgroup_sum(lid, acc);
    if (valid && lid == 0u) {
        out[q] = total;
    }
}

// sum_all: one workgroup; s = scale * sum_{i < n = d0} x[i]; out[0] = s, or
// out[0] += s when flags bit 0 is set.
@compute @workgroup_size(WG)
fn sum_all(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var t = lid; t < p.d0; t = t + WG) {
        acc = acc + x[t];
    }
    let total = workgroup_sum(lid, acc) * p.scale;
    if (lid == 0u) {
        if ((p.flags & 1u) != 0u) {
            out[0] = out[0] + total;
        } else {
            out[0] = total;
        }
    }
}

// argmax_rows_thread: x is [rows = d0, cols = d1]; one invocation per row:
// idx[r] = argmax_j x[r, j]. For short rows.
@compute @workgroup_size(WG)
fn argmax_rows_thread(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg) * WG + lid;
    if (r < p.d0) {
        idx[r] = row_argmax(r, p.d1);
    }
}

// argmax_rows_wg: same contract, one workgroup per row (for long rows).
@compute @workgroup_size(WG)
fn argmax_rows_wg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let cols = p.d1;
    let valid = r < p.d0;
    let m = select(0u, cols, valid);
    let base = r * cols;
    var bv = 0.0;
    var bi = NONE;
    for (var j = lid; j < m; j = j + WG) {
        let v = x[base + j];
        if (!is_nan(v) && (bi == NONE || v > bv)) {
            bv = v;
            bi = j;
        }
    }
    red_v[lid] = bv;
    red_i[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s && beats(red_v[lid + s], red_i[lid + s], red_v[lid], red_i[lid])) {
            red_v[lid] = red_v[lid + s];
            red_i[lid] = red_i[lid + s];
        }
        workgroupBarrier();
    }
    if (valid && lid == 0u) {
        let best = red_i[0];
        idx[r] = select(best, 0u, best == NONE);
    }
}

// count_correct: one workgroup; x is logits [rows = d0, cols = d1], labels [rows];
// out[0] += #rows with argmax == label (a label >= cols never matches).
@compute @workgroup_size(WG)
fn count_correct(@builtin(local_invocation_index) lid: u32) {
    var hits = 0.0;
    for (var r = lid; r < p.d0; r = r + WG) {
        if (row_argmax(r, p.d1) == labels[r]) {
            hits = hits + 1.0;
        }
    }
    let total = workgroup_sum(lid, hits);
    if (lid == 0u) {
        out[0] = out[0] + total;
    }
}

// count_in_top_k: one workgroup; x is logits [rows = d0, cols = d1], labels [rows];
// out[0] += #rows whose label's logit is among the k = d2 largest: fewer than k
// logits of the row are strictly greater (ties at the boundary count, as
// tf.math.in_top_k and Keras' SparseTopKCategoricalAccuracy; a label >= cols or a
// NaN logit never counts).
@compute @workgroup_size(WG)
fn count_in_top_k(@builtin(local_invocation_index) lid: u32) {
    var hits = 0.0;
    for (var r = lid; r < p.d0; r = r + WG) {
        let label = labels[r];
        if (label < p.d1) {
            let base = r * p.d1;
            let v = x[base + label];
            var above = 0u;
            for (var j = 0u; j < p.d1 && above < p.d2; j = j + 1u) {
                if (x[base + j] > v) {
                    above = above + 1u;
                }
            }
            if (!is_nan(v) && above < p.d2) {
                hits = hits + 1.0;
            }
        }
    }
    let total = workgroup_sum(lid, hits);
    if (lid == 0u) {
        out[0] = out[0] + total;
    }
}

// count_correct_sets: one workgroup; x is logits [rows = d0, cols = d1], targets
// [rows, cols] (0/1: a multi-label row's classes); out[0] += #rows whose every
// (x > 0) == (target > 0.5): subset accuracy, scikit-learn's for multi-label.
@compute @workgroup_size(WG)
fn count_correct_sets(@builtin(local_invocation_index) lid: u32) {
    var hits = 0.0;
    for (var r = lid; r < p.d0; r = r + WG) {
        var all = true;
        for (var j = 0u; j < p.d1; j = j + 1u) {
            let i = r * p.d1 + j;
            all = all && ((x[i] > 0.0) == (targets[i] > 0.5));
        }
        if (all) {
            hits = hits + 1.0;
        }
    }
    let total = workgroup_sum(lid, hits);
    if (lid == 0u) {
        out[0] = out[0] + total;
    }
}

// count_correct_binary: one workgroup; x is logits [rows = d0], targets [rows];
// out[0] += #rows with (x > 0) == (target > 0.5).
@compute @workgroup_size(WG)
fn count_correct_binary(@builtin(local_invocation_index) lid: u32) {
    var hits = 0.0;
    for (var r = lid; r < p.d0; r = r + WG) {
        if ((x[r] > 0.0) == (targets[r] > 0.5)) {
            hits = hits + 1.0;
        }
    }
    let total = workgroup_sum(lid, hits);
    if (lid == 0u) {
        out[0] = out[0] + total;
    }
}
