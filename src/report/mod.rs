//! Pictures of a training run for a person: learning curves, the confusion matrix
//! as a heatmap, and a grid of misclassified test images, written as PNG files.
//!
//! Drawn with `plotters` into an in-memory RGB buffer and encoded with `image`.
//! Text needs a TrueType font, loaded once per process from `WGML_FONT` (a path)
//! or else from the usual system locations ([`FONT_CANDIDATES`]).

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};
use crate::train::{Evaluation, History};

mod bench;
mod generative;
pub use bench::write_bench_plot;
pub use generative::{VaeReport, write_image_grid, write_series, write_vae_report};

/// Where a font is looked for when `WGML_FONT` is not set, in this order.
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The font family every picture's text is drawn in.
const FAMILY: &str = "sans-serif";

/// Most misclassified images shown (an 8 × 8 grid).
pub const MAX_MISCLASSIFIED: usize = 64;

const BACKGROUND: RGBColor = RGBColor(255, 255, 255);
const TEXT: RGBColor = RGBColor(34, 34, 34);
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(230, 110, 20);
const GRID: RGBColor = RGBColor(225, 225, 225);
const BEST_COLOR: RGBColor = RGBColor(44, 160, 44);

/// The font file to use: `wgml_font` (the value of `WGML_FONT`) when given, else
/// the first of `candidates` that exists.
pub fn find_font(wgml_font: Option<&Path>, candidates: &[&str]) -> Result<PathBuf> {
    if let Some(p) = wgml_font {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(Error::Report {
            path: p.display().to_string(),
            message: "WGML_FONT names no readable file; set it to a .ttf font file \
                      (or install fonts-dejavu-core on Debian/Ubuntu and unset it)"
                .into(),
        });
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Report {
            path: "font".into(),
            message: format!(
                "no TrueType font found (looked at {}): install fonts-dejavu-core \
                 (Debian/Ubuntu) or set WGML_FONT to a .ttf file",
                candidates.join(", ")
            ),
        })
}

/// Registers the font with plotters once per process; later calls return the
/// first outcome.
fn ensure_font() -> Result<()> {
    // (path, message) of the failure, kept to answer every later call the same.
    static FONT: OnceLock<std::result::Result<(), (String, String)>> = OnceLock::new();
    let outcome = FONT.get_or_init(|| {
        let env = std::env::var_os("WGML_FONT").filter(|v| !v.is_empty());
        let path = find_font(env.as_deref().map(Path::new), FONT_CANDIDATES).map_err(|e| match e {
            Error::Report { path, message } => (path, message),
            other => ("font".into(), other.to_string()),
        })?;
        let name = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| (name.clone(), e.to_string()))?;
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| {
            (
                name.clone(),
                "not a TrueType/OpenType font; set WGML_FONT to a .ttf file".to_string(),
            )
        })?;
        // A bold face beside the regular one, for titles, when there is one.
        let bold = path.with_file_name(match path.file_name().and_then(|n| n.to_str()) {
            Some("DejaVuSans.ttf") => "DejaVuSans-Bold.ttf",
            Some("LiberationSans-Regular.ttf") => "LiberationSans-Bold.ttf",
            Some("Arial.ttf") => "Arial Bold.ttf",
            Some("arial.ttf") => "arialbd.ttf",
            _ => "",
        });
        if bold.is_file()
            && let Ok(b) = std::fs::read(&bold)
        {
            let b: &'static [u8] = Box::leak(b.into_boxed_slice());
            // A bold face that fails to parse just leaves titles in the regular face.
            let _ = plotters::style::register_font(FAMILY, FontStyle::Bold, b);
        }
        Ok(())
    });
    outcome
        .clone()
        .map_err(|(path, message)| Error::Report { path, message })
}

/// Finds and registers the font the pictures need, or says how to get one.
pub fn check_font() -> Result<()> {
    ensure_font()
}

/// Maps a plotters (or any drawing) error into an [`Error`] naming the picture.
fn draw_err<E: Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Report {
        path: path.display().to_string(),
        message: format!("could not draw: {e}"),
    }
}

