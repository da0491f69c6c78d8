// Tensor-core matmul: the contract of matmul.wgsl (Params, layouts, batches,
// epilogue, split-K partials; this file is appended to it) computed with
// cooperative matrices, A and B rounded to f16 and products summed in f32.
//
// Launcher: src/kernels/matmul.rs (MatmulVariant::Coop64 / Coop128). CPU twin:
// src/reference/matmul.rs (`matmul_f16_inputs`: the same product with every
// element of A and B rounded to f16 first).
//
// Precision (the caller's choice, like PyTorch's
// `torch.set_float32_matmul_precision("medium")`): each element of op(A) and
// op(B) is rounded to the nearest f16 (11 significant bits) after its operand
// is scaled by a power of two; the products of two f16 are exact in f32, summed
// in f32, and the sum is scaled back.
//
// Range scaling: f16 holds magnitudes up to 65504, loses bits below 6.1e-5 and
// is zero below 6e-8, far narrower than f32 (gradients of a mean loss are often
// 1e-6 and smaller). So each operand is scaled by 2^shift, shift =
// 14 - floor(log2(amax)) within [-126, 126] (0 when amax is 0, inf or NaN),
// which brings its largest magnitude amax into [2^14, 2^15): nothing
// overflows, and elements down to amax·2^-28 keep all 11 bits. Powers of two
// are exact, so an operand of f16 values in range is staged unchanged in value.
// amax covers exactly the elements the product reads (every batch entry; one
// entry when the batch stride is 0). matmul_amax finds it in one dispatch
// before the product: up to AMAX_GROUPS workgroups per operand (the launcher
// sizes the grid by the operands) each store the largest |x| of their share (as
// its f32 bits: for x >= 0 the bits order as the values, and NaN's sit above
// inf) in amax_parts, A's part g at g and B's at AMAX_GROUPS + g (parts no
// workgroup writes stay 0, as the buffer was created); each matmul_coop
// workgroup reduces the parts again. The max is exact in any order, so the
// result is the same bit for bit on every run.
//
// The header (matmul_coop16.wgsl or matmul_coop8.wgsl) fixes the fragment:
// FRAG×FRAG×FRAG, types CoopA, CoopB, CoopC.
//
// Kernel matmul_coop: a CO_BM×CO_BN block of C per workgroup. The block is cut
// into subgroup blocks of CO_FM×CO_FN fragments; subgroup `s` (subgroup_id) owns
// block s and keeps its fragments' sums in cooperative accumulators. CO_WG, the
// workgroup size, is the number of blocks times the adapter's largest subgroup,
// so there are at least as many subgroups as blocks (more when the device runs
// smaller subgroups: those repeat a block and store nothing). Per K step of CO_BK, every
// invocation stages A and B (converted to f16) into workgroup memory, row-major
// [CO_BM][CO_BK] and [CO_BK][CO_BN], reading along whichever dimension is
// contiguous in global memory; elements past M, N or the K range stage as 0.
// Before the first K step each workgroup reduces matmul_amax's parts to the
// operands' scales (see Range scaling). The epilogue goes fragment by fragment
// through a per-subgroup FRAG×FRAG f32 slot of workgroup memory, where the
// subgroup's lanes scale the sums back and apply write_c (or store the raw
// partial with SPLIT_K) to the outputs inside C.
//
// Assumes (the launcher checks): the device has cooperative matrices of this
// fragment with f16 inputs and an f32 accumulator, subgroups, f16;
// CO_BM % (FRAG·CO_FM) == 0, CO_BN % (FRAG·CO_FN) == 0, CO_BK % FRAG == 0,
// CO_FM ≤ 4, CO_FM·CO_FN ≤ 8, CO_WG ≥ blocks × the largest subgroup size,
// CO_SUBGROUPS ≥ CO_WG / the smallest subgroup size.

override CO_BM: u32 = 64u;
override CO_BN: u32 = 64u;
override CO_BK: u32 = 32u;
override CO_FM: u32 = 2u;
override CO_FN: u32 = 2u;
override CO_WG: u32 = 128u;
// Subgroup blocks along N, and in all.
override CO_BLOCKS_N: u32 = CO_BN / (FRAG * CO_FN);
override CO_BLOCKS: u32 = (CO_BM / (FRAG * CO_FM)) * CO_BLOCKS_N;

