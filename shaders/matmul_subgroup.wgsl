// Register-blocked matmul for CPU adapters (lavapipe): no workgroup memory, no
// barriers; A values are shared between invocations with subgroup shuffles.
//
// Launcher: src/kernels/matmul.rs (MatmulVariant::RegisterLarge / RegisterSmall).
// CPU twin: src/reference/matmul.rs. Same contract and Params as shaders/matmul.wgsl:
//   for batch t < p.batch, with A_t = a[a_off + t*a_bs ..], B_t, C_t likewise:
//   op(A_t) is [M, K]: stored [M, K], or [K, M] when TRANS_A (the TN layout).
//   op(B_t) is [K, N]: stored [K, N], or [N, K] when TRANS_B (the NT layout).
//   C_t[i, j] = act(sum_k op(A_t)[i, k] * op(B_t)[k, j] + bias[j])   (FLAG_BIAS optional)
//   or, with FLAG_ACCUMULATE, C_t[i, j] += sum_k ...   (no bias, no activation).
//   C is only read with FLAG_ACCUMULATE; without FLAG_BIAS the bias binding is a
//   stand-in and never read. Here the flags and the activation come from the
//   override constants ACCUMULATE, HAS_BIAS and ACT (the launcher sets them to
//   match p.flags and p.act).
//   With REDUCE_BATCH the batch's products are summed into one C (C_0):
//   C[i, j] = act(sum_t sum_k op(A_t)[i, k] * op(B_t)[k, j] + bias[j]) (or +=),
//   and the grid has tiles only (no batch dimension).
//   With SPLIT_K the product is the first half of a split-K product, exactly as in
//   matmul.wgsl (p.k_split K ranges of p.k_chunk, raw partials stored at
//   c[((t * k_split + s) * M + i) * N + j]; the launcher then sets ACT,
//   ACCUMULATE and HAS_BIAS off and runs matmul_split_reduce).
// Assumes (checked by the launcher): M, N, K, batch >= 1, every index fits the bound
// buffers and u32, C batches do not overlap, C aliases no input, the device has
// subgroups, and the REG_WG invocations of a workgroup fill subgroups from lane 0.
//
// The Shader registry appends an epilogue hook: matmul_store.wgsl (the contract
// above) or matmul_adam.wgsl (C is a parameter and the product its gradient:
// apply Adam instead of storing; see that file).
//
// This file is separate from matmul.wgsl because a module that uses subgroup
// operations fails validation on devices without them; the tiled kernels there
// must work everywhere.
//
// Why this shape (measured on lavapipe, Mesa 22.3, see BENCHMARKS.md): there every
// load from a storage buffer or workgroup memory is emitted as a loop over the SIMD
// lanes with a bounds check per lane, ~21 cycles per lane and component, while
// arithmetic and subgroup shuffles cost about one cycle. So the kernel minimises
// loads per multiply-add:
// - Each invocation accumulates an RM x RN block of C in registers (RM = 64,
//   RN = 16 for the large entry point; 16 x 4 or 32 x 4 for the small one, by the
//   override constant SMALL_ROWS), the 8 invocations
//   of a subgroup side by side along N: a workgroup computes RM x (8 RN) of C.
// - Per k each invocation loads its RN values of B's row k itself (nobody else
//   needs them). A values are the same for the whole subgroup: for 8 consecutive
//   k, lane l loads A[i0 + r, k0 + l] for every row r, then step j takes them from
//   lane j with subgroupShuffle. That is RN + RM / 8 loads per RM * RN
//   multiply-adds (20 per 1024 for the large block).
// - Accumulators, B values and shared A values live in private arrays indexed only
//   by constants after inlining (the helpers below are called with literal row
//   numbers), so the compiler keeps them in registers; a loop over rows would index
//   them dynamically and push them to memory.
// - Rows past M and columns past N are clamped to the last one for loading and
//   never stored, so the inner steps have no branches; K is handled in blocks of 8
//   (fully unrolled) and a generic tail.
// - lavapipe has no real branches: both sides of every `if` run under a lane mask,
//   and a masked-off load or store still runs its loop over the lanes. So the
//   epilogue is fixed per pipeline by override constants (ACT, ACCUMULATE,
//   HAS_BIAS: no run-time switch that would compute every activation and pay the
//   accumulate path's load for each output), the bias is loaded once per column
//   rather than per output, and the block is stored 4 rows at a time in a loop
//   over the row groups inside C, picking each group's values from acc with
//   selects on the uniform group number (see store_group). For K = 10 (a 3x3
//   convolution) the epilogue is most of the kernel: this made it 2.8x faster.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    flags: u32,
    a_bs: u32,
    b_bs: u32,
    c_bs: u32,
    act: u32,
    tiles_m: u32,
    tiles_n: u32,
    k_split: u32,
    k_chunk: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// Invocations per workgroup: one subgroup of 8 lanes on lavapipe (256-bit SIMD).