/// Draws into a `w × h` RGB canvas with `draw`, then writes it to `path` as PNG.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    ensure_font()?;
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let backend = BitMapBackend::with_buffer_and_format(&mut buf, (w, h)).map_err(draw_err(path))?;
        let root = backend.into_drawing_area();
        root.fill(&BACKGROUND).map_err(draw_err(path))?;
        draw(&root)?;
        root.present().map_err(draw_err(path))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| Error::Report {
        path: path.display().to_string(),
        message: "internal: canvas buffer has the wrong size".into(),
    })?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| match e {
            image::ImageError::IoError(source) => Error::Io {
                path: path.display().to_string(),
                source,
            },
            other => Error::Report {
                path: path.display().to_string(),
                message: format!("could not write PNG: {other}"),
            },
        })
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&TEXT)
}

fn bold(size: f64) -> TextStyle<'static> {
    (FAMILY, size, FontStyle::Bold).into_font().color(&TEXT)
}

/// Draws `text` centred at `(x, y)` (pixels of `area`).
fn centred<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    path: &Path,
    text: &str,
    style: &TextStyle<'_>,
    (x, y): (i32, i32),
) -> Result<()> {
    let style = style.pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(text.to_string(), (x, y), style))
        .map_err(draw_err(path))
}

/// A tick label for epoch numbers: integers only.
fn epoch_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 && *x >= 0.5 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

/// Range of `values` (finite ones) padded by 8% on both sides, clipped to `limits`.
fn padded_range(values: &[f64], limits: (f64, f64)) -> (f64, f64) {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    // One value (or all equal): a band of ±10% around it (at least ±0.05).
    let pad = if hi - lo < 1e-9 * hi.abs().max(1.0) {
        (0.1 * hi.abs()).max(0.05)
    } else {
        0.08 * (hi - lo)
    };
    let (a, b) = ((lo - pad).max(limits.0), (hi + pad).min(limits.1));
    if b > a { (a, b) } else { (lo - pad, hi + pad) }
}

/// Width in pixels of `text` in `style` (0 when the font cannot say).
fn text_width(text: &str, style: &TextStyle<'_>) -> u32 {
    style.font.box_size(text).map(|(w, _)| w).unwrap_or(0)
}

/// One panel of the curves: a quantity per epoch, train and (when any) validation.
struct Panel<'a> {
    title: &'a str,
    y_desc: &'a str,
    train: &'a [(f64, f64)],
    val: &'a [(f64, f64)],
    /// Bounds of the quantity (accuracy lies in [0, 1]).
    limits: (f64, f64),
    /// Where the legend goes (away from where the curves usually are).
    legend: SeriesLabelPosition,
    /// The epoch whose weights the model kept (early stopping), marked by a line.
    best: Option<usize>,
}

fn curve_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    path: &Path,
    panel: &Panel<'_>,
    epochs: usize,
) -> Result<()> {
    let Panel {
        title,
        y_desc,
        train,
        val,
        limits,
        ..
    } = *panel;
    let err = draw_err(path);
    let all: Vec<f64> = train.iter().chain(val).map(|p| p.1).collect();
    let (y0, y1) = padded_range(&all, limits);
    let pad = if epochs > 1 {
        0.04 * (epochs - 1) as f64
    } else {
        0.5
    };
    let x_range = (1.0 - pad)..(epochs as f64 + pad);
    // Enough decimals to tell the (about 8) y ticks apart.
    let decimals = (-((y1 - y0) / 8.0).log10()).ceil().clamp(0.0, 6.0) as usize;
    let mut chart = ChartBuilder::on(area)
        .caption(title, bold(22.0))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, y0..y1)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(epochs.min(12))
        .y_labels(8)
        .max_light_lines(1)
        .x_label_formatter(&epoch_label)
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .label_style(font(14.0))
        .axis_desc_style(font(16.0))
        .light_line_style(GRID.mix(0.5))
        .bold_line_style(GRID)
        .draw()
        .map_err(&err)?;
    let series = [("train", train, TRAIN_COLOR), ("validation", val, VAL_COLOR)];
    let marker = match epochs {
        0..=3 => 6,
        4..=30 => 4,
        _ => 2,
    };
    for (name, points, color) in series {
        if points.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
        let label = match points.last() {
            Some((_, v)) => format!("{name} (last {v:.4})"),
            None => name.to_string(),
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(&err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, marker, color.filled())))
            .map_err(&err)?;
    }
    if let Some(b) = panel.best.filter(|&b| b >= 1 && b <= epochs) {
        let line = BEST_COLOR.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(b as f64, y0), (b as f64, y1)],
                8,
                6,
                line,
            ))
            .map_err(&err)?
            .label(format!("best epoch ({b})"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], line));
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .label_font(font(15.0))
        .background_style(BACKGROUND.mix(0.85))
        .border_style(RGBColor(170, 170, 170))
        .draw()
        .map_err(&err)?;
    Ok(())
}