// Sizes of the workgroup arrays (named: naga needs a named override there).
override CO_A_LEN: u32 = CO_BM * CO_BK;
override CO_B_LEN: u32 = CO_BK * CO_BN;
var<workgroup> co_a: array<f16, CO_A_LEN>;
var<workgroup> co_b: array<f16, CO_B_LEN>;
// One FRAG×FRAG epilogue slot per subgroup: CO_SUBGROUPS is the most the
// workgroup can have (CO_WG over the adapter's smallest subgroup).
override CO_SUBGROUPS: u32 = CO_BLOCKS;
override CO_C_LEN: u32 = CO_SUBGROUPS * FRAG * FRAG;
var<workgroup> co_c: array<f32, CO_C_LEN>;

// Range scaling (see the header).
override AMAX_GROUPS: u32 = 128u;
const AMAX_WG: u32 = 256u;
// Per workgroup of matmul_amax, the bits of its largest |x|: [A's AMAX_GROUPS, B's].
@group(0) @binding(7) var<storage, read_write> amax_parts: array<u32>;
var<workgroup> amax_wg: array<atomic<u32>, 2>;

// The exponent of an operand's scale from the bits of its largest magnitude.
fn range_shift(amax_bits: u32) -> i32 {
    let special = amax_bits == 0u || amax_bits >= 0x7f800000u;
    let e = i32(amax_bits >> 23u) - 127;
    return select(clamp(14 - e, -126, 126), 0, special);
}

// One workgroup per (operand, share), the grid 2·G workgroups along x (G ≤
// AMAX_GROUPS): the largest |x| of the elements of A (workgroups [0, G)) or B
// (the next G) the product reads.
@compute @workgroup_size(AMAX_WG)
fn matmul_amax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    if (lid == 0u) {
        atomicStore(&amax_wg[0], 0u);
    }
    workgroupBarrier();
    let groups = nwg.x / 2u;
    let of_b = wg.x >= groups;
    let share = wg.x % groups;
    let per = select(p.m * p.k, p.k * p.n, of_b);
    let off = select(p.a_off, p.b_off, of_b);
    let stride = select(p.a_bs, p.b_bs, of_b);
    let batches = select(p.batch, 1u, stride == 0u);
    var most = 0u;
    for (var t = 0u; t < batches; t++) {
        let base = off + t * stride;
        for (var r = share * AMAX_WG + lid; r < per; r += groups * AMAX_WG) {
            var v: f32;
            if (of_b) {
                v = b[base + r];
            } else {
                v = a[base + r];
            }
            most = max(most, bitcast<u32>(abs(v)));
        }
    }
    atomicMax(&amax_wg[0], most);
    workgroupBarrier();
    if (lid == 0u) {
        amax_parts[select(0u, AMAX_GROUPS, of_b) + share] = atomicLoad(&amax_wg[0]);
    }
}

// Stages op(A)[row0.., k0..] and op(B)[k0.., col0..] of one K step as f16, each
// element times its operand's scale.
fn co_stage(a_base: u32, b_base: u32, row0: u32, col0: u32, k0: u32, k_end: u32, lid: u32,
            scale_a: f32, scale_b: f32) {
    for (var e = lid; e < CO_BM * CO_BK; e += CO_WG) {
        var i: u32;
        var kk: u32;
        if (TRANS_A) {
            i = e % CO_BM;
            kk = e / CO_BM;
        } else {
            kk = e % CO_BK;
            i = e / CO_BK;
        }
        let gi = row0 + i;
        let gk = k0 + kk;
        var v = 0.0;
        if (gi < p.m && gk < k_end) {
            if (TRANS_A) {
                v = a[a_base + gk * p.m + gi];
            } else {
                v = a[a_base + gi * p.k + gk];
            }
        }
        co_a[i * CO_BK + kk] = f16(v * scale_a);
    }
    for (var e = lid; e < CO_BK * CO_BN; e += CO_WG) {
        var j: u32;
        var kk: u32;
        if (TRANS_B) {
            kk = e % CO_BK;
            j = e / CO_BK;
        } else {
            j = e % CO_BN;
            kk = e / CO_BN;
        }
        let gj = col0 + j;
        let gk = k0 + kk;
        var v = 0.0;
        if (gj < p.n && gk < k_end) {
            if (TRANS_B) {
                v = b[b_base + gj * p.k + gk];
            } else {
                v = b[b_base + gk * p.n + gj];
            }
        }
        co_b[kk * CO_BN + j] = f16(v * scale_b);
    }
}

