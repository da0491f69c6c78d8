// Fused scaled dot-product attention over heads, reading and writing the projections'
// own layout: q [B, Tq, H·dk], k [B, Tk, H·dk], v [B, Tk, H·dv], o [B, Tq, H·dv] (head
// h of a token is columns h·d .. h·d + d − 1). For each sample b and head h:
//   S = scale·Q·Kᵀ, P = softmax over keys (causal: query i sees keys j ≤ i), O = P·V.
// P is never stored: the forward pass keeps each query row's log-sum-exp, and the
// backward pass recomputes P from it (FlashAttention's scheme, in f32).
//
// Dropout on the weights (the *_dropout entry points; Keras' MultiHeadAttention
// `dropout`, GPT-2's attn_pdrop): O = (P ⊙ M)·V with M_ij = keep_ij / (1 − rate),
// keep_ij drawn as dropout.wgsl draws element (bh·Tq + i)·Tk + j of a [B·H·Tq, Tk]
// tensor at draw st.draw (hash.wgsl), so the backward pass recomputes it and the
// unfused path (the dropout kernel on the weights) draws the same mask. Then
// dV_j = Σ_i P_ij·M_ij·dO_i and dS_ij = P_ij·(M_ij·dO_i·v_j − D_i), where
// D_i = dO_i·O_i still equals Σ_j P_ij·dP_ij. The plain entry points are the same
// functions with M = 1, and do not bind the step uniform.
//
// Padding (p.masked = 1): sample b's keys j ≥ klen[b] (a whole number as f32, the
// sample's unpadded length; graph::ops::sequence) are excluded as the causal mask
// excludes keys: a query seeing no key at all (a sample of length 0) gets O = 0, and
// an excluded key gets dK = dV = 0. p.masked = 0 binds any buffer at 9 and never
// reads it.
//
// Launchers: src/kernels/attention.rs. CPU twins: src/reference/attention.rs.
//
//   attention_forward:     o, and stats[bh·Tq + i].x = log Σ_j exp(S_ij) (the max is
//                          tracked online, so any finite scores work).
//   attention_delta:       stats[bh·Tq + i].y = D_i = Σ_d dO_id·O_id.
//   attention_backward_kv: dk = scale·Σ_i dS_ij·q_i and dv = Σ_i P_ij·dO_i for each key
//                          row j, with dS_ij = P_ij·(dO_i·v_j − D_i).
//   attention_backward_q:  dq = scale·Σ_j dS_ij·k_j for each query row i.
//   (each but attention_delta also as *_dropout, binding st at 8)
//
// Every invocation owns one row (a query row; a key row in attention_backward_kv) and
// keeps it, and its accumulators, in private arrays of MAX_D values: dk and dv must be
// at most MAX_D (the launcher checks). A workgroup owns WG consecutive rows of one
// (sample, head) pair and stages the other side TILE rows at a time in workgroup
// memory (2·TILE·MAX_D floats, 16 KiB: WebGPU's guaranteed minimum). The linear
// workgroup id (over a possibly folded grid) is block + blocks·(b·H + h); ids past
// the end only join the barriers. Sums run in a fixed order: results do not depend on
// timing.

const WG: u32 = 64u;
const TILE: u32 = 32u;
const MAX_D: u32 = 64u;