override REG_WG: u32 = 8u;
// The epilogue, fixed per pipeline (mirrors p.flags and p.act, which the launcher
// sets alike): lavapipe runs both sides of every branch under a lane mask, so a
// run-time switch would pay for every activation and the accumulate path's load
// on each output.
override ACT: u32 = 0u;
override ACCUMULATE: bool = false;
override HAS_BIAS: bool = false;
// Rows per invocation of the small entry point: 16, or 32 (the "mid" block, 32 x 4:
// half the B loads per multiply-add of 16 x 4 for shapes with few output tiles).
override SMALL_ROWS: u32 = 16u;
// Rows per invocation of the large entry point: 64, or 32 (the "wide" block,
// 32 x 16: no multiply-adds wasted on rows past M when M is 32, e.g. a Dense
// layer's input gradient at batch 32).
override LARGE_ROWS: u32 = 64u;
// Sum the products of the whole batch into one C (see the contract above): each
// invocation walks K once per batch entry with the same accumulators.
override REDUCE_BATCH: bool = false;
// Store raw partial sums of one K range (see the contract above).
override SPLIT_K: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn activate(x: f32) -> f32 {
    return apply_activation(ACT, x);  // shaders/activation.wgsl
}

// State of this invocation, shared by the helpers.
var<private> acc: array<vec4<f32>, 256>;  // row r, columns 4q..4q+3 at acc[4r + q]
var<private> a_sh: array<f32, 64>;        // A[i0 + r, k0 + lane] for the current block
var<private> bv: array<vec4<f32>, 4>;     // B[k, j0 .. j0 + 15] for the current k
var<private> bcol: array<vec4<f32>, 4>;   // bias[j0 .. j0 + 15] (HAS_BIAS)
var<private> b_col: array<u32, 16>;       // index of B[0, j0 + s] (clamped column)
var<private> i0: u32;
var<private> j0: u32;
var<private> a_base: u32;
var<private> b_shift: u32;                // B offset of the current batch entry
var<private> c_base: u32;
var<private> lane: u32;
var<private> k_end: u32;                  // end of this invocation's K range

// Loads this lane's A value of row r for the block starting at k0 (0 past K).
// Rows past M load nothing (their lane mask is off, which lavapipe skips cheaply;
// the block's rows past M are never stored).
fn load_a(r: u32, k0: u32) {
    let kk = k0 + lane;
    let i = i0 + r;
    var v = 0.0;
    if (kk < k_end && i < p.m) {
        if (TRANS_A) {
            v = a[a_base + kk * p.m + i];
        } else {
            v = a[a_base + i * p.k + kk];
        }
    }
    a_sh[r] = v;
}

fn set_col(s: u32, b_base: u32) {
    let j = min(j0 + s, p.n - 1u);
    if (TRANS_B) {
        b_col[s] = b_base + j * p.k;
    } else {
        b_col[s] = b_base + j;
    }
}