/// Writes the learning curves of `history` to `path`: loss per epoch, train and
/// (when there was a validation set) validation, beside accuracy per epoch when
/// the model is a classifier.
pub fn write_curves(path: &Path, history: &History) -> Result<()> {
    let epochs = history.epochs.len();
    if epochs == 0 {
        return Err(Error::Report {
            path: path.display().to_string(),
            message: "the training history has no epoch to draw".into(),
        });
    }
    let pick = |f: &dyn Fn(&crate::train::EpochStats) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .epochs
            .iter()
            .enumerate()
            .filter_map(|(i, e)| f(e).map(|v| ((i + 1) as f64, v)))
            .collect()
    };
    let loss = pick(&|e| Some(e.loss));
    let val_loss = pick(&|e| e.val_loss);
    let acc = pick(&|e| e.accuracy);
    let val_acc = pick(&|e| e.val_accuracy);
    let with_acc = !acc.is_empty();
    let size = if with_acc { (1400, 560) } else { (760, 560) };
    render(path, size, |root| {
        let err = draw_err(path);
        let title = if val_loss.is_empty() {
            format!(
                "Training curves ({epochs} epoch{})",
                if epochs == 1 { "" } else { "s" }
            )
        } else {
            format!(
                "Training curves ({epochs} epoch{}, train and validation)",
                if epochs == 1 { "" } else { "s" }
            )
        };
        let root = root.margin(10, 10, 10, 10);
        let root = root.titled(&title, bold(26.0)).map_err(&err)?;
        let loss_panel = Panel {
            title: "Loss",
            y_desc: "loss",
            train: &loss,
            val: &val_loss,
            limits: (f64::NEG_INFINITY, f64::INFINITY),
            legend: SeriesLabelPosition::UpperRight,
            best: history.best_epoch,
        };
        if with_acc {
            let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
            curve_panel(&left, path, &loss_panel, epochs)?;
            let acc_panel = Panel {
                title: "Accuracy",
                y_desc: "accuracy",
                train: &acc,
                val: &val_acc,
                limits: (0.0, 1.0),
                legend: SeriesLabelPosition::LowerRight,
                best: history.best_epoch,
            };
            curve_panel(&right, path, &acc_panel, epochs)?;
        } else {
            curve_panel(&root, path, &loss_panel, epochs)?;
        }
        Ok(())
    })
}

