// Rotary position embedding (RoPE, Su et al. 2021) as Llama and Hugging Face's
// `apply_rotary_pos_emb` apply it to queries and keys: a row-major [rows, heads·d]
// matrix (rows = samples·tokens, token t = row % p.tokens, each token's heads side
// by side, as a Dense projection writes them) has each head's first and second
// halves (x1, x2) of d = 2·p.half values rotated by the token's angles:
//
//   y1 = x1·cos(θ) − s·x2·sin(θ),  y2 = x2·cos(θ) + s·x1·sin(θ)
//
// with θ = a·freq[j] for pair j < p.half at table position a, its cosine and sine
// read from a table computed on the CPU for p.positions positions
// (`table[a·half + j]` cosines, then `table[(positions + a)·half + j]` sines).
// `rotary` turns token t by table position a = t (the table has one row per token);
// `rotary_at` turns every row by a = cursor.at, the position a key/value-cache
// decoder's step is at (position.wgsl), the table covering the whole cache.
// s = 1 rotates (forward); s = −1 rotates back, the transpose, which is the
// backward pass. One invocation per pair (p.n = rows·heads·half of them).
//
// Launcher: src/kernels/rotary.rs; CPU twin: src/reference/rotary.rs.
// Bindings: @binding(1) y written; @binding(2) x read; @binding(3) the table
// (x and y distinct buffers); `rotary_at`: @binding(4) the position.

struct Params {
    n: u32,
    tokens: u32,
    heads: u32,
    half: u32,
    sign: f32,
    positions: u32, // rows of the table
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;
@group(0) @binding(4) var<uniform> cursor: Position;

@compute @workgroup_size(WG)
fn rotary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let e = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    let row = e / p.half / p.heads;
    turn(e, row % p.tokens);
}

@compute @workgroup_size(WG)
fn rotary_at(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    turn((wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid, cursor.at);
}

// Turns pair e (row·heads·half + head·half + j) by table position a.
fn turn(e: u32, a: u32) {
    if (e >= p.n) {
        return;
    }
    let j = e % p.half;
    let rh = e / p.half;            // row·heads + head
    let i1 = rh * 2u * p.half + j;
    let i2 = i1 + p.half;
    let c = table[a * p.half + j];
    let s = p.sign * table[(p.positions + a) * p.half + j];
    let x1 = x[i1];
    let x2 = x[i2];
    y[i1] = x1 * c - x2 * s;
    y[i2] = x2 * c + x1 * s;
}
