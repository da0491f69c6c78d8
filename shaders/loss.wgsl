// Losses: per-sample loss and, in the *_grad entry points, its gradient in the same
// kernel. Inputs are row-major [rows, cols] (rows = batch B, cols = classes C or
// features D).
//
// Launchers: src/kernels/loss.rs. CPU twins: src/reference/loss.rs.
//
// One workgroup per row (row index = linear workgroup id over a possibly folded
// grid, bounds-checked; every invocation reaches every barrier). Invocation 0 writes
// loss[row]; the gradient of grad_scale * sum_rows loss[row] is written for every
// element of the row (grad_scale = 1/B turns it into the gradient of the mean).
//
//   xent:  loss = logsumexp(x) - x[label]   (softmax cross-entropy, max-subtracted)
//          grad = (softmax(x) - onehot(label)) * grad_scale
//          With label smoothing e = p.smoothing > 0 (PyTorch's CrossEntropyLoss(
//          label_smoothing=e), Keras' label_smoothing) the target is
//          q = (1 - e) onehot(label) + e / C:
//          loss = logsumexp(x) - (1 - e) x[label] - e mean(x)
//          grad = (softmax(x) - q) * grad_scale
//          A label >= cols marks a row with no target: loss 0, gradient 0, and
//          nothing is read or written out of bounds.
//   label_scale: one workgroup; grad2[0] = 1 / max(n, 1), n the rows whose label
//          is below cols (counted in f32: exact up to 2^24 rows, which the
//          launcher checks).
//   xent_grad_labelled: xent_grad with grad_scale = dy[0], as label_scale wrote
//          it: the gradient of the mean over the rows with a target (PyTorch's
//          CrossEntropyLoss(ignore_index=...) mean), for sequence outputs whose
//          padding and unlabelled tokens have no target.
//   xent_grad_weighted_labelled: xent_grad_weighted with grad_scale = dy[0].
//   mse:   loss = mean_d (p - t)^2;  grad = 2 (p - t) / D * grad_scale
//   bce:   loss = mean_d [max(x, 0) - x t + log(1 + exp(-|x|))]   (logits x)
//          grad = (sigmoid(x) - t) / D * grad_scale
//          exp only ever sees -|x|, so any finite |x| (e.g. 1e4) is exact-ish.
//
// Loss terms computed inside a graph (graph::ops::loss_terms): per-sample terms
// whose gradient comes from the graph as dy[row] (the weight of the term over B),
// not from grad_scale; the forward is one workgroup per row, the gradient one
// invocation per element.
//
//   kl_normal:  loss = -1/2 Σ_d (1 + lv - m^2 - exp(lv))   (m = x, lv = t: the KL
//               divergence of N(m, exp(lv)) from N(0, I), summed over the features)
//               grad = dy·m,  grad2 = dy·(exp(lv) - 1)/2
//   bce_sum:    loss = Σ_d [max(x, 0) - x t + log(1 + exp(-|x|))]   (bce, summed)
//               grad = dy·(sigmoid(x) - t)
//   sigmoid_mean: loss = mean_d sigmoid(x)   (a discriminator's mean output; t unread)
//               grad = dy·sigmoid(x)(1 - sigmoid(x))/D
//
// Bindings: @binding(1) x (logits or predictions, read), @binding(2) labels (u32,
// read), @binding(3) loss (read_write), @binding(4) grad (read_write),
// @binding(5) t (f32 targets, read), @binding(6) dy (read), @binding(7) grad2
// (read_write), @binding(8) class_w (f32 per-class weights, read; the *_weighted
// entry points only). The forward-only entry points do not use grad.
//
// Class weights (Keras' fit(class_weight=...)): xent_grad_weighted and
// bce_grad_weighted multiply each row's loss and gradient by the weight of its
// class: class_w[label] for xent; for bce of one output class_w[1] when the target
// is above 0.5, else class_w[0]. The batch mean still divides by B (grad_scale),
// as Keras' sum_over_batch_size reduction does.
//
// WG must be a power of two no larger than 256 (the scratch arrays).