/// A colour of the "Blues" ramp for `t` in [0, 1] (white to dark blue).
fn blues(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (247.0, 251.0, 255.0),
        (198.0, 219.0, 239.0),
        (107.0, 174.0, 214.0),
        (33.0, 113.0, 181.0),
        (8.0, 48.0, 107.0),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let f = t * (STOPS.len() - 1) as f64;
    let i = (f.floor() as usize).min(STOPS.len() - 2);
    let u = f - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Whether dark text reads better than light text on `c`.
fn is_light(c: RGBColor) -> bool {
    0.299 * c.0 as f64 + 0.587 * c.1 as f64 + 0.114 * c.2 as f64 > 150.0
}

/// Writes the confusion matrix (`confusion[true][predicted]`) as a heatmap with the
/// count in every cell to `path`. The colour of a cell is the square root of its
/// count over the largest count, so that small error counts still show.
pub fn write_confusion(path: &Path, confusion: &[Vec<u64>]) -> Result<()> {
    let k = confusion.len();
    if k == 0 || confusion.iter().any(|r| r.len() != k) {
        return Err(Error::Report {
            path: path.display().to_string(),
            message: format!(
                "the confusion matrix must be square with at least one class, got {k} rows of lengths {:?}",
                confusion.iter().map(Vec::len).collect::<Vec<_>>()
            ),
        });
    }
    let max = confusion.iter().flatten().copied().max().unwrap_or(0).max(1);
    let total: u64 = confusion.iter().flatten().sum();
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let accuracy = if total > 0 {
        format!(" — accuracy {:.2}%", 100.0 * correct as f64 / total as f64)
    } else {
        String::new()
    };
    let title = format!("Confusion matrix ({total} test samples{accuracy})");
    let note = "rows: true class · columns: predicted class · diagonal: correct";
    ensure_font()?;
    // Cells wide enough for the largest count, larger for few classes, smaller for many.
    let digits = max.to_string().len() as u32;
    let cell = (digits * 11 + 16).max(480 / k as u32).clamp(36, 96);
    let cell = if k > 30 {
        (cell * 30 / k as u32).max(20)
    } else {
        cell
    };
    let grid = cell * k as u32;
    let (side, bar) = (80u32, 120u32);
    let content = side + grid + bar;
    let w = content
        .max(text_width(&title, &bold(22.0)) + 40)
        .max(text_width(note, &font(14.0)) + 40);
    let (top, h) = (96u32, 96 + grid + 76);
    let count_size = (cell as f64 * 0.34).clamp(9.0, 17.0);
    render(path, (w, h), |root| {
        let err = draw_err(path);
        centred(root, path, &title, &bold(22.0), (w as i32 / 2, 26))?;
        let (x0, y0, c) = (((w - content) / 2 + side) as i32, top as i32, cell as i32);
        for (t, row) in confusion.iter().enumerate() {
            for (p, &n) in row.iter().enumerate() {
                let color = blues((n as f64 / max as f64).sqrt());
                let (x, y) = (x0 + p as i32 * c, y0 + t as i32 * c);
                root.draw(&Rectangle::new([(x, y), (x + c, y + c)], color.filled()))
                    .map_err(&err)?;
                let ink = if is_light(color) { TEXT } else { BACKGROUND };
                centred(
                    root,
                    path,
                    &n.to_string(),
                    &font(count_size).color(&ink),
                    (x + c / 2, y + c / 2),
                )?;
            }
        }
        // Cell borders and a frame.
        for i in 0..=k as i32 {
            let line = RGBColor(255, 255, 255).stroke_width(1);
            root.draw(&PathElement::new(
                vec![(x0 + i * c, y0), (x0 + i * c, y0 + k as i32 * c)],
                line,
            ))
            .map_err(&err)?;
            root.draw(&PathElement::new(
                vec![(x0, y0 + i * c), (x0 + k as i32 * c, y0 + i * c)],
                line,
            ))
            .map_err(&err)?;
        }
        let g = k as i32 * c;
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + g, y0 + g)],
            RGBColor(120, 120, 120).stroke_width(1),
        ))
        .map_err(&err)?;
        // Class indices and axis names.
        let label = font(if k > 30 { 10.0 } else { 15.0 });
        for i in 0..k as i32 {
            centred(root, path, &i.to_string(), &label, (x0 + i * c + c / 2, y0 - 14))?;
            centred(root, path, &i.to_string(), &label, (x0 - 18, y0 + i * c + c / 2))?;
        }
        centred(root, path, "predicted", &font(17.0), (x0 + g / 2, y0 - 40))?;
        let vertical = font(17.0).transform(FontTransform::Rotate270);
        centred(root, path, "true", &vertical, (x0 - 52, y0 + g / 2))?;
        // The colour scale: counts on a square-root ramp.
        let (bx, bw) = (x0 + g + 28, 18);
        let steps = 200;
        for s in 0..steps {
            let t = 1.0 - s as f64 / steps as f64;
            let y = y0 + (s * g) / steps;
            let y1 = y0 + ((s + 1) * g) / steps;
            root.draw(&Rectangle::new(
                [(bx, y), (bx + bw, y1.max(y + 1))],
                blues(t).filled(),
            ))
            .map_err(&err)?;
        }
        root.draw(&Rectangle::new(
            [(bx, y0), (bx + bw, y0 + g)],
            RGBColor(120, 120, 120).stroke_width(1),
        ))
        .map_err(&err)?;
        let ticks = scale_ticks(max);
        for v in ticks {
            let y = y0 + ((1.0 - (v as f64 / max as f64).sqrt()) * g as f64).round() as i32;
            root.draw(&PathElement::new(
                vec![(bx + bw, y), (bx + bw + 5, y)],
                TEXT.stroke_width(1),
            ))
            .map_err(&err)?;
            let style = font(13.0).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(v.to_string(), (bx + bw + 8, y), style))
                .map_err(&err)?;
        }
        centred(root, path, "count", &font(14.0), (bx + bw / 2, y0 + g + 18))?;
        centred(root, path, note, &font(14.0), (w as i32 / 2, y0 + g + 48))?;
        Ok(())
    })
}

