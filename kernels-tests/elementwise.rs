//! Elementwise kernels against `wgml::reference::elementwise`.

use wgml::kernels::elementwise;
use wgml::reference;

use crate::common::*;

#[test]
fn fill_writes_every_element_including_folded_grids() {
    let (_g, ctx) = gpu();
    // 1, a prime, a non-multiple of the workgroup, and more than 65,535 workgroups.
    for n in [1usize, 7, 257, 1000, 65_535 * 256 + 3] {
        let y = nan_tensor(ctx, &[n]);
        let d = elementwise::fill(ctx, &y, 2.5).unwrap();
        ctx.run(&[&d]).unwrap();
        let mut want = vec![0.0; n];
        reference::elementwise::fill(&mut want, 2.5);
        assert_close(&format!("fill n={n}"), &y.to_f32(ctx).unwrap(), &want, 0.0, 0.0);
    }
}
