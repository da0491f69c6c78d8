// Row softmax and log-softmax of a row-major [rows, cols] f32 matrix.
//
// Launchers: src/kernels/softmax.rs. CPU twins: src/reference/softmax.rs.
//
// Each row belongs to a group of LANES consecutive invocations (a workgroup holds
// WG / LANES rows, so short rows share a workgroup; the row index comes from the
// linear workgroup id over a possibly folded grid and is bounds-checked). Each lane
// walks its strided share of the row keeping an online (max m, sum s = sum
// exp(x - m)) pair, the row's pairs are merged by a tree reduction, and a second
// strided pass writes
//   softmax:     y = exp(x - M) / S
//   log_softmax: y = (x - M) - log(S)
// Max-subtracted, so any finite inputs work (e.g. +-1e4), for any cols >= 1
// (cols far longer than a workgroup is fine: 100,000 is tested).
//
// Attention (scaled dot-product attention's two row kernels, in place on y):
//   softmax_attention:     y[r, :] = softmax(scale·y[r, :]) where, with a causal
//                          mask (p.causal = T > 0, rows in matrices of T), column
//                          j > r mod T is excluded and set to 0 (top-left aligned,
//                          as Keras' and PyTorch's causal masks). With key
//                          lengths (p.key_rows = R > 0: rows in samples of R,
//                          x[r / R] the sample's unpadded key count), columns
//                          j ≥ x[r / R] are excluded too (padding; the entry
//                          point softmax_attention_padded); a row excluding
//                          every column is all 0.
//   softmax_backward_rows: with P = x (softmax_attention's output) and dP = y,
//                          y[r, j] = scale·P[r, j]·(dP[r, j] − Σ_k dP[r, k]·P[r, k]),
//                          the gradient of the scores before scaling.
//
// Bindings: @binding(1) x (read), @binding(2) y (read_write). softmax_rows_inplace
// and softmax_attention read and write y only (x == y), softmax_attention reading
// its key lengths from x. Each element is read and
// written by the same invocation, so in place is safe.
//
// WG must be a power of two no larger than 256 (the scratch arrays), LANES a power
// of two no larger than WG (softmax_rows is launched with LANES = WG: a row per
// workgroup).

struct Params {
    rows: u32,
    cols: u32,
    log: u32,     // 0: softmax, 1: log_softmax
    // softmax_attention: rows per matrix of a causal mask (0: no mask).
    causal: u32,
    // softmax_attention and softmax_backward_rows: the scores' scale.
    scale: f32,
    // softmax_attention: rows per sample of its key lengths in x (0: no lengths).
    key_rows: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256;
override LANES: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> red_m: array<f32, 256>;
var<workgroup> red_s: array<f32, 256>;

// The row of invocation `lid` of workgroup `wg`.
fn row_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    let group = wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
    return group * (WG / LANES) + lid / LANES;
}

// Adds value v to the running (m, s); s == 0 means "nothing seen yet" (after the
// first value s >= 1, because the max contributes exp(0)).
fn online_push(ms: vec2<f32>, v: f32) -> vec2<f32> {
    if (ms.y == 0.0) {
        return vec2<f32>(v, 1.0);
    }
    if (v > ms.x) {
        return vec2<f32>(v, ms.y * exp(ms.x - v) + 1.0);
    }
    return vec2<f32>(ms.x, ms.y + exp(v - ms.x));
}

// Merges two (m, s) pairs.
fn online_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    if (b.y == 0.0) { return a; }
    if (a.y == 0.0) { return b; }
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

// Merge of the (m, s) pairs of the LANES invocations sharing `lid`'s row; all of
// them get the result.
fn row_stats(lid: u32, ms: vec2<f32>) -> vec2<f32> {
    let lane = lid % LANES;
    red_m[lid] = ms.x;
    red_s[lid] = ms.y;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            let r = online_merge(vec2<f32>(red_m[lid], red_s[lid]),
                                 vec2<f32>(red_m[lid + s], red_s[lid + s]));
            red_m[lid] = r.x;
            red_s[lid] = r.y;
        }
        workgroupBarrier();
    }
    let out = vec2<f32>(red_m[lid - lane], red_s[lid - lane]);
    workgroupBarrier();
    return out;
}