/// Tick values for a colour scale from 0 to `max`: round numbers, at most 6.
fn scale_ticks(max: u64) -> Vec<u64> {
    let mut step = 1u64;
    while max / step > 5 {
        step = match step.to_string().as_bytes()[0] {
            b'1' => step * 2,
            b'2' => step / 2 * 5,
            _ => step * 2,
        };
    }
    let mut v: Vec<u64> = (0..=max / step).map(|i| i * step).collect();
    if v.last() != Some(&max) && max - v.last().copied().unwrap_or(0) > step / 3 {
        v.push(max);
    }
    v
}

/// Test images with their true and predicted classes, for the misclassified grid.
#[derive(Clone, Copy, Debug)]
pub struct Samples<'a> {
    /// `n × C × H × W` values, NCHW (pixel values; [0, 1] is shown as is, other
    /// ranges are stretched per image).
    pub x: &'a [f32],
    /// Shape of one sample: `[C, H, W]` with C = 1 (grey) or 3 (RGB).
    pub shape: &'a [usize],
    /// The true class of each sample.
    pub truth: &'a [usize],
    /// The predicted class of each sample.
    pub predicted: &'a [usize],
}

impl Samples<'_> {
    /// Whether the samples are images the grid can show ([1 or 3, H, W]).
    pub fn is_image(&self) -> bool {
        matches!(self.shape, [1 | 3, h, w] if *h > 0 && *w > 0)
    }
}

/// Writes up to [`MAX_MISCLASSIFIED`] misclassified images (in test order) as a
/// grid to `path`, each scaled up and labelled with its true and predicted class.
/// With none misclassified the picture says so.
pub fn write_misclassified(path: &Path, s: &Samples<'_>) -> Result<()> {
    let fail = |message: String| Error::Report {
        path: path.display().to_string(),
        message,
    };
    if !s.is_image() {
        return Err(fail(format!(
            "samples of shape {:?} are not images [1 or 3, height, width]",
            s.shape
        )));
    }
    let (c, ih, iw) = (s.shape[0], s.shape[1], s.shape[2]);
    let len = c * ih * iw;
    let n = s.truth.len();
    if s.predicted.len() != n || s.x.len() != n * len {
        return Err(fail(format!(
            "{} values, {} true classes and {} predictions do not describe the same samples of {:?}",
            s.x.len(),
            n,
            s.predicted.len(),
            s.shape
        )));
    }
    let wrong: Vec<usize> = (0..n).filter(|&i| s.truth[i] != s.predicted[i]).collect();
    let shown = &wrong[..wrong.len().min(MAX_MISCLASSIFIED)];
    // Display size: 3× for small images, at most 128 pixels a side.
    let scale = (128.0 / ih.max(iw) as f64).min(3.0);
    let (dw, dh) = (
        ((iw as f64 * scale).round() as i32).max(1),
        ((ih as f64 * scale).round() as i32).max(1),
    );
    let cols = shown.len().clamp(1, 8);
    let rows = shown.len().div_ceil(8).max(1);
    let (cw, ch) = ((dw + 16).max(96), dh + 30);
    let top = 64;
    let w = (cols as i32 * cw + 32).max(640);
    let h = if shown.is_empty() {
        200
    } else {
        top + rows as i32 * ch + 16
    };
    render(path, (w as u32, h as u32), |root| {
        let err = draw_err(path);
        let title = if wrong.is_empty() {
            "Misclassified test images".to_string()
        } else if shown.len() < wrong.len() {
            format!(
                "Misclassified test images: first {} of {} ({} samples)",
                shown.len(),
                wrong.len(),
                n
            )
        } else {
            format!("Misclassified test images: {} of {} samples", wrong.len(), n)
        };
        centred(root, path, &title, &bold(22.0), (w / 2, 24))?;
        if wrong.is_empty() {
            centred(
                root,
                path,
                &format!("Nothing misclassified: all {n} test samples are predicted correctly."),
                &font(18.0),
                (w / 2, h / 2 + 10),
            )?;
            return Ok(());
        }
        centred(
            root,
            path,
            "label: true class → predicted class",
            &font(14.0),
            (w / 2, 48),
        )?;
        let x_left = (w - cols as i32 * cw) / 2;
        for (j, &i) in shown.iter().enumerate() {
            let (col, row) = ((j % 8) as i32, (j / 8) as i32);
            let cx = x_left + col * cw + cw / 2;
            let (ox, oy) = (cx - dw / 2, top + row * ch + 4);
            draw_image(
                root,
                path,
                &s.x[i * len..(i + 1) * len],
                (c, ih, iw),
                (ox, oy),
                (dw, dh),
            )?;
            root.draw(&Rectangle::new(
                [(ox - 1, oy - 1), (ox + dw, oy + dh)],
                RGBColor(160, 160, 160).stroke_width(1),
            ))
            .map_err(&err)?;
            let label = format!("{} → {}", s.truth[i], s.predicted[i]);
            centred(root, path, &label, &font(15.0), (cx, oy + dh + 13))?;
        }
        Ok(())
    })
}

