// Embedding lookup: rows of a [vocab, dim] table picked by token ids (Keras'
// Embedding, PyTorch's nn.Embedding). Ids arrive as f32 (a model's input is f32);
// an id that is not a whole number in [0, vocab) selects nothing: its output row is
// zeros and it adds to no gradient.
//
// Launchers: src/kernels/embedding.rs. CPU twins: src/reference/embedding.rs.
//
//   embedding_forward:  y[t, d] = table[id(t), d]; one invocation per output value.
//   embedding_backward: dtable[v, d] = Σ_{t: id(t) = v} dy[t, d], summed in token
//                       order (deterministic, no atomics): one workgroup per vocabulary
//                       row, its invocations over d, each scanning every token's id
//                       (vocab·tokens comparisons: meant for vocabularies of up to a
//                       few tens of thousands at the batch sizes of one step).
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

@compute @workgroup_size(WG)
fn embedding_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let v = group_index(wg, nwg);
    if (v >= p.vocab) {
        return;
    }
    for (var d = lid; d < p.dim; d = d + WG) {
        var acc = 0.0;
        for (var t = 0u; t < p.tokens; t = t + 1u) {
            if (row_of(t) == v) {
                acc = acc + src[t * p.dim + d];
            }
        }
        dst[v * p.dim + d] = acc;
    }
}