// Loads B[kk, j0 + 4q .. j0 + 4q + 3] into bv[q].
fn load_b(q: u32, kk: u32) {
    var o = kk * p.n;
    if (TRANS_B) {
        o = kk;
    }
    let s = 4u * q;
    bv[q] = vec4<f32>(load_b1(s, o), load_b1(s + 1u, o), load_b1(s + 2u, o), load_b1(s + 3u, o));
}

// B value of column j0 + s at offset o; columns past N load nothing (masked off,
// cheap on lavapipe; never stored).
fn load_b1(s: u32, o: u32) -> f32 {
    var v = 0.0;
    if (j0 + s < p.n) {
        v = b[b_col[s] + o + b_shift];
    }
    return v;
}

// Row r += A[i0 + r, k] * B[k, j0 .. j0 + 15]; A taken from lane j.
fn mac16(r: u32, j: u32) {
    let av = vec4<f32>(subgroupShuffle(a_sh[r], j));
    acc[4u * r] = fma(av, bv[0], acc[4u * r]);
    acc[4u * r + 1u] = fma(av, bv[1], acc[4u * r + 1u]);
    acc[4u * r + 2u] = fma(av, bv[2], acc[4u * r + 2u]);
    acc[4u * r + 3u] = fma(av, bv[3], acc[4u * r + 3u]);
}

// Row r += A[i0 + r, k] * B[k, j0 .. j0 + 3].
fn mac4(r: u32, j: u32) {
    let av = vec4<f32>(subgroupShuffle(a_sh[r], j));
    acc[4u * r] = fma(av, bv[0], acc[4u * r]);
}

// One k of the large block (64 x 16 per invocation), A from lane j.
fn step_large(kk: u32, j: u32) {
    load_b(0u, kk); load_b(1u, kk); load_b(2u, kk); load_b(3u, kk);
    mac16(0u, j); mac16(1u, j); mac16(2u, j); mac16(3u, j); mac16(4u, j); mac16(5u, j); mac16(6u, j); mac16(7u, j);
    mac16(8u, j); mac16(9u, j); mac16(10u, j); mac16(11u, j); mac16(12u, j); mac16(13u, j); mac16(14u, j); mac16(15u, j);
    mac16(16u, j); mac16(17u, j); mac16(18u, j); mac16(19u, j); mac16(20u, j); mac16(21u, j); mac16(22u, j); mac16(23u, j);
    mac16(24u, j); mac16(25u, j); mac16(26u, j); mac16(27u, j); mac16(28u, j); mac16(29u, j); mac16(30u, j); mac16(31u, j);
    if (LARGE_ROWS > 32u) {
    mac16(32u, j); mac16(33u, j); mac16(34u, j); mac16(35u, j); mac16(36u, j); mac16(37u, j); mac16(38u, j); mac16(39u, j);
    mac16(40u, j); mac16(41u, j); mac16(42u, j); mac16(43u, j); mac16(44u, j); mac16(45u, j); mac16(46u, j); mac16(47u, j);
    mac16(48u, j); mac16(49u, j); mac16(50u, j); mac16(51u, j); mac16(52u, j); mac16(53u, j); mac16(54u, j); mac16(55u, j);
    mac16(56u, j); mac16(57u, j); mac16(58u, j); mac16(59u, j); mac16(60u, j); mac16(61u, j); mac16(62u, j); mac16(63u, j);
    }
}

// One k of the small block (SMALL_ROWS x 4 per invocation), A from lane j.
fn step_small(kk: u32, j: u32) {
    load_b(0u, kk);
    mac4(0u, j); mac4(1u, j); mac4(2u, j); mac4(3u, j); mac4(4u, j); mac4(5u, j); mac4(6u, j); mac4(7u, j);
    mac4(8u, j); mac4(9u, j); mac4(10u, j); mac4(11u, j); mac4(12u, j); mac4(13u, j); mac4(14u, j); mac4(15u, j);
    if (SMALL_ROWS > 16u) {
        mac4(16u, j); mac4(17u, j); mac4(18u, j); mac4(19u, j); mac4(20u, j); mac4(21u, j); mac4(22u, j); mac4(23u, j);
        mac4(24u, j); mac4(25u, j); mac4(26u, j); mac4(27u, j); mac4(28u, j); mac4(29u, j); mac4(30u, j); mac4(31u, j);
    }
}

