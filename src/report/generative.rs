//! Pictures of generative models: a variational autoencoder's test images beside
//! their reconstructions, digits decoded from a regular grid of a 2-D latent space
//! and the test set's latent means coloured by class; a GAN's samples (any grid of
//! images) and its curves (any series per epoch).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::{BACKGROUND, GRID, bold, centred, draw_err, draw_image, font, prepare, render};
use crate::error::{Error, Result};

/// What the VAE report draws.
#[derive(Clone, Copy, Debug)]
pub struct VaeReport<'a> {
    /// Shape of one image, `[1 or 3, H, W]`.
    pub shape: &'a [usize],
    /// Test images, one after another.
    pub originals: &'a [f32],
    /// Their reconstructions, in the same order.
    pub reconstructions: &'a [f32],
    /// Images decoded from a `side × side` grid of latent points spanning
    /// `[-extent, extent]²` (row by row, the second latent dimension from top to
    /// bottom decreasing), when the latent space is 2-D.
    pub latent_grid: Option<(&'a [f32], usize, f32)>,
    /// The test images' latent means (the first two dimensions), `[x, y]` each.
    pub means: &'a [[f32; 2]],
    /// The test images' classes, for the means' colours (empty: one colour).
    pub classes: &'a [usize],
}

/// Ten colours told apart by most eyes (Tableau's palette).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Most test images shown with their reconstructions.
const PAIRS: usize = 32;

/// Writes `reconstructions.png`, `latent_grid.png` (2-D latent spaces) and
/// `latent_means.png` into `dir`; returns the files written.
pub fn write_vae_report(dir: &Path, r: &VaeReport<'_>) -> Result<Vec<PathBuf>> {
    prepare(dir)?;
    let fail = |message: String| Error::Report {
        path: dir.display().to_string(),
        message,
    };
    let [c, ih, iw] = *r.shape else {
        return Err(fail(format!("samples of shape {:?} are not images", r.shape)));
    };
    let len = c * ih * iw;
    if !matches!(c, 1 | 3)
        || len == 0
        || r.originals.len() != r.reconstructions.len()
        || !r.originals.len().is_multiple_of(len)
    {
        return Err(fail(format!(
            "{} originals and {} reconstructions are not images of {:?}",
            r.originals.len(),
            r.reconstructions.len(),
            r.shape
        )));
    }
    let mut written = Vec::new();
    let p = dir.join("reconstructions.png");
    write_pairs(&p, r, (c, ih, iw))?;
    written.push(p);
    if let Some((images, side, extent)) = r.latent_grid {
        let p = dir.join("latent_grid.png");
        write_grid(&p, images, side, extent, (c, ih, iw))?;
        written.push(p);
    }
    if !r.means.is_empty() {
        let p = dir.join("latent_means.png");
        write_means(&p, r.means, r.classes)?;
        written.push(p);
    }
    Ok(written)
}

/// Rows of 8 test images, each row followed by a row of their reconstructions.
fn write_pairs(path: &Path, r: &VaeReport<'_>, (c, ih, iw): (usize, usize, usize)) -> Result<()> {
    let len = c * ih * iw;
    let n = (r.originals.len() / len).min(PAIRS);
    let (dw, dh) = ((iw * 3) as i32, (ih * 3) as i32);
    let (cw, top) = (dw + 8, 70);
    let rows = n.div_ceil(8) as i32;
    let (w, h) = (8 * cw + 150, top + rows * (2 * dh + 28) + 10);
    render(path, (w as u32, h as u32), |root| {
        centred(
            root,
            path,
            "Test images and their reconstructions",
            &bold(22.0),
            (w / 2, 24),
        )?;
        centred(
            root,
            path,
            "each row of originals is followed by its reconstructions",
            &font(14.0),
            (w / 2, 50),
        )?;
        for i in 0..n {
            let (col, row) = ((i % 8) as i32, (i / 8) as i32);
            let ox = 140 + col * cw;
            let oy = top + row * (2 * dh + 28);
            draw_image(
                root,
                path,
                &r.originals[i * len..(i + 1) * len],
                (c, ih, iw),
                (ox, oy),
                (dw, dh),
            )?;
            let oy2 = oy + dh + 4;
            draw_image(
                root,
                path,
                &r.reconstructions[i * len..(i + 1) * len],
                (c, ih, iw),
                (ox, oy2),
                (dw, dh),
            )?;
            if col == 0 {
                centred(root, path, "original", &font(14.0), (70, oy + dh / 2))?;
                centred(root, path, "reconstructed", &font(14.0), (70, oy2 + dh / 2))?;
            }
        }
        Ok(())
    })
}