struct Params {
    rows: u32,
    cols: u32,
    grad_scale: f32,
    smoothing: f32, // xent's label smoothing e in [0, 1); 0 elsewhere
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read> t: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad2: array<f32>;
@group(0) @binding(8) var<storage, read> class_w: array<f32>;

var<workgroup> red_m: array<f32, 256>;
var<workgroup> red_s: array<f32, 256>;

fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

// ---- shared reductions ----

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red_s[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red_s[lid] = red_s[lid] + red_s[lid + s];
        }
        workgroupBarrier();
    }
    let r = red_s[0];
    workgroupBarrier();
    return r;
}

// Online (max m, sum s = sum exp(v - m)); s == 0 means empty.
fn online_push(ms: vec2<f32>, v: f32) -> vec2<f32> {
    if (ms.y == 0.0) {
        return vec2<f32>(v, 1.0);
    }
    if (v > ms.x) {
        return vec2<f32>(v, ms.y * exp(ms.x - v) + 1.0);
    }
    return vec2<f32>(ms.x, ms.y + exp(v - ms.x));
}

fn online_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    if (b.y == 0.0) { return a; }
    if (a.y == 0.0) { return b; }
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

fn workgroup_stats(lid: u32, ms: vec2<f32>) -> vec2<f32> {
    red_m[lid] = ms.x;
    red_s[lid] = ms.y;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            let r = online_merge(vec2<f32>(red_m[lid], red_s[lid]),
                                 vec2<f32>(red_m[lid + s], red_s[lid + s]));
            red_m[lid] = r.x;
            red_s[lid] = r.y;
        }
        workgroupBarrier();
    }
    let out = vec2<f32>(red_m[0], red_s[0]);
    workgroupBarrier();
    return out;
}

// ---- softmax cross-entropy ----

struct XentRow {
    valid: bool,   // row < rows
    label: u32,    // >= cols: no target
    m: f32,        // row max
    s: f32,        // sum exp(x - m)
    mean: f32,     // mean of the row (read only with label smoothing)
}

fn xent_row(r: u32, lid: u32) -> XentRow {
    var row: XentRow;
    row.valid = r < p.rows;
    let cols = select(0u, p.cols, row.valid);
    let base = r * p.cols;
    var ms = vec2<f32>(0.0, 0.0);
    for (var j = lid; j < cols; j = j + WG) {
        ms = online_push(ms, x[base + j]);
    }
    let st = workgroup_stats(lid, ms);
    row.m = st.x;
    row.s = st.y;
    row.mean = 0.0;
    if (p.smoothing > 0.0) {
        // p is uniform: every invocation takes this branch or none does.
        var sum = 0.0;
        for (var j = lid; j < cols; j = j + WG) {
            sum = sum + x[base + j];
        }
        row.mean = workgroup_sum(lid, sum) / f32(p.cols);
    }
    row.label = 0xffffffffu;
    if (row.valid) {
        row.label = labels[r];
    }
    return row;
}

fn xent_write_loss(r: u32, lid: u32, row: XentRow, w: f32) {
    if (row.valid && lid == 0u) {
        var l = 0.0;
        if (row.label < p.cols) {
            let e = p.smoothing;
            if (e > 0.0) {
                l = (row.m + log(row.s)) - (1.0 - e) * x[r * p.cols + row.label] - e * row.mean;
            } else {
                l = (row.m - x[r * p.cols + row.label]) + log(row.s);
            }
        }
        loss[r] = l * w;
    }
}

@compute @workgroup_size(WG)
fn xent(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let row = xent_row(r, lid);
    xent_write_loss(r, lid, row, 1.0);
}