fn load_a_block(large: bool, k0: u32) {
    load_a(0u, k0); load_a(1u, k0); load_a(2u, k0); load_a(3u, k0); load_a(4u, k0); load_a(5u, k0); load_a(6u, k0); load_a(7u, k0);
    load_a(8u, k0); load_a(9u, k0); load_a(10u, k0); load_a(11u, k0); load_a(12u, k0); load_a(13u, k0); load_a(14u, k0); load_a(15u, k0);
    if (large || SMALL_ROWS > 16u) {
        load_a(16u, k0); load_a(17u, k0); load_a(18u, k0); load_a(19u, k0); load_a(20u, k0); load_a(21u, k0); load_a(22u, k0); load_a(23u, k0);
        load_a(24u, k0); load_a(25u, k0); load_a(26u, k0); load_a(27u, k0); load_a(28u, k0); load_a(29u, k0); load_a(30u, k0); load_a(31u, k0);
    }
    if (large && LARGE_ROWS > 32u) {
        load_a(32u, k0); load_a(33u, k0); load_a(34u, k0); load_a(35u, k0); load_a(36u, k0); load_a(37u, k0); load_a(38u, k0); load_a(39u, k0);
        load_a(40u, k0); load_a(41u, k0); load_a(42u, k0); load_a(43u, k0); load_a(44u, k0); load_a(45u, k0); load_a(46u, k0); load_a(47u, k0);
        load_a(48u, k0); load_a(49u, k0); load_a(50u, k0); load_a(51u, k0); load_a(52u, k0); load_a(53u, k0); load_a(54u, k0); load_a(55u, k0);
        load_a(56u, k0); load_a(57u, k0); load_a(58u, k0); load_a(59u, k0); load_a(60u, k0); load_a(61u, k0); load_a(62u, k0); load_a(63u, k0);
    }
}

fn step(large: bool, kk: u32, j: u32) {
    if (large) {
        step_large(kk, j);
    } else {
        step_small(kk, j);
    }
}

// Bias of columns j0 + 4q .. j0 + 4q + 3 (clamped into the bias), loaded once per
// invocation before the epilogue when HAS_BIAS.
fn load_bias(q: u32) {
    let last = p.n - 1u;
    let j = j0 + 4u * q;
    bcol[q] = vec4<f32>(bias[min(j, last)], bias[min(j + 1u, last)], bias[min(j + 2u, last)],
                        bias[min(j + 3u, last)]);
}

fn write_c(i: u32, j: u32, sum: f32, b: f32) {
    let idx = c_base + i * p.n + j;
    if (ACCUMULATE) {
        c[idx] = c[idx] + sum;
    } else if (HAS_BIAS) {
        c[idx] = activate(sum + b);
    } else {
        c[idx] = activate(sum);
    }
}

// Writes 4 consecutive outputs of row i from column j, those inside C; b holds
// their biases.
fn store4(i: u32, j: u32, v: vec4<f32>, b: vec4<f32>) {
    if (FUSED_ADAM) {
        // matmul_adam.wgsl: v is the gradient of the parameters at C[i, j ..].
        var count = 0u;
        if (j < p.n) {
            count = min(p.n - j, 4u);
        }
        adam_store4(c_base + i * p.n + j, v, count);
        return;
    }
    if (j < p.n) {
        write_c(i, j, v.x, b.x);
    }
    if (j + 1u < p.n) {
        write_c(i, j + 1u, v.y, b.y);
    }
    if (j + 2u < p.n) {
        write_c(i, j + 2u, v.z, b.z);
    }
    if (j + 3u < p.n) {
        write_c(i, j + 3u, v.w, b.w);
    }
}

