// Counter-based random numbers for the dropout masks and the noise op: a pure
// function of (seed, step, index), so a step can be recomputed (dropout's backward)
// and the CPU twins (src/reference/dropout.rs, src/reference/noise.rs) draw the
// same numbers bit for bit.

// PCG's output permutation of a 32-bit state (one LCG step, then the RXS-M-XS
// output function): a cheap, well-mixed u32 -> u32 hash.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// The stream of seed `seed` at step `t`: element i's draw is pcg_hash(i ^ stream).
fn hash_stream(seed: u32, t: u32) -> u32 {
    return pcg_hash(seed ^ pcg_hash(t));
}