struct Params {
    bh: u32,      // B·H
    heads: u32,
    tq: u32,
    tk: u32,
    dk: u32,
    dv: u32,
    causal: u32,  // 1: query i sees keys j ≤ i only (Tq == Tk)
    scale: f32,
    blocks: u32,  // row blocks per (sample, head): ceil(rows / WG)
    drop_threshold: u32, // dropout: a weight is dropped when its hash >> 8 is below this
    drop_scale: f32,     // 1 / (1 − rate)
    drop_seed: u32,
    masked: u32,         // 1: keys past klen[b] are excluded
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
// attention_delta and attention_backward_*: dO.
@group(0) @binding(4) var<storage, read> g: array<f32>;
// attention_forward: O (written); attention_delta: O (read); attention_backward_kv:
// dK; attention_backward_q: dQ.
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// attention_backward_kv: dV.
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;
// (log-sum-exp, D) per (bh, query row).
@group(0) @binding(7) var<storage, read_write> stats: array<vec2<f32>>;
// The *_dropout entry points: the per-step uniform (step.wgsl), for its draw number.
@group(0) @binding(8) var<uniform> st: Step;
// Each sample's unpadded key count when p.masked = 1.
@group(0) @binding(9) var<storage, read> klen: array<f32>;

var<workgroup> tile_a: array<f32, 2048>; // TILE·MAX_D
var<workgroup> tile_b: array<f32, 2048>;

// Where an invocation works: its workgroup's (sample, head) pair `bh` (`live`
// unless past the end), the row block, and its own row `r` (`valid` when below
// `rows` in a live workgroup).
struct Place {
    live: bool,
    b: u32,
    h: u32,
    bh: u32,
    block: u32,
    r: u32,
    valid: bool,
}

fn place(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, rows: u32) -> Place {
    let id = wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
    let bh = id / p.blocks;
    let block = id % p.blocks;
    let live = bh < p.bh;
    let r = block * WG + lid;
    return Place(live, bh / p.heads, bh % p.heads, bh, block, r, live && r < rows);
}

// Offset of head h's d-wide slice of token `t` of sample b in a [B, T, H·d] tensor.
fn at(b: u32, tokens: u32, t: u32, h: u32, d: u32) -> u32 {
    return (b * tokens + t) * p.heads * d + h * d;
}

// Stages n key rows from `start` of the workgroup's (sample, head) into the tiles:
// keys into tile_a, values into tile_b (every invocation calls it, live or not).
fn stage_keys(pl: Place, start: u32, n: u32, lid: u32) {
    if (!pl.live) {
        return;
    }
    for (var e = lid; e < n * p.dk; e = e + WG) {
        let t = e / p.dk;
        let d = e - t * p.dk;
        tile_a[t * MAX_D + d] = k[at(pl.b, p.tk, start + t, pl.h, p.dk) + d];
    }
    for (var e = lid; e < n * p.dv; e = e + WG) {
        let t = e / p.dv;
        let d = e - t * p.dv;
        tile_b[t * MAX_D + d] = v[at(pl.b, p.tk, start + t, pl.h, p.dv) + d];
    }
}

// The same for query rows: queries into tile_a, dO into tile_b.
fn stage_queries(pl: Place, start: u32, n: u32, lid: u32) {
    if (!pl.live) {
        return;
    }
    for (var e = lid; e < n * p.dk; e = e + WG) {
        let t = e / p.dk;
        let d = e - t * p.dk;
        tile_a[t * MAX_D + d] = q[at(pl.b, p.tq, start + t, pl.h, p.dk) + d];
    }
    for (var e = lid; e < n * p.dv; e = e + WG) {
        let t = e / p.dv;
        let d = e - t * p.dv;
        tile_b[t * MAX_D + d] = g[at(pl.b, p.tq, start + t, pl.h, p.dv) + d];
    }
}

// r · (row t of tile_a), over dk values.
fn dot_a(r: ptr<function, array<f32, 64>>, t: u32) -> f32 {
    var s = 0.0;
    for (var d = 0u; d < p.dk; d = d + 1u) {
        s = s + (*r)[d] * tile_a[t * MAX_D + d];
    }
    return s;
}

// r · (row t of tile_b), over dv values.
fn dot_b(r: ptr<function, array<f32, 64>>, t: u32) -> f32 {
    var s = 0.0;
    for (var d = 0u; d < p.dv; d = d + 1u) {
        s = s + (*r)[d] * tile_b[t * MAX_D + d];
    }
    return s;
}

// acc += w · (row t of tile_a), over dk values.
fn add_a(acc: ptr<function, array<f32, 64>>, w: f32, t: u32) {
    for (var d = 0u; d < p.dk; d = d + 1u) {
        (*acc)[d] = (*acc)[d] + w * tile_a[t * MAX_D + d];
    }
}

// acc += w · (row t of tile_b), over dv values.
fn add_b(acc: ptr<function, array<f32, 64>>, w: f32, t: u32) {
    for (var d = 0u; d < p.dv; d = d + 1u) {
        (*acc)[d] = (*acc)[d] + w * tile_b[t * MAX_D + d];
    }
}

// The dropout factor M_ij of weight (bh, i, j) for the stream of this step: 0 or
// drop_scale; 1 when `drop` is false (the plain entry points).
fn mask(drop: bool, stream: u32, bh: u32, i: u32, j: u32) -> f32 {
    if (!drop) {
        return 1.0;
    }
    let e = (bh * p.tq + i) * p.tk + j;
    return select(0.0, p.drop_scale, (pcg_hash(e ^ stream) >> 8u) >= p.drop_threshold);
}

// Keys a query block needs: all, or with a causal mask up to its last query.
fn key_end(block: u32) -> u32 {
    if (p.causal != 0u) {
        return min(p.tk, (block + 1u) * WG);
    }
    return p.tk;
}

// Keys of the workgroup's sample that are not padding (all without p.masked; 0 for
// a workgroup past the end). Uniform over the workgroup, so loops bounded by it may
// hold barriers.
fn key_count(pl: Place) -> u32 {
    if (p.masked == 0u) {
        return p.tk;
    }
    if (!pl.live) {
        return 0u;
    }
    return min(p.tk, u32(max(klen[pl.b], 0.0)));
}

// How many of the n staged keys from `start` query i sees.
fn keys_seen(i: u32, start: u32, n: u32) -> u32 {
    if (p.causal != 0u) {
        return min(n, i + 1u - min(i + 1u, start));
    }
    return n;
}

@compute @workgroup_size(64)
fn attention_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    forward(wg, nwg, lid, false, 0u);
}