// The epilogue stores the block 4 rows at a time in a loop over row groups g, so
// only the groups that reach into C cost anything (lavapipe runs both sides of a
// branch: a fully unrolled store of all 64 rows would pay for the rows past M too,
// and takes LLVM far longer to compile). Group g's values are chosen from acc with
// selects on the uniform g, so every index into acc stays a constant: a dynamic
// index (or a dynamically indexed copy of the block) would live in memory and cost
// a per-lane gather per output, and copies into such an array can take LLVM
// minutes to compile.

// Entry x of the large block, row group g < LARGE_ROWS / 4 (x < 16: rows 0..3 of
// the group).
fn pick16(x: u32, g: u32) -> vec4<f32> {
    var v = acc[x];
    v = select(v, acc[x + 16u], g == 1u);
    v = select(v, acc[x + 32u], g == 2u);
    v = select(v, acc[x + 48u], g == 3u);
    v = select(v, acc[x + 64u], g == 4u);
    v = select(v, acc[x + 80u], g == 5u);
    v = select(v, acc[x + 96u], g == 6u);
    v = select(v, acc[x + 112u], g == 7u);
    if (LARGE_ROWS <= 32u) {
        return v;
    }
    v = select(v, acc[x + 128u], g == 8u);
    v = select(v, acc[x + 144u], g == 9u);
    v = select(v, acc[x + 160u], g == 10u);
    v = select(v, acc[x + 176u], g == 11u);
    v = select(v, acc[x + 192u], g == 12u);
    v = select(v, acc[x + 208u], g == 13u);
    v = select(v, acc[x + 224u], g == 14u);
    v = select(v, acc[x + 240u], g == 15u);
    return v;
}

// Entry x of the small block (row r at acc[4r]), row group g < SMALL_ROWS / 4.
fn pick4(x: u32, g: u32) -> vec4<f32> {
    var v = acc[x];
    v = select(v, acc[x + 16u], g == 1u);
    v = select(v, acc[x + 32u], g == 2u);
    v = select(v, acc[x + 48u], g == 3u);
    if (SMALL_ROWS > 16u) {
        v = select(v, acc[x + 64u], g == 4u);
        v = select(v, acc[x + 80u], g == 5u);
        v = select(v, acc[x + 96u], g == 6u);
        v = select(v, acc[x + 112u], g == 7u);
    }
    return v;
}

// Stores row r of group g of the large block (columns j0 .. j0 + 15) as row i of
// C, if inside C.
fn store_row16(r: u32, g: u32, i: u32) {
    if (i < p.m) {
        store4(i, j0, pick16(4u * r, g), bcol[0]);
        store4(i, j0 + 4u, pick16(4u * r + 1u, g), bcol[1]);
        store4(i, j0 + 8u, pick16(4u * r + 2u, g), bcol[2]);
        store4(i, j0 + 12u, pick16(4u * r + 3u, g), bcol[3]);
    }
}

// Stores row r of group g of the small block (columns j0 .. j0 + 3) as row i of C,
// if inside C.
fn store_row4(r: u32, g: u32, i: u32) {
    if (i < p.m) {
        store4(i, j0, pick4(4u * r, g), bcol[0]);
    }
}

// Stores the 4 rows of group g as rows i .. i + 3 of C (those inside C).
fn store_group(large: bool, g: u32, i: u32) {
    if (large) {
        store_row16(0u, g, i); store_row16(1u, g, i + 1u); store_row16(2u, g, i + 2u); store_row16(3u, g, i + 3u);
    } else {
        store_row4(0u, g, i); store_row4(1u, g, i + 1u); store_row4(2u, g, i + 2u); store_row4(3u, g, i + 3u);
    }
}

