// Sequences `[B, T, F]` (T tokens of F features per sample) with padding: each
// sample's unpadded length, and the pools that read a sequence down to `[B, F]`
// over its real tokens only (Keras' GlobalAveragePooling1D with a mask; the
// last real token, Hugging Face's GPT-2 sequence-classification pooling; the
// first token, BERT's [CLS]).
//
// Launchers: src/kernels/sequence.rs. CPU twins: src/reference/sequence.rs.
//
//   sequence_lengths:     len[b] = 1 + the last t with ids[b, t] ≠ pad (0 when every
//                         id is pad): padding is the run of pad ids that ends the
//                         sample. Ids and lengths are f32 (whole numbers).
//   token_types:          types[b, t] = min(the number of separator ids among
//                         ids[b, 0..t), types − 1): BERT's segment of each token of
//                         "[CLS] A [SEP] B [SEP]" (0 through the first [SEP], 1
//                         after it). Ids and types are f32 (whole numbers).
//   sequence_pool:        y[b, f] over all T tokens: their mean (p.mode = 0),
//                         token T − 1 (p.mode = 1) or token 0 (p.mode = 2).
//   sequence_pool_masked: the same over the first n = len[b] tokens: their mean
//                         (0 when n = 0), token max(n, 1) − 1 (token 0 of an
//                         all-padding sample, as Hugging Face picks it), or token
//                         0 whatever n is.
//   sequence_pool_backward(_masked): dx[b, t, f] = dy[b, f]/n for t < n (mean), or
//                         dy[b, f] at the picked token (last, first); 0 elsewhere.
//                         Overwrites all of dx.
//   mask_positions:       y[b, r, t] = x[b, r, t] for t < len[b], else p.pad (a
//                         padded sequence's positions as the classes of F = R
//                         rows, T = the positions: each row's padding scored
//                         p.pad, -1e30 forward so a softmax gives it nothing, 0
//                         for the gradient).
//
// One invocation per output value (a flat grid, possibly folded); sums run over t
// in order, so results do not depend on timing.

struct Params {
    batch: u32,
    tokens: u32,
    features: u32,
    mode: u32,  // 0: the mean; 1: the last token; 2: the first token
    pad: f32,   // sequence_lengths: the padding id; token_types: the separator id;
                // mask_positions: the value past each length
    types: u32, // token_types: the number of token types (at least 1)
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
// sequence_lengths, token_types: ids [B, T]; the pools: x [B, T, F]; the backward: dy [B, F].
@group(0) @binding(1) var<storage, read> src: array<f32>;
// The *_masked entry points: len [B].
@group(0) @binding(2) var<storage, read> len: array<f32>;
// sequence_lengths: len [B]; token_types: types [B, T]; the pools: y [B, F]; the backward: dx [B, T, F].
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn flat(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
}

@compute @workgroup_size(WG)
fn sequence_lengths(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let b = flat(wg, nwg, lid);
    if (b >= p.batch) {
        return;
    }
    var n = p.tokens;
    while (n > 0u && src[b * p.tokens + n - 1u] == p.pad) {
        n = n - 1u;
    }
    dst[b] = f32(n);
}

// One invocation per token; each counts the separators before it (T is at most a
// few thousand, and this runs once per step on the ids).
@compute @workgroup_size(WG)
fn token_types(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i >= p.batch * p.tokens) {
        return;
    }
    let t = i % p.tokens;
    let start = i - t;
    var seen = 0u;
    for (var j = 0u; j < t; j = j + 1u) {
        if (src[start + j] == p.pad) {
            seen = seen + 1u;
        }
    }
    dst[i] = f32(min(seen, p.types - 1u));
}

// Token count n of a sample, as f32 lengths hold it, clamped to [0, T].
fn count(l: f32) -> u32 {
    return min(p.tokens, u32(max(l, 0.0)));
}

// The token a picking pool reads of a sample of n real tokens.
fn picked(n: u32) -> u32 {
    return select(max(n, 1u) - 1u, 0u, p.mode == 2u);
}

// y[b, f] over the first n tokens of sample b.
fn pool(i: u32, n: u32) {
    let b = i / p.features;
    let f = i - b * p.features;
    let base = b * p.tokens * p.features + f;
    if (p.mode != 0u) {
        dst[i] = src[base + picked(n) * p.features];
        return;
    }
    var s = 0.0;
    for (var t = 0u; t < n; t = t + 1u) {
        s = s + src[base + t * p.features];
    }
    dst[i] = select(s / f32(n), 0.0, n == 0u);
}

@compute @workgroup_size(WG)
fn sequence_pool(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i < p.batch * p.features) {
        pool(i, p.tokens);
    }
}

@compute @workgroup_size(WG)
fn sequence_pool_masked(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i < p.batch * p.features) {
        pool(i, count(len[i / p.features]));
    }
}

// dx[i] (i over [B, T, F]) from dy, sample b's first n tokens pooled.
fn unpool(i: u32, b: u32, n: u32) {
    let t = (i / p.features) % p.tokens;
    let g = src[b * p.features + i % p.features];
    if (p.mode != 0u) {
        dst[i] = select(0.0, g, t == picked(n));
        return;
    }
    dst[i] = select(0.0, g / f32(n), t < n);
}

@compute @workgroup_size(WG)
fn sequence_pool_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i < p.batch * p.tokens * p.features) {
        unpool(i, i / (p.tokens * p.features), p.tokens);
    }
}

@compute @workgroup_size(WG)
fn sequence_pool_backward_masked(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i < p.batch * p.tokens * p.features) {
        let b = i / (p.tokens * p.features);
        unpool(i, b, count(len[b]));
    }
}

@compute @workgroup_size(WG)
fn mask_positions(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i >= p.batch * p.features * p.tokens) {
        return;
    }
    let b = i / (p.features * p.tokens);
    let t = i % p.tokens;
    if (f32(t) < len[b]) {
        dst[i] = src[i];
    } else {
        dst[i] = p.pad;
    }
}