/// Draws image `img` (`[c, ih, iw]`, c = 1 grey or 3 RGB; values in [0, 1] shown
/// as they are, other ranges stretched) scaled to `dw × dh` pixels with its top-left
/// corner at `(ox, oy)`.
pub(crate) fn draw_image<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    path: &Path,
    img: &[f32],
    (c, ih, iw): (usize, usize, usize),
    (ox, oy): (i32, i32),
    (dw, dh): (i32, i32),
) -> Result<()> {
    let err = draw_err(path);
    let (lo, hi) = img
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if lo >= 0.0 && hi <= 1.0 || lo > hi {
        (0.0, 1.0)
    } else {
        (lo, hi)
    };
    let range = if hi > lo { hi - lo } else { 1.0 };
    let byte = |v: f32| {
        let t = if v.is_finite() { (v - lo) / range } else { 0.0 };
        (t.clamp(0.0, 1.0) * 255.0).round() as u8
    };
    for dy in 0..dh {
        let sy = ((dy as usize * ih) / dh.max(1) as usize).min(ih - 1);
        for dx in 0..dw {
            let sx = ((dx as usize * iw) / dw.max(1) as usize).min(iw - 1);
            let at = |ch: usize| byte(img[ch * ih * iw + sy * iw + sx]);
            let color = if c == 1 {
                let g = at(0);
                RGBColor(g, g, g)
            } else {
                RGBColor(at(0), at(1), at(2))
            };
            root.draw_pixel((ox + dx, oy + dy), &color).map_err(&err)?;
        }
    }
    Ok(())
}

/// Checks before a long run that a report can be written: creates `dir` (and its
/// parents) when missing and loads the font.
pub fn prepare(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    if !dir.is_dir() {
        return Err(Error::Report {
            path: dir.display().to_string(),
            message: "is not a directory".into(),
        });
    }
    ensure_font()
}

/// Writes the pictures of a training run into `dir` (created if missing):
/// `curves.png` (when `history` has epochs), `confusion.png` (classification) and
/// `misclassified.png` (when `samples` are images). Returns the files written.
pub fn write_report(
    dir: &Path,
    history: &History,
    evaluation: &Evaluation,
    samples: Option<&Samples<'_>>,
) -> Result<Vec<PathBuf>> {
    prepare(dir)?;
    let mut written = Vec::new();
    if !history.epochs.is_empty() {
        let p = dir.join("curves.png");
        write_curves(&p, history)?;
        written.push(p);
    }
    if !evaluation.confusion.is_empty() {
        let p = dir.join("confusion.png");
        write_confusion(&p, &evaluation.confusion)?;
        written.push(p);
    }
    if let Some(s) = samples.filter(|s| s.is_image() && !s.truth.is_empty()) {
        let p = dir.join("misclassified.png");
        write_misclassified(&p, s)?;
        written.push(p);
    }
    Ok(written)
}