// The loss and gradient of row r, both multiplied by the row's weight w; the
// gradient also by scale (the batch's grad_scale).
fn xent_grad_row(r: u32, lid: u32, row: XentRow, w: f32, scale: f32) {
    xent_write_loss(r, lid, row, w);
    let cols = select(0u, p.cols, row.valid);
    let base = r * p.cols;
    let has_target = row.label < p.cols;
    let inv_s = 1.0 / row.s;
    // The target q: 1 - e + e / C at the label, e / C elsewhere.
    let e = p.smoothing;
    let hit = 1.0 - e + e / f32(p.cols);
    let miss = e / f32(p.cols);
    let k = scale * w;
    for (var j = lid; j < cols; j = j + WG) {
        var g = 0.0;
        if (has_target) {
            g = exp(x[base + j] - row.m) * inv_s - select(miss, hit, j == row.label);
        }
        grad[base + j] = g * k;
    }
}

@compute @workgroup_size(WG)
fn xent_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    xent_grad_row(r, lid, xent_row(r, lid), 1.0, p.grad_scale);
}

@compute @workgroup_size(WG)
fn label_scale(@builtin(local_invocation_index) lid: u32) {
    var n = 0.0;
    for (var r = lid; r < p.rows; r = r + WG) {
        n = n + select(0.0, 1.0, labels[r] < p.cols);
    }
    let total = workgroup_sum(lid, n);
    if (lid == 0u) {
        grad2[0] = 1.0 / max(total, 1.0);
    }
}

// The weight of a row's class (0 for a row with no target).
fn class_weight(row: XentRow) -> f32 {
    if (row.label < p.cols) {
        return class_w[row.label];
    }
    return 0.0;
}

@compute @workgroup_size(WG)
fn xent_grad_weighted_labelled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let row = xent_row(r, lid);
    xent_grad_row(r, lid, row, class_weight(row), dy[0]);
}

@compute @workgroup_size(WG)
fn xent_grad_labelled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    xent_grad_row(r, lid, xent_row(r, lid), 1.0, dy[0]);
}

// xent_grad with class weights: row r's loss and gradient times class_w[label]
// (a row without a target stays 0).
@compute @workgroup_size(WG)
fn xent_grad_weighted(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let row = xent_row(r, lid);
    xent_grad_row(r, lid, row, class_weight(row), p.grad_scale);
}

// ---- mean squared error ----

fn row_mean_finish(r: u32, lid: u32, valid: bool, partial: f32) {
    let total = workgroup_sum(lid, partial);
    if (valid && lid == 0u) {
        loss[r] = total / f32(p.cols);
    }
}

@compute @workgroup_size(WG)
fn mse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let valid = r < p.rows;
    let cols = select(0u, p.cols, valid);
    let base = r * p.cols;
    var acc = 0.0;
    for (var j = lid; j < cols; j = j + WG) {
        let d = x[base + j] - t[base + j];
        acc = acc + d * d;
    }
    row_mean_finish(r, lid, valid, acc);
}

@compute @workgroup_size(WG)
fn mse_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let valid = r < p.rows;
    let cols = select(0u, p.cols, valid);
    let base = r * p.cols;
    let k = 2.0 / f32(p.cols) * p.grad_scale;
    var acc = 0.0;
    for (var j = lid; j < cols; j = j + WG) {
        let d = x[base + j] - t[base + j];
        acc = acc + d * d;
        grad[base + j] = d * k;
    }
    row_mean_finish(r, lid, valid, acc);
}

// ---- binary cross-entropy with logits ----

// log(1 + u) for u in [0, 1]: a short series where 1 + u would round away u's digits.
fn log1p_unit(u: f32) -> f32 {
    if (u < 1e-3) {
        return u * (1.0 - u * (0.5 - u * (1.0 / 3.0)));
    }
    return log(1.0 + u);
}

fn bce_term(xv: f32, tv: f32) -> f32 {
    return max(xv, 0.0) - xv * tv + log1p_unit(exp(-abs(xv)));
}