@compute @workgroup_size(CO_WG)
fn matmul_coop(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sid: u32,
               @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32) {
    let tile = tile_of(wg, nwg);
    let w = work_of(tile.z);
    // A workgroup past the last batch runs no K step and stores nothing (no early
    // return: cooperative operations need workgroup-uniform control flow).
    let live = w.t < p.batch;
    let k_begin = w.k_begin;
    let k_end = select(k_begin, w.k_end, live);
    let c_base = w.c_base;
    let row0 = tile.y * CO_BM;
    let col0 = tile.x * CO_BN;
    // This subgroup's block. Every subgroup runs the cooperative operations
    // (they need workgroup-uniform control flow); where the device runs more
    // subgroups than blocks, the extra ones repeat block sid % CO_BLOCKS into
    // their own epilogue slot and store nothing.
    let owner = live && sid < CO_BLOCKS;
    let block = sid % CO_BLOCKS;
    let bm0 = (block / CO_BLOCKS_N) * FRAG * CO_FM;
    let bn0 = (block % CO_BLOCKS_N) * FRAG * CO_FN;

    // The operands' scales, from matmul_amax's parts.
    if (lid < 2u) {
        atomicStore(&amax_wg[lid], 0u);
    }
    workgroupBarrier();
    for (var e = lid; e < AMAX_GROUPS; e += CO_WG) {
        atomicMax(&amax_wg[0], amax_parts[e]);
        atomicMax(&amax_wg[1], amax_parts[AMAX_GROUPS + e]);
    }
    workgroupBarrier();
    let shift_a = range_shift(atomicLoad(&amax_wg[0]));
    let shift_b = range_shift(atomicLoad(&amax_wg[1]));

    var acc: array<CoopC, 8>;
    var af: array<CoopA, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += CO_BK) {
        co_stage(w.a_base, w.b_base, row0, col0, k0, k_end, lid, ldexp(1.0, shift_a), ldexp(1.0, shift_b));
        workgroupBarrier();
        for (var kk = 0u; kk < CO_BK; kk += FRAG) {
            for (var fm = 0u; fm < CO_FM; fm++) {
                af[fm] = coopLoadT<CoopA>(&co_a[(bm0 + fm * FRAG) * CO_BK + kk], CO_BK);
            }
            for (var fj = 0u; fj < CO_FN; fj++) {
                let bf = coopLoadT<CoopB>(&co_b[kk * CO_BN + bn0 + fj * FRAG], CO_BN);
                for (var fm = 0u; fm < CO_FM; fm++) {
                    let x = fm * CO_FN + fj;
                    acc[x] = coopMultiplyAdd(af[fm], bf, acc[x]);
                }
            }
        }
        workgroupBarrier();
    }

    let slot = sid * FRAG * FRAG;
    for (var x = 0u; x < CO_FM * CO_FN; x++) {
        coopStoreT(acc[x], &co_c[slot], FRAG);
        workgroupBarrier();
        if (owner) {
            let i0 = row0 + bm0 + (x / CO_FN) * FRAG;
            let j0 = col0 + bn0 + (x % CO_FN) * FRAG;
            for (var e = lane; e < FRAG * FRAG; e += lanes) {
                let i = i0 + e / FRAG;
                let j = j0 + e % FRAG;
                if (i < p.m && j < p.n) {
                    let v = co_c[slot + e] * ldexp(1.0, -shift_a) * ldexp(1.0, -shift_b);
                    if (SPLIT_K) {
                        c[c_base + i * p.n + j] = v;
                    } else {
                        write_c(c_base, i, j, v);
                    }
                }
            }
        }
        workgroupBarrier();
    }
}
