//! Random changes to training images, as Keras' `RandomTranslation` (with
//! `fill_mode="constant"`) and `RandomFlip("horizontal")` preprocessing layers:
//! applied to each training sample as its batch is gathered, drawn anew every epoch,
//! never to validation or test samples.
//!
//! The draws of a batch come from a generator seeded by (run seed, epoch, step), so
//! a run is reproducible and a run resumed from a backup draws what the run that
//! never stopped drew, with no generator state to save.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// What to change in each training image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Move each image by a whole number of pixels drawn uniformly from
    /// `-shift..=shift`, down and right independently; uncovered pixels are 0.
    pub shift: usize,
    /// Mirror each image left to right with probability ½.
    pub flip_horizontal: bool,
}

impl Augment {
    /// Whether it changes anything.
    pub fn is_identity(&self) -> bool {
        self.shift == 0 && !self.flip_horizontal
    }

    /// Checks that it applies to samples of `shape` (`[C, H, W]`, shifts smaller
    /// than the image).
    pub fn validate(&self, shape: &[usize]) -> Result<()> {
        let &[_, h, w] = shape else {
            return Err(Error::invalid(format!(
                "image augmentation needs samples of shape [C, H, W]; these are {shape:?}"
            )));
        };
        if self.shift >= h.min(w) {
            return Err(Error::invalid(format!(
                "a shift of {} pixels moves a {h}×{w} image out of sight; use less than {}",
                self.shift,
                h.min(w)
            )));
        }
        Ok(())
    }

    /// The generator of the draws for step `step` (0-based within the epoch) of
    /// epoch `epoch` (1-based) of a run seeded with `seed`.
    pub fn rng(seed: u64, epoch: usize, step: usize) -> StdRng {
        // SplitMix64's finaliser spreads nearby (seed, epoch, step) triples apart.
        let mut z = seed ^ (epoch as u64).rotate_left(40) ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        StdRng::seed_from_u64(z ^ (z >> 31))
    }

    /// Changes every sample of `batch` (samples of `shape`, one after another) with
    /// draws from `rng`: per sample, the vertical shift, the horizontal shift, then
    /// the flip.
    pub fn apply(&self, batch: &mut [f32], shape: [usize; 3], rng: &mut StdRng, scratch: &mut Vec<f32>) {
        let len: usize = shape.iter().product();
        let s = self.shift as i64;
        for sample in batch.chunks_exact_mut(len) {
            let (dy, dx) = if s > 0 {
                (rng.random_range(-s..=s), rng.random_range(-s..=s))
            } else {
                (0, 0)
            };
            let flip = self.flip_horizontal && rng.random_bool(0.5);
            if dy != 0 || dx != 0 || flip {
                transform(sample, shape, dy, dx, flip, scratch);
            }
        }
    }
}

/// Moves one `[C, H, W]` image `dy` pixels down and `dx` right (zeros come in), then
/// mirrors it left to right when `flip`.
pub fn transform(x: &mut [f32], [c, h, w]: [usize; 3], dy: i64, dx: i64, flip: bool, scratch: &mut Vec<f32>) {
    scratch.clear();
    scratch.extend_from_slice(x);
    for ch in 0..c {
        for y in 0..h {
            for col in 0..w {
                // Output (y, col) shows input (y − dy, src) where src is the column
                // before mirroring.
                let shown = if flip { w - 1 - col } else { col };
                let (sy, sx) = (y as i64 - dy, shown as i64 - dx);
                let inside = (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx);
                x[(ch * h + y) * w + col] = if inside {
                    scratch[(ch * h + sy as usize) * w + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_and_flips_move_pixels_where_they_should() {
        // A 1×3×4 image numbered 1..=12, row by row.
        let image: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let mut scratch = Vec::new();
        let mut x = image.clone();
        transform(&mut x, [1, 3, 4], 1, -1, false, &mut scratch);
        assert_eq!(x, [0., 0., 0., 0., 2., 3., 4., 0., 6., 7., 8., 0.]);
        let mut x = image.clone();
        transform(&mut x, [1, 3, 4], 0, 0, true, &mut scratch);
        assert_eq!(x, [4., 3., 2., 1., 8., 7., 6., 5., 12., 11., 10., 9.]);
        // Read as two 3×2 channels: both move together.
        let mut x = image.clone();
        transform(&mut x, [2, 3, 2], -1, 1, false, &mut scratch);
        assert_eq!(&x[..6], &[0., 3., 0., 5., 0., 0.]);
        assert_eq!(&x[6..], &[0., 9., 0., 11., 0., 0.]);
    }

    #[test]
    fn draws_are_reproducible_and_differ_by_step() {
        let a = Augment {
            shift: 2,
            flip_horizontal: true,
        };
        let image: Vec<f32> = (0..2 * 64).map(|v| v as f32).collect();
        let run = |epoch, step| {
            let mut x = image.clone();
            a.apply(
                &mut x,
                [1, 8, 8],
                &mut Augment::rng(7, epoch, step),
                &mut Vec::new(),
            );
            x
        };
        assert_eq!(run(1, 0), run(1, 0));
        assert_ne!(run(1, 0), run(1, 1));
        assert_ne!(run(1, 0), run(2, 0));
        assert_ne!(run(1, 0), image);
        assert!(Augment::default().is_identity());
    }

    #[test]
    fn bad_settings_are_errors() {
        let a = Augment {
            shift: 8,
            flip_horizontal: false,
        };
        assert!(
            a.validate(&[1, 8, 8])
                .unwrap_err()
                .to_string()
                .contains("out of sight")
        );
        assert!(a.validate(&[64]).unwrap_err().to_string().contains("[C, H, W]"));
        assert!(Augment { shift: 7, ..a }.validate(&[1, 8, 8]).is_ok());
    }
}