/// Writes `images` (`side × side` of them, `[c, ih, iw]` each) tiled edge to edge
/// under `title` and `subtitle` to `path`.
pub fn write_image_grid(
    path: &Path,
    (title, subtitle): (&str, &str),
    images: &[f32],
    side: usize,
    (c, ih, iw): (usize, usize, usize),
) -> Result<()> {
    let len = c * ih * iw;
    if side == 0 || len == 0 || !matches!(c, 1 | 3) || images.len() != side * side * len {
        return Err(Error::Report {
            path: path.display().to_string(),
            message: format!(
                "{} values are not a {side} × {side} grid of images of [{c}, {ih}, {iw}]",
                images.len()
            ),
        });
    }
    let (dw, dh) = ((iw * 2) as i32, (ih * 2) as i32);
    let (left, top) = (40, 70);
    let (w, h) = (
        (left + side as i32 * dw + 40).max(640),
        top + side as i32 * dh + 40,
    );
    let left = (w - side as i32 * dw) / 2;
    render(path, (w as u32, h as u32), |root| {
        centred(root, path, title, &bold(22.0), (w / 2, 24))?;
        centred(root, path, subtitle, &font(14.0), (w / 2, 50))?;
        for k in 0..side * side {
            let (row, col) = ((k / side) as i32, (k % side) as i32);
            let (ox, oy) = (left + col * dw, top + row * dh);
            draw_image(
                root,
                path,
                &images[k * len..(k + 1) * len],
                (c, ih, iw),
                (ox, oy),
                (dw, dh),
            )?;
        }
        Ok(())
    })
}

/// The decoded images of the latent grid, tiled edge to edge.
fn write_grid(
    path: &Path,
    images: &[f32],
    side: usize,
    extent: f32,
    shape: (usize, usize, usize),
) -> Result<()> {
    let sub =
        format!("z₁ from −{extent} (left) to {extent} (right), z₂ from {extent} (top) to −{extent} (bottom)");
    write_image_grid(
        path,
        ("Digits decoded from a grid of the latent space", &sub),
        images,
        side,
        shape,
    )
}

/// Writes a line chart of `series` (name, one value per epoch from 1) to `path`.
pub fn write_series(path: &Path, title: &str, y_desc: &str, series: &[(&str, &[f64])]) -> Result<()> {
    let err = draw_err(path);
    let epochs = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    if epochs == 0 {
        return Err(Error::Report {
            path: path.display().to_string(),
            message: "no values to draw".into(),
        });
    }
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if lo < hi { (lo, hi) } else { (lo - 1.0, lo + 1.0) };
    let pad = 0.05 * (hi - lo);
    render(path, (900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, bold(22.0))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0.5..epochs as f64 + 0.5, (lo - pad)..(hi + pad))
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_desc)
            .label_style(font(14.0))
            .axis_desc_style(font(16.0))
            .light_line_style(GRID.mix(0.5))
            .bold_line_style(GRID)
            .draw()
            .map_err(&err)?;
        for (k, (name, v)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let points: Vec<(f64, f64)> = v
                .iter()
                .enumerate()
                .filter(|(_, y)| y.is_finite())
                .map(|(i, &y)| ((i + 1) as f64, y))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(3)))
                .map_err(&err)?
                .label(name.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(font(15.0))
            .background_style(BACKGROUND.mix(0.85))
            .border_style(RGBColor(170, 170, 170))
            .draw()
            .map_err(&err)?;
        Ok(())
    })
}

/// The latent means as points coloured by class, with a legend.
fn write_means(path: &Path, means: &[[f32; 2]], classes: &[usize]) -> Result<()> {
    let err = draw_err(path);
    let finite: Vec<[f32; 2]> = means
        .iter()
        .copied()
        .filter(|p| p[0].is_finite() && p[1].is_finite())
        .collect();
    let range = |k: usize| {
        let (lo, hi) = finite
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), p| {
                (a.min(p[k]), b.max(p[k]))
            });
        if lo < hi {
            let pad = 0.05 * (hi - lo);
            (lo - pad) as f64..(hi + pad) as f64
        } else {
            -1.0..1.0
        }
    };
    render(path, (900, 820), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("Latent means of {} test images", means.len()), bold(22.0))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(range(0), range(1))
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("z₁")
            .y_desc("z₂")
            .label_style(font(14.0))
            .axis_desc_style(font(16.0))
            .light_line_style(GRID.mix(0.5))
            .bold_line_style(GRID)
            .draw()
            .map_err(&err)?;
        let classes_seen = classes.iter().max().map_or(0, |&m| m + 1);
        for class in 0..classes_seen.max(1) {
            let color = PALETTE[class % PALETTE.len()];
            let points: Vec<(f64, f64)> = means
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    classes.get(*i).is_none_or(|&c| c == class) && p[0].is_finite() && p[1].is_finite()
                })
                .map(|(_, p)| (p[0] as f64, p[1] as f64))
                .collect();
            let series = chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.mix(0.7).filled())))
                .map_err(&err)?;
            if !classes.is_empty() {
                series
                    .label(format!("{class}"))
                    .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
            }
        }
        if !classes.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(font(15.0))
                .background_style(BACKGROUND.mix(0.85))
                .border_style(RGBColor(170, 170, 170))
                .draw()
                .map_err(&err)?;
        }
        Ok(())
    })
}
