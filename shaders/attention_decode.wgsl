// One step of a key/value-cache decoder's attention: the query of position
// P = cursor.at (the decoder's position uniform, position.wgsl) attends over the
// keys and values of positions 0..=P, having appended position P's own key and
// value to the cache. Grouped-query attention reads each key/value head in place:
// query head h uses key/value head h / (heads / kv_heads), so the cache holds
// kv_heads heads and nothing is repeated.
//
//   q        [heads·dk]          position P's queries (rotated where the model rotates)
//   k_new    [kv_heads·dk]       position P's keys; v_new [kv_heads·dv] its values
//   k_cache  [T, kv_heads·dk]    rows 0..P−1 hold earlier positions; this dispatch
//   v_cache  [T, kv_heads·dv]    writes row P (from k_new, v_new) and reads no row ≥ P
//   out      [heads·dv]          o_h = Σ_j softmax_j(scale·q_h·k_j)·v_j, j = 0..=P
//
// `attention_decode`: one workgroup per query head (grid = heads). The query, scaled, sits in workgroup
// memory; keys are staged p.tile at a time (rows p.stride apart, an odd stride, so
// that invocation t reading key t's values hits distinct banks) and invocation t
// scores key t. Every invocation then reads the tile's scores in the same order,
// so all hold the same running max and sum (online softmax, as in FlashAttention);
// the values are staged in the same memory, and invocation i accumulates output
// values i, i + WG, ... (dv ≤ MAX_D). Sums run in a fixed order: results do not
// depend on timing. The first query head of each group writes the cache row; the
// others read position P from k_new and v_new, so no workgroup reads a row another
// one writes.
//
// Split over the keys (flash-decoding), for caches long enough that `heads`
// workgroups leave a GPU idle: `attention_decode_split` gives each (head, split s)
// a workgroup for keys s·chunk .. (s+1)·chunk − 1 (those up to P), writing its
// running max, sum and unnormalized output to `partial` [heads, splits, 2 + dv]
// (a split past P writes sum 0); `attention_decode_combine` (one workgroup per
// head) rescales the splits to their common max, in split order, and divides.
// Split 0 appends the cache row.
//
// Launcher: src/kernels/attention_decode.rs. CPU twin: src/reference/attention_decode.rs.

const WG: u32 = 64u;
const MAX_D: u32 = 256u;
const PER: u32 = 4u; // MAX_D / WG output values per invocation
// Workgroup memory: the query (MAX_D), the tile (TILE_FLOATS), the scores (WG):
// 4,096 floats, 16 KiB, WebGPU's guaranteed minimum.
const TILE_FLOATS: u32 = 3776u;
// The running max before the first key: below any score a real model gives
// (scores under it would leave the sum 0).
const LOWEST: f32 = -3.0e38;

