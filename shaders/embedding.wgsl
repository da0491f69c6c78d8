// Embedding lookup: rows of a [vocab, dim] table picked by token ids (Keras'
// Embedding, PyTorch's nn.Embedding). Ids arrive as f32 (a model's input is f32);
// an id that is not a whole number in [0, vocab) selects nothing: its output row is
// zeros and it adds to no gradient.
//
// Launchers: src/kernels/embedding.rs. CPU twins: src/reference/embedding.rs.
//
//   embedding_forward:  y[t, d] = table[id(t), d]; one invocation per output value.
//   embedding_backward: dtable[v, d] = Σ_{t: id(t) = v} dy[t, d], summed in token
//                       order (deterministic: no float atomics): one workgroup per
//                       vocabulary row. Per chunk of WG tokens each invocation checks
//                       one token's id and sets its bit in a workgroup mask (integer
//                       atomicOr: the same mask whatever the order); then each
//                       invocation, owning a column d (d0 + lid, over chunks of WG
//                       columns), adds dy of the chunk's picked tokens in bit order.
//                       vocab·tokens id checks per WG columns, not per column, and
//                       only the picked rows of dy read (meant for vocabularies of up
//                       to a few tens of thousands at the batch sizes of one step;
//                       WG a multiple of 32).
//
// Grids may be folded into 2-D/3-D; ids past the end do nothing.

struct Params {
    tokens: u32,
    vocab: u32,
    dim: u32,
    _pad: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<f32>;
// forward: the table; backward: dy.
@group(0) @binding(2) var<storage, read> src: array<f32>;
// forward: y; backward: dtable.
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

// Token t's row, or p.vocab when its id selects none.
fn row_of(t: u32) -> u32 {
    let id = ids[t];
    if (id >= 0.0 && id < f32(p.vocab) && id == floor(id)) {
        return u32(id);
    }
    return p.vocab;
}

@compute @workgroup_size(WG)
fn embedding_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wg, nwg) * WG + lid;
    if (i >= p.tokens * p.dim) {
        return;
    }
    let t = i / p.dim;
    let d = i - t * p.dim;
    let v = row_of(t);
    var value = 0.0;
    if (v < p.vocab) {
        value = src[v * p.dim + d];
    }
    dst[i] = value;
}

// Per chunk of WG tokens, the bits of the ones whose id picks this workgroup's
// row (bit l of word l / 32: token base + l).
var<workgroup> picks: array<atomic<u32>, WG / 32u>;

@compute @workgroup_size(WG)
fn embedding_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let v = group_index(wg, nwg);
    if (v >= p.vocab) {
        return;
    }
    for (var d0 = 0u; d0 < p.dim; d0 += WG) {
        let d = d0 + lid;
        var acc = 0.0;
        for (var base = 0u; base < p.tokens; base += WG) {
            if (lid < WG / 32u) {
                atomicStore(&picks[lid], 0u);
            }
            workgroupBarrier();
            let t = base + lid;
            if (t < p.tokens && row_of(t) == v) {
                atomicOr(&picks[lid / 32u], 1u << (lid % 32u));
            }
            workgroupBarrier();
            if (d < p.dim) {
                for (var w = 0u; w < WG / 32u; w++) {
                    var bits = atomicLoad(&picks[w]);
                    while (bits != 0u) {
                        let l = firstTrailingBit(bits);
                        acc += src[(base + w * 32u + l) * p.dim + d];
                        bits &= bits - 1u;
                    }
                }
            }
            workgroupBarrier();
        }
        if (d < p.dim) {
            dst[v * p.dim + d] = acc;
        }
    }
}