fn run(large: bool, wg: vec3<u32>, nwg: vec3<u32>, lid: u32, sl: u32, sg_size: u32) {
    let id = wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
    let tile_n = id % p.tiles_n;
    let rest = id / p.tiles_n;
    let tile_m = rest % p.tiles_m;
    var bt = rest / p.tiles_m;
    // This workgroup's K range: all of K, or one split of it.
    var split = 0u;
    if (SPLIT_K) {
        split = bt % p.k_split;
        bt = bt / p.k_split;
    }
    let k_begin = split * p.k_chunk;
    k_end = min(p.k, k_begin + p.k_chunk);
    // (A folded grid may hold a few more groups than asked; with REDUCE_BATCH the
    // grid has no batch dimension, so every group past the tiles is one of them.)
    if (bt >= p.batch || (REDUCE_BATCH && bt > 0u)) {
        return;
    }
    var rm = SMALL_ROWS;
    var rn = 4u;
    if (large) {
        rm = LARGE_ROWS;
        rn = 16u;
    }
    i0 = tile_m * rm;
    j0 = (tile_n * REG_WG + lid) * rn;
    lane = sl;
    c_base = p.c_off + bt * p.c_bs;
    if (SPLIT_K) {
        c_base = (bt * p.k_split + split) * p.m * p.n;
    }
    let b_base = p.b_off;
    set_col(0u, b_base); set_col(1u, b_base); set_col(2u, b_base); set_col(3u, b_base);
    if (large) {
        set_col(4u, b_base); set_col(5u, b_base); set_col(6u, b_base); set_col(7u, b_base); set_col(8u, b_base); set_col(9u, b_base);
        set_col(10u, b_base); set_col(11u, b_base); set_col(12u, b_base); set_col(13u, b_base); set_col(14u, b_base); set_col(15u, b_base);
    }

    // Lanes that share A values: the subgroup, or the whole workgroup when smaller.
    let kb = min(sg_size, REG_WG);
    // The batch entries this invocation sums: its own, or all of them.
    var t = bt;
    var t_end = bt + 1u;
    if (REDUCE_BATCH) {
        t = 0u;
        t_end = p.batch;
    }
    for (; t < t_end; t++) {
        a_base = p.a_off + t * p.a_bs;
        b_shift = t * p.b_bs;
        var k0 = k_begin;
        if (kb == 8u) {
            for (; k0 + 8u <= k_end; k0 += 8u) {
                load_a_block(large, k0);
                step(large, k0, 0u); step(large, k0 + 1u, 1u);
                step(large, k0 + 2u, 2u); step(large, k0 + 3u, 3u);
                step(large, k0 + 4u, 4u); step(large, k0 + 5u, 5u);
                step(large, k0 + 6u, 6u); step(large, k0 + 7u, 7u);
            }
        }
        // The rest of K (and every block when subgroups are not 8 wide).
        for (; k0 < k_end; k0 += kb) {
            load_a_block(large, k0);
            let steps = min(kb, k_end - k0);
            for (var j = 0u; j < steps; j++) {
                step(large, k0 + j, j);
            }
        }
    }

    // Epilogue (see store_group): groups of 4 rows, those that reach into C.
    if (HAS_BIAS) {
        load_bias(0u);
        if (large) {
            load_bias(1u); load_bias(2u); load_bias(3u);
        }
    }
    let rows = min(rm, p.m - i0);
    for (var g = 0u; 4u * g < rows; g++) {
        store_group(large, g, i0 + 4u * g);
    }
}

@compute @workgroup_size(REG_WG)
fn matmul_register_large(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32,
                         @builtin(subgroup_invocation_id) sl: u32, @builtin(subgroup_size) sg_size: u32) {
    run(true, wg, nwg, lid, sl, sg_size);
}

@compute @workgroup_size(REG_WG)
fn matmul_register_small(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32,
                         @builtin(subgroup_invocation_id) sl: u32, @builtin(subgroup_size) sg_size: u32) {
    run(false, wg, nwg, lid, sl, sg_size);
}