struct Params {
    heads: u32,
    kv_heads: u32,
    dk: u32,
    dv: u32,
    scale: f32,
    tile: u32,    // keys per tile: min(WG, TILE_FLOATS / stride)
    stride: u32,  // max(dk, dv) rounded up to odd
    splits: u32,  // workgroups per head over the keys (1: attention_decode)
    chunk: u32,   // keys per split
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_new: array<f32>;
@group(0) @binding(3) var<storage, read> v_new: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<uniform> cursor: Position;
// The splits' (max, sum, unnormalized output) per head.
@group(0) @binding(8) var<storage, read_write> partial: array<f32>;

var<workgroup> qs: array<f32, 256>; // MAX_D
var<workgroup> tile: array<f32, 3776>; // TILE_FLOATS
var<workgroup> w: array<f32, 64>; // WG

// One workgroup's softmax over some keys: the running max and sum, and the
// output values lid, lid + WG, ... unnormalized.
struct Partial {
    m: f32,
    l: f32,
    acc: array<f32, 4>, // PER
}

// The first query head of each group writes position P's key and value into the cache.
fn append(h: u32, lid: u32) {
    let group = p.heads / p.kv_heads;
    if (h % group != 0u) {
        return;
    }
    let kvh = h / group;
    let at = cursor.at;
    for (var d = lid; d < p.dk; d = d + WG) {
        k_cache[at * p.kv_heads * p.dk + kvh * p.dk + d] = k_new[kvh * p.dk + d];
    }
    for (var d = lid; d < p.dv; d = d + WG) {
        v_cache[at * p.kv_heads * p.dv + kvh * p.dv + d] = v_new[kvh * p.dv + d];
    }
}

// Query head h over keys first .. end − 1 (end ≤ P + 1; none when first = end).
// Every invocation of the workgroup calls it with the same bounds.
fn attend(h: u32, lid: u32, first: u32, end: u32) -> Partial {
    let kvh = h / (p.heads / p.kv_heads);
    let at = cursor.at;
    let kw = p.kv_heads * p.dk;
    let vw = p.kv_heads * p.dv;
    let k0 = kvh * p.dk;
    let v0 = kvh * p.dv;
    for (var d = lid; d < p.dk; d = d + WG) {
        qs[d] = q[h * p.dk + d] * p.scale;
    }
    var r = Partial(LOWEST, 0.0, array<f32, 4>(0.0, 0.0, 0.0, 0.0));
    for (var start = first; start < end; start = start + p.tile) {
        let n = min(p.tile, end - start);
        // The previous tile's readers are done (and, the first time, qs is written).
        workgroupBarrier();
        for (var e = lid; e < n * p.dk; e = e + WG) {
            let t = e / p.dk;
            let d = e - t * p.dk;
            let j = start + t;
            var x: f32;
            if (j == at) {
                x = k_new[k0 + d];
            } else {
                x = k_cache[j * kw + k0 + d];
            }
            tile[t * p.stride + d] = x;
        }
        workgroupBarrier();
        var s = LOWEST;
        if (lid < n) {
            var dot = 0.0;
            for (var d = 0u; d < p.dk; d = d + 1u) {
                dot = dot + qs[d] * tile[lid * p.stride + d];
            }
            s = dot;
        }
        w[lid] = s;
        workgroupBarrier();
        var tile_max = w[0];
        for (var t = 1u; t < n; t = t + 1u) {
            tile_max = max(tile_max, w[t]);
        }
        let m_new = max(r.m, tile_max);
        let c = exp(r.m - m_new);
        // Everyone has read the scores and the keys before they are overwritten.
        workgroupBarrier();
        if (lid < n) {
            w[lid] = exp(s - m_new);
        }
        for (var e = lid; e < n * p.dv; e = e + WG) {
            let t = e / p.dv;
            let d = e - t * p.dv;
            let j = start + t;
            var x: f32;
            if (j == at) {
                x = v_new[v0 + d];
            } else {
                x = v_cache[j * vw + v0 + d];
            }
            tile[t * p.stride + d] = x;
        }
        workgroupBarrier();
        var sum = 0.0;
        for (var t = 0u; t < n; t = t + 1u) {
            sum = sum + w[t];
        }
        r.l = r.l * c + sum;
        for (var i = 0u; i < PER; i = i + 1u) {
            let d = lid + i * WG;
            if (d < p.dv) {
                var a = r.acc[i] * c;
                for (var t = 0u; t < n; t = t + 1u) {
                    a = a + w[t] * tile[t * p.stride + d];
                }
                r.acc[i] = a;
            }
        }
        r.m = m_new;
    }
    return r;
}

@compute @workgroup_size(64)
fn attention_decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    append(h, lid);
    let r = attend(h, lid, 0u, cursor.at + 1u);
    // l ≥ 1: it sums the largest score's weight, exp(0) = 1, among others.
    for (var i = 0u; i < PER; i = i + 1u) {
        let d = lid + i * WG;
        if (d < p.dv) {
            out[h * p.dv + d] = r.acc[i] / r.l;
        }
    }
}

@compute @workgroup_size(64)
fn attention_decode_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let split = wg.y;
    if (split == 0u) {
        append(h, lid);
    }
    let keys = cursor.at + 1u;
    let first = min(split * p.chunk, keys);
    let r = attend(h, lid, first, min(first + p.chunk, keys));
    let base = (h * p.splits + split) * (p.dv + 2u);
    if (lid == 0u) {
        partial[base] = r.m;
        partial[base + 1u] = r.l;
    }
    for (var i = 0u; i < PER; i = i + 1u) {
        let d = lid + i * WG;
        if (d < p.dv) {
            partial[base + 2u + d] = r.acc[i];
        }
    }
}

@compute @workgroup_size(64)
fn attention_decode_combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let width = p.dv + 2u;
    // The splits' common max (split 0 always holds key 0), then the sum.
    var big = LOWEST;
    for (var s = 0u; s < p.splits; s = s + 1u) {
        let b = (h * p.splits + s) * width;
        if (partial[b + 1u] > 0.0) {
            big = max(big, partial[b]);
        }
    }
    var total = 0.0;
    for (var s = 0u; s < p.splits; s = s + 1u) {
        let b = (h * p.splits + s) * width;
        if (partial[b + 1u] > 0.0) {
            total = total + partial[b + 1u] * exp(partial[b] - big);
        }
    }
    for (var d = lid; d < p.dv; d = d + WG) {
        var o = 0.0;
        for (var s = 0u; s < p.splits; s = s + 1u) {
            let b = (h * p.splits + s) * width;
            if (partial[b + 1u] > 0.0) {
                o = o + partial[b + 2u + d] * exp(partial[b] - big);
            }
        }
        out[h * p.dv + d] = o / total;
    }
}