@compute @workgroup_size(64)
fn attention_forward_dropout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    forward(wg, nwg, lid, true, hash_stream(p.drop_seed, st.draw));
}

fn forward(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, drop: bool, stream: u32) {
    let pl = place(wg, nwg, lid, p.tq);
    var qr: array<f32, 64>;
    var acc: array<f32, 64>;
    if (pl.valid) {
        let base = at(pl.b, p.tq, pl.r, pl.h, p.dk);
        for (var d = 0u; d < p.dk; d = d + 1u) {
            qr[d] = q[base + d] * p.scale;
        }
    }
    var m = 0.0;
    var l = 0.0;
    let end = min(key_end(pl.block), key_count(pl));
    for (var start = 0u; start < end; start = start + TILE) {
        let n = min(TILE, end - start);
        stage_keys(pl, start, n, lid);
        workgroupBarrier();
        if (pl.valid) {
            let seen = keys_seen(pl.r, start, n);
            for (var t = 0u; t < seen; t = t + 1u) {
                let s = dot_a(&qr, t);
                if (s > m || l == 0.0) {
                    // The first key (l = 0) only sets the running max.
                    let c = select(exp(m - s), 0.0, l == 0.0);
                    l = l * c;
                    for (var d = 0u; d < p.dv; d = d + 1u) {
                        acc[d] = acc[d] * c;
                    }
                    m = s;
                }
                let e = exp(s - m);
                l = l + e;
                add_b(&acc, e * mask(drop, stream, pl.bh, pl.r, start + t), t);
            }
        }
        workgroupBarrier();
    }
    if (pl.valid) {
        let base = at(pl.b, p.tq, pl.r, pl.h, p.dv);
        // l = 0: the query saw no key (every one padding), so O = 0.
        let inv = select(1.0 / l, 0.0, l == 0.0);
        for (var d = 0u; d < p.dv; d = d + 1u) {
            out[base + d] = acc[d] * inv;
        }
        stats[pl.bh * p.tq + pl.r] = vec2<f32>(select(m + log(l), 0.0, l == 0.0), 0.0);
    }
}

// One invocation per (bh, query row) over a flat grid of WG-wide workgroups.
@compute @workgroup_size(64)
fn attention_delta(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let r = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    if (r >= p.bh * p.tq) {
        return;
    }
    let bh = r / p.tq;
    let i = r - bh * p.tq;
    let base = at(bh / p.heads, p.tq, i, bh % p.heads, p.dv);
    var s = 0.0;
    for (var d = 0u; d < p.dv; d = d + 1u) {
        s = s + g[base + d] * out[base + d];
    }
    stats[r].y = s;
}

@compute @workgroup_size(64)
fn attention_backward_q(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    backward_q(wg, nwg, lid, false, 0u);
}

@compute @workgroup_size(64)
fn attention_backward_q_dropout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    backward_q(wg, nwg, lid, true, hash_stream(p.drop_seed, st.draw));
}