fn sigmoid(v: f32) -> f32 {
    let e = exp(-abs(v));
    let r = 1.0 / (1.0 + e);
    return select(e * r, r, v >= 0.0);
}

@compute @workgroup_size(WG)
fn bce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let valid = r < p.rows;
    let cols = select(0u, p.cols, valid);
    let base = r * p.cols;
    var acc = 0.0;
    for (var j = lid; j < cols; j = j + WG) {
        acc = acc + bce_term(x[base + j], t[base + j]);
    }
    row_mean_finish(r, lid, valid, acc);
}

// The loss and gradient of row r, both multiplied by the row's weight w.
fn bce_grad_row(r: u32, lid: u32, w: f32) {
    let valid = r < p.rows;
    let cols = select(0u, p.cols, valid);
    let base = r * p.cols;
    let k = p.grad_scale / f32(p.cols) * w;
    var acc = 0.0;
    for (var j = lid; j < cols; j = j + WG) {
        let xv = x[base + j];
        let tv = t[base + j];
        acc = acc + bce_term(xv, tv);
        grad[base + j] = (sigmoid(xv) - tv) * k;
    }
    row_mean_finish(r, lid, valid, acc * w);
}

@compute @workgroup_size(WG)
fn bce_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    bce_grad_row(group_index(wg, nwg), lid, 1.0);
}

// bce_grad of one output (p.cols == 1) with class weights: row r's loss and
// gradient times class_w[1] when its target is above 0.5, else class_w[0] (Keras
// rounds the target half to even: 0.5 is class 0).
@compute @workgroup_size(WG)
fn bce_grad_weighted(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    var w = 0.0;
    if (r < p.rows) {
        w = class_w[select(0u, 1u, t[r * p.cols] > 0.5)];
    }
    bce_grad_row(r, lid, w);
}

// ---- loss terms inside a graph ----

fn row_sum_finish(r: u32, lid: u32, valid: bool, partial: f32) {
    let total = workgroup_sum(lid, partial);
    if (valid && lid == 0u) {
        loss[r] = total;
    }
}

fn element_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return group_index(wg, nwg) * WG + lid;
}

@compute @workgroup_size(WG)
fn kl_normal(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let valid = r < p.rows;
    let cols = select(0u, p.cols, valid);
    let base = r * p.cols;
    var acc = 0.0;
    for (var j = lid; j < cols; j = j + WG) {
        let m = x[base + j];
        let lv = t[base + j];
        acc = acc + (1.0 + lv - m * m - exp(lv));
    }
    row_sum_finish(r, lid, valid, -0.5 * acc);
}

@compute @workgroup_size(WG)
fn kl_normal_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wg, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    let g = dy[i / p.cols];
    grad[i] = g * x[i];
    grad2[i] = g * 0.5 * (exp(t[i]) - 1.0);
}

@compute @workgroup_size(WG)
fn bce_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let valid = r < p.rows;
    let cols = select(0u, p.cols, valid);
    let base = r * p.cols;
    var acc = 0.0;
    for (var j = lid; j < cols; j = j + WG) {
        acc = acc + bce_term(x[base + j], t[base + j]);
    }
    row_sum_finish(r, lid, valid, acc);
}

@compute @workgroup_size(WG)
fn bce_sum_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wg, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    grad[i] = dy[i / p.cols] * (sigmoid(x[i]) - t[i]);
}

@compute @workgroup_size(WG)
fn sigmoid_mean(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wg, nwg);
    let valid = r < p.rows;
    let cols = select(0u, p.cols, valid);
    let base = r * p.cols;
    var acc = 0.0;
    for (var j = lid; j < cols; j = j + WG) {
        acc = acc + sigmoid(x[base + j]);
    }
    row_mean_finish(r, lid, valid, acc);
}

@compute @workgroup_size(WG)
fn sigmoid_mean_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wg, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    let s = sigmoid(x[i]);
    grad[i] = dy[i / p.cols] * s * (1.0 - s) / f32(p.cols);
}
