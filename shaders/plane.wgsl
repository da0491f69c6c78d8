// Helpers shared by the plane-at-a-time kernels of conv.wgsl and pool.wgsl. Not a
// module on its own: the Shader registry (src/kernels/mod.rs) prepends this text to
// both. `WG` is the including module's workgroup size (an override constant there).

// Linear workgroup id over a grid folded past 65,535 workgroups per dimension.
fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

// floor(a / s) for a < 2^20 and s >= 1 through one f32 division: (a + 0.5) / s
// sits at least 0.5 / s away from an integer, far beyond f32's rounding error (the
// launchers keep padded image sides under 2^20). CPU adapters divide integers lane
// by lane, slowly.
fn div_small(a: u32, s: u32) -> u32 {
    return u32((f32(a) + 0.5) / f32(s));
}

// First output row/column whose window covers input coordinate `i` (padded
// coordinate i + pad), for kernel size k and stride s.
fn first_window(i: u32, pad: u32, k: u32, s: u32) -> u32 {
    let a = i + pad + 1u;
    if (a <= k) {
        return 0u;
    }
    return div_small(a - k + s - 1u, s);
}

// One past the last output row/column covering input coordinate `i`, clipped.
fn end_window(i: u32, pad: u32, s: u32, n_out: u32) -> u32 {
    return min(div_small(i + pad, s) + 1u, n_out);
}

// An invocation's walk over a row-major plane `width` elements wide, WG elements
// per step (element lid, lid + WG, ...), without an integer division per element:
// (column, row) of the first element, the (column, row) advance per step (computed
// once, before the loop), and the position one step further on.
fn walk_start(lid: u32, width: u32) -> vec2<u32> {
    return vec2<u32>(lid % width, lid / width);
}

fn walk_step(width: u32) -> vec2<u32> {
    return vec2<u32>(WG % width, WG / width);
}

fn walk_next(at: vec2<u32>, step: vec2<u32>, width: u32) -> vec2<u32> {
    var x = at.x + step.x;
    var y = at.y + step.y;
    if (x >= width) {
        x -= width;
        y += 1u;
    }
    return vec2<u32>(x, y);
}