fn backward_q(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, drop: bool, stream: u32) {
    let pl = place(wg, nwg, lid, p.tq);
    var qr: array<f32, 64>;
    var gr: array<f32, 64>;
    var acc: array<f32, 64>;
    var row = vec2<f32>(0.0, 0.0);
    if (pl.valid) {
        let qb = at(pl.b, p.tq, pl.r, pl.h, p.dk);
        for (var d = 0u; d < p.dk; d = d + 1u) {
            qr[d] = q[qb + d] * p.scale;
        }
        let gb = at(pl.b, p.tq, pl.r, pl.h, p.dv);
        for (var d = 0u; d < p.dv; d = d + 1u) {
            gr[d] = g[gb + d];
        }
        row = stats[pl.bh * p.tq + pl.r];
    }
    let end = min(key_end(pl.block), key_count(pl));
    for (var start = 0u; start < end; start = start + TILE) {
        let n = min(TILE, end - start);
        stage_keys(pl, start, n, lid);
        workgroupBarrier();
        if (pl.valid) {
            let seen = keys_seen(pl.r, start, n);
            for (var t = 0u; t < seen; t = t + 1u) {
                let m = mask(drop, stream, pl.bh, pl.r, start + t);
                let ds = exp(dot_a(&qr, t) - row.x) * (m * dot_b(&gr, t) - row.y);
                add_a(&acc, ds, t);
            }
        }
        workgroupBarrier();
    }
    if (pl.valid) {
        let base = at(pl.b, p.tq, pl.r, pl.h, p.dk);
        for (var d = 0u; d < p.dk; d = d + 1u) {
            out[base + d] = acc[d] * p.scale;
        }
    }
}

@compute @workgroup_size(64)
fn attention_backward_kv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    backward_kv(wg, nwg, lid, false, 0u);
}

@compute @workgroup_size(64)
fn attention_backward_kv_dropout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    backward_kv(wg, nwg, lid, true, hash_stream(p.drop_seed, st.draw));
}

fn backward_kv(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, drop: bool, stream: u32) {
    let pl = place(wg, nwg, lid, p.tk);
    let j = pl.r;
    // A padding key is seen by no query: its gradients stay 0.
    let seen = pl.valid && j < key_count(pl);
    var kr: array<f32, 64>;
    var vr: array<f32, 64>;
    var dka: array<f32, 64>;
    var dva: array<f32, 64>;
    if (pl.valid) {
        let kb = at(pl.b, p.tk, j, pl.h, p.dk);
        for (var d = 0u; d < p.dk; d = d + 1u) {
            kr[d] = k[kb + d] * p.scale;
        }
        let vb = at(pl.b, p.tk, j, pl.h, p.dv);
        for (var d = 0u; d < p.dv; d = d + 1u) {
            vr[d] = v[vb + d];
        }
    }
    // With a causal mask only queries i ≥ j see key j: start at the tile holding
    // this block's first key.
    var first = 0u;
    if (p.causal != 0u) {
        first = (pl.block * WG / TILE) * TILE;
    }
    for (var start = first; start < p.tq; start = start + TILE) {
        let n = min(TILE, p.tq - start);
        stage_queries(pl, start, n, lid);
        workgroupBarrier();
        if (seen) {
            for (var t = 0u; t < n; t = t + 1u) {
                let i = start + t;
                if (p.causal != 0u && i < j) {
                    continue;
                }
                let row = stats[pl.bh * p.tq + i];
                let pij = exp(dot_a(&kr, t) - row.x);
                let m = mask(drop, stream, pl.bh, i, j);
                add_b(&dva, pij * m, t);
                add_a(&dka, pij * (m * dot_b(&vr, t) - row.y), t);
            }
        }
        workgroupBarrier();
    }
    if (pl.valid) {
        let kb = at(pl.b, p.tk, j, pl.h, p.dk);
        for (var d = 0u; d < p.dk; d = d + 1u) {
            out[kb + d] = dka[d] * p.scale;
        }
        let vb = at(pl.b, p.tk, j, pl.h, p.dv);
        for (var d = 0u; d < p.dv; d = d + 1u) {
            out2[vb + d] = dva[d];
        }
    }
}