// Sum of the values of the LANES invocations sharing `lid`'s row; all get it.
fn row_sum(lid: u32, v: f32) -> f32 {
    let lane = lid % LANES;
    red_s[lid] = v;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            red_s[lid] = red_s[lid] + red_s[lid + s];
        }
        workgroupBarrier();
    }
    let total = red_s[lid - lane];
    workgroupBarrier();
    return total;
}

fn finish(v: f32, m: f32, inv_s: f32, log_s: f32) -> f32 {
    if (p.log != 0u) {
        return (v - m) - log_s;
    }
    return exp(v - m) * inv_s;
}

// softmax_rows: y[r, :] = softmax(x[r, :]) or log_softmax (p.log).
@compute @workgroup_size(WG)
fn softmax_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    let lane = lid % LANES;
    let cols = select(0u, p.cols, r < p.rows);
    let base = r * p.cols;
    var ms = vec2<f32>(0.0, 0.0);
    for (var j = lane; j < cols; j = j + LANES) {
        ms = online_push(ms, x[base + j]);
    }
    let st = row_stats(lid, ms);
    let inv_s = 1.0 / st.y;
    let log_s = log(st.y);
    for (var j = lane; j < cols; j = j + LANES) {
        y[base + j] = finish(x[base + j], st.x, inv_s, log_s);
    }
}

// softmax_rows_inplace: the same with x == y.
@compute @workgroup_size(WG)
fn softmax_rows_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    let lane = lid % LANES;
    let cols = select(0u, p.cols, r < p.rows);
    let base = r * p.cols;
    var ms = vec2<f32>(0.0, 0.0);
    for (var j = lane; j < cols; j = j + LANES) {
        ms = online_push(ms, y[base + j]);
    }
    let st = row_stats(lid, ms);
    let inv_s = 1.0 / st.y;
    let log_s = log(st.y);
    for (var j = lane; j < cols; j = j + LANES) {
        y[base + j] = finish(y[base + j], st.x, inv_s, log_s);
    }
}

// Whether column j of row r is masked out by the causal mask or by `keys`, the
// row's sample's key count.
fn masked(r: u32, j: u32, keys: u32) -> bool {
    return (p.causal > 0u && j > r % p.causal) || j >= keys;
}

// softmax_attention: y[r, :] = softmax(scale·y[r, :]), masked columns excluded.
@compute @workgroup_size(WG)
fn softmax_attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    attention_row(r, lid, p.cols);
}

// softmax_attention_padded: the same, the row's sample's key count read from x
// (p.key_rows rows per sample).
@compute @workgroup_size(WG)
fn softmax_attention_padded(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    var keys = 0u;
    if (r < p.rows) {
        keys = u32(max(x[r / p.key_rows], 0.0));
    }
    attention_row(r, lid, keys);
}

fn attention_row(r: u32, lid: u32, keys: u32) {
    let lane = lid % LANES;
    let cols = select(0u, p.cols, r < p.rows);
    let base = r * p.cols;
    var ms = vec2<f32>(0.0, 0.0);
    for (var j = lane; j < cols; j = j + LANES) {
        if (!masked(r, j, keys)) {
            ms = online_push(ms, p.scale * y[base + j]);
        }
    }
    let st = row_stats(lid, ms);
    let inv_s = 1.0 / st.y;
    for (var j = lane; j < cols; j = j + LANES) {
        var v = 0.0;
        if (!masked(r, j, keys)) {
            v = exp(p.scale * y[base + j] - st.x) * inv_s;
        }
        y[base + j] = v;
    }
}

// softmax_backward_rows: y = scale·x·(y − Σ y·x) per row (x = P, y = dP in, dS out).
@compute @workgroup_size(WG)
fn softmax_backward_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wg, nwg, lid);
    let lane = lid % LANES;
    let cols = select(0u, p.cols, r < p.rows);
    let base = r * p.cols;
    var dot = 0.0;
    for (var j = lane; j < cols; j = j + LANES) {
        dot = dot + y[base + j] * x[base + j];
    }
    let total = row_sum(lid, dot);
    for (var j = lane; j < cols; j = j + LANES) {
        y[base + j] = p.scale * x[base + j] * (y[base + j] - total);
    }
}
