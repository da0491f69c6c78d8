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
//                       only the picked rows of dy read (small vocabularies; WG a
//                       multiple of 32).
//   Larger vocabularies sort instead, as PyTorch's embedding backward does: the
//   tokens' (row, token) pairs are sorted by row with a stable LSD radix sort of
//   8-bit digits (tokens stay in token order within a row), then each row sums
//   its run of tokens in that order: tokens·passes + vocab·log(tokens) work
//   instead of vocab·tokens, the same sums in the same order.
//   embedding_sort_count:   per block of SORT_WG tokens, how many have each
//                           digit: hist[digit · blocks + block].
//   embedding_sort_scan:    one workgroup: hist turned into its exclusive prefix
//                           sums (digit-major), where each block's tokens of each
//                           digit go.
//   embedding_sort_scatter: each token to hist[its digit, its block] + the tokens
//                           of its digit before it in its block (stable).
//                           The first pass (shift 0) reads the rows from the ids
//                           (row vocab for an id that selects none, sorted last)
//                           and the tokens' own indices; later passes read the
//                           previous pass's output.
//   embedding_backward_sorted: one workgroup per row: its run found by binary
//                           search in the sorted rows, dy of its tokens summed in
//                           order, one invocation per column, four tokens' loads
//                           issued before their adds (a long run, a frequent
//                           token, is then not one load latency per token).
//
// Grids may be folded into 2-D/3-D; ids past the end do nothing.

struct Params {
    tokens: u32,
    vocab: u32,
    dim: u32,
    // The sort pass's digit: bits shift .. shift + 7 of the row.
    shift: u32,
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

// ---- The sorted gradient (larger vocabularies) ----

// Radix of the sort: one invocation per digit value, and per token of a block.
const SORT_WG: u32 = 256u;

// The previous pass's rows and tokens (unused by the first pass).
@group(0) @binding(4) var<storage, read> rows_in: array<u32>;
@group(0) @binding(5) var<storage, read> tokens_in: array<u32>;
// This pass's output; embedding_backward_sorted reads the last pass's here.
@group(0) @binding(6) var<storage, read_write> rows_out: array<u32>;
@group(0) @binding(7) var<storage, read_write> tokens_out: array<u32>;
// Per digit and block: counts, then where they go.
@group(0) @binding(8) var<storage, read_write> hist: array<u32>;

fn sort_blocks() -> u32 {
    return (p.tokens + SORT_WG - 1u) / SORT_WG;
}

// Entry i of this pass's input: its row (the sort key) and its token.
fn sort_row(i: u32) -> u32 {
    if (p.shift == 0u) {
        return row_of(i);
    }
    return rows_in[i];
}

fn sort_token(i: u32) -> u32 {
    if (p.shift == 0u) {
        return i;
    }
    return tokens_in[i];
}

fn digit_of(row: u32) -> u32 {
    return (row >> p.shift) & (SORT_WG - 1u);
}

var<workgroup> digit_counts: array<atomic<u32>, SORT_WG>;

@compute @workgroup_size(SORT_WG)
fn embedding_sort_count(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let block = group_index(wg, nwg);
    let blocks = sort_blocks();
    if (block >= blocks) {
        return;
    }
    atomicStore(&digit_counts[lid], 0u);
    workgroupBarrier();
    let i = block * SORT_WG + lid;
    if (i < p.tokens) {
        atomicAdd(&digit_counts[digit_of(sort_row(i))], 1u);
    }
    workgroupBarrier();
    hist[lid * blocks + block] = atomicLoad(&digit_counts[lid]);
}

var<workgroup> scan_sums: array<u32, SORT_WG>;

@compute @workgroup_size(SORT_WG)
fn embedding_sort_scan(@builtin(local_invocation_index) lid: u32) {
    let total = SORT_WG * sort_blocks();
    let per = (total + SORT_WG - 1u) / SORT_WG;
    let start = min(lid * per, total);
    let end = min(start + per, total);
    var sum = 0u;
    for (var i = start; i < end; i++) {
        sum += hist[i];
    }
    scan_sums[lid] = sum;
    workgroupBarrier();
    if (lid == 0u) {
        var run = 0u;
        for (var l = 0u; l < SORT_WG; l++) {
            let s = scan_sums[l];
            scan_sums[l] = run;
            run += s;
        }
    }
    workgroupBarrier();
    var run = scan_sums[lid];
    for (var i = start; i < end; i++) {
        let c = hist[i];
        hist[i] = run;
        run += c;
    }
}

// Each invocation's digit in its block (SORT_WG: no token).
var<workgroup> block_digits: array<u32, SORT_WG>;

@compute @workgroup_size(SORT_WG)
fn embedding_sort_scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let block = group_index(wg, nwg);
    let blocks = sort_blocks();
    if (block >= blocks) {
        return;
    }
    let i = block * SORT_WG + lid;
    var row = 0u;
    var digit = SORT_WG;
    if (i < p.tokens) {
        row = sort_row(i);
        digit = digit_of(row);
    }
    block_digits[lid] = digit;
    workgroupBarrier();
    if (i < p.tokens) {
        // Stable: after the tokens of the same digit earlier in the block.
        var rank = 0u;
        for (var l = 0u; l < lid; l++) {
            rank += u32(block_digits[l] == digit);
        }
        let dest = hist[digit * blocks + block] + rank;
        rows_out[dest] = row;
        tokens_out[dest] = sort_token(i);
    }
}

// The first index of the sorted rows holding a row ≥ row.
fn first_at_least(row: u32) -> u32 {
    var lo = 0u;
    var hi = p.tokens;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (rows_out[mid] < row) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

@compute @workgroup_size(WG)
fn embedding_backward_sorted(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let v = group_index(wg, nwg);
    if (v >= p.vocab) {
        return;
    }
    let start = first_at_least(v);
    let end = first_at_least(v + 1u);
    for (var d = lid; d < p.dim; d += WG) {
        var acc = 0.0;
        var i = start;
        // Four tokens' loads issued before their adds (still in token order), so
        // a long run (a frequent token) waits one load latency per four tokens.
        for (; i + 4u <= end; i += 4u) {
            let t0 = tokens_out[i];
            let t1 = tokens_out[i + 1u];
            let t2 = tokens_out[i + 2u];
            let t3 = tokens_out[i + 3u];
            let a = src[t0 * p.dim + d];
            let b = src[t1 * p.dim + d];
            let c = src[t2 * p.dim + d];
            let e = src[t3 * p.dim + d];
            acc += a;
            acc += b;
            acc += c;
            acc += e;
        }
        for (; i < end; i++) {
            acc += src[tokens_out[i] * p.dim + d];
        }
        dst[v * p.dim + d] = acc;
    }
}
