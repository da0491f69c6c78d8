//! `wgml eval` and `wgml predict`: use saved weights.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use wgml::nn::zoo;
use wgml::train::History;
use wgml::{Error, Result, checkpoint, train};

use super::GpuArgs;
use super::train::{
    keep_classes, load_data_with, print_bits_per_byte, print_evaluation, write_metrics_json, write_run_report,
};
use wgml::data::text::Vocabulary;

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Model: cnn, cnn-bn, convnet, mlp, binary or regression (default: the one the
    /// checkpoint names, else cnn).
    #[arg(long)]
    pub model: Option<String>,
    /// Safetensors checkpoint written by `wgml train --save`.
    #[arg(long)]
    pub weights: PathBuf,
    /// Dataset whose test split is evaluated (default: the model's own).
    #[arg(long)]
    pub data: Option<String>,
    /// Evaluate on these classes only, relabelled from 0 in the order given, as
    /// `wgml train --classes` trained the model (e.g. 5-9).
    #[arg(long, value_name = "LIST")]
    pub classes: Option<String>,
    /// Seed of synthetic datasets.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the results as JSON.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Also measure the top-K accuracy (labels among the K largest outputs).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Draw confusion.png and misclassified.png (image data) into this folder.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Samples per evaluation batch; wgml halves it where the adapter cannot hold
    /// a batch (a long window's attention).
    #[arg(long, default_value_t = 256, value_name = "B")]
    pub batch_size: usize,
    /// Run every batch of a model that masks padding at its whole window (see
    /// `wgml train --no-dynamic-padding`).
    #[arg(long)]
    pub no_dynamic_padding: bool,
    /// A question answerer: tokens consecutive windows of a long context
    /// share (Hugging Face's doc_stride; default 128, or a third of a window
    /// shorter than 384 tokens).
    #[arg(long, value_name = "N")]
    pub doc_stride: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Model: cnn, cnn-bn, convnet or mlp (image models; default: the one the
    /// checkpoint names, else cnn).
    #[arg(long)]
    pub model: Option<String>,
    /// Safetensors checkpoint written by `wgml train --save`.
    #[arg(long)]
    pub weights: PathBuf,
    /// PNG or JPEG images (any size, colour or grey); for a model trained on texts
    /// by class, text files (read as its training read them: its tokenizer, cut
    /// to its tokens and padded), or one table of texts (CSV or JSON lines with a
    /// text column, as `wgml train --data` reads them), whose predictions are
    /// written as CSV; for a token classifier, files of words (CoNLL text, or
    /// JSON Lines of tokens, as `wgml train --data` reads them; tags optional),
    /// tagged as CoNLL text.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Where a table's predictions go (CSV: each row's number, its label where the
    /// table has them, the predicted class, its probability and every class's; a
    /// token classifier's: CoNLL text, each word, its given tag and the
    /// predicted one); default: standard output.
    #[arg(long, value_name = "FILE.csv")]
    pub output: Option<PathBuf>,
    /// A token classifier: each line of the files is a sentence of plain text
    /// (not split into words); writes JSON Lines of each sentence's entities
    /// (type, words, character span, score), grouped as Hugging Face's
    /// token-classification pipeline groups them (aggregation_strategy
    /// "first").
    #[arg(long)]
    pub sentences: bool,
    /// A question answerer: tokens consecutive windows of a long context
    /// share (Hugging Face's doc_stride; default 128, or a third of a window
    /// shorter than 384 tokens).
    #[arg(long, value_name = "N")]
    pub doc_stride: Option<usize>,
    /// A question answerer: a question may have no answer (SQuAD 2.0's
    /// version_2_with_negative): "" where [CLS]'s scores beat the best span's.
    #[arg(long)]
    pub allow_no_answer: bool,
}

/// A model read back for `eval`, `predict` and `generate`.
pub(super) struct Loaded {
    /// The name the file gives it (or the `--model` given).
    pub(super) name: String,
    /// The dataset a wgml model is trained on, if it is one of wgml's.
    pub(super) default_data: Option<&'static str>,
    /// Names of the classes by label, when the file records them.
    pub(super) class_names: Vec<String>,
    /// How text becomes the model's token ids: the file's tokenizer, else bytes.
    pub(super) vocabulary: Vocabulary,
    pub(super) model: wgml::nn::Model,
}

/// Compiles the model and loads `weights` into it: wgml's model `model` when given
/// (the file must hold its weights), else the model the file describes, else the
/// wgml model the file names, else the CNN.
pub(super) fn load_model(ctx: &wgml::Context, model: Option<&str>, weights: &Path) -> Result<Loaded> {
    let mut c = checkpoint::load(weights)?;
    // Inference runs the adapters merged into the weights: the same outputs up to
    // f32 rounding, without the adapters' dispatches.
    if c.merge_adapters(weights)? {
        eprintln!(
            "note: the LoRA adapters of {} are merged into its weights",
            weights.display()
        );
    }
    let vocabulary = c.vocabulary(weights)?;
    if model.is_none()
        && let Some((m, class_names)) = c.build(ctx, weights)?
    {
        let name = c.model.clone().unwrap_or_else(|| "unnamed".into());
        let default_data = zoo::recipe(&name).ok().map(|r| r.data);
        return Ok(Loaded {
            name,
            default_data,
            class_names,
            vocabulary,
            model: m,
        });
    }
    let recipe = zoo::recipe(model.or(c.model.as_deref()).unwrap_or("cnn"))?;
    let mut m = recipe
        .model
        .compile(ctx, recipe.loss, recipe.optimizer.clone(), 0)?;
    if let Some(saved) = &c.model
        && saved != recipe.name
    {
        return Err(Error::Data {
            path: weights.display().to_string(),
            message: format!("holds weights of model '{saved}', not '{}'", recipe.name),
        });
    }
    m.load_params(ctx, &c.tensors)
        .map_err(|e| e.in_file(weights, ""))?;
    m.step = 0;
    m.draws = 0;
    Ok(Loaded {
        name: recipe.name.to_string(),
        default_data: Some(recipe.data),
        class_names: Vec::new(),
        vocabulary,
        model: m,
    })
}

pub fn run_eval(gpu: &GpuArgs, args: &EvalArgs) -> Result<ExitCode> {
    if args.batch_size == 0 {
        return Err(Error::invalid("--batch-size must be at least 1"));
    }
    if let Some(dir) = &args.report {
        // Fail before evaluating, not after, when the pictures cannot be written.
        wgml::report::prepare(dir)?;
    }
    let ctx = gpu.context()?;
    let Loaded {
        name,
        default_data,
        class_names,
        mut model,
        vocabulary,
    } = load_model(&ctx, args.model.as_deref(), &args.weights)?;
    let data_name = args.data.as_deref().or(default_data).ok_or_else(|| {
        Error::invalid(format!(
            "model '{name}' is not one of wgml's, so it has no default dataset: give --data"
        ))
    })?;
    let table = std::path::Path::new(data_name);
    if wgml::data::text_table::is_text_table(table) && wgml::data::text_table::has_pairs(table)? {
        super::train::refuse_untyped_pairs(
            &model.spec,
            &vocabulary,
            &args.weights.display().to_string(),
            data_name,
        )?;
    }
    // A question answerer's data keeps its test questions, to score the answers.
    let (mut data, bytes_per_token, answer_test) =
        if model.table_labels() == wgml::data::text_table::TableLabels::Answers {
            let (d, questions) = super::answers::read_answer_data(
                table,
                model.spec.input_shape(),
                &vocabulary,
                model.spec.padding_id(),
                (args.doc_stride, 0.0),
            )?;
            (d, None, Some(questions.test))
        } else {
            let (d, bytes) = load_data_with(
                data_name,
                args.seed,
                model.spec.input_shape(),
                &vocabulary,
                model.spec.padding_id(),
                model.table_labels(),
            )?;
            (d, bytes, None)
        };
    // The model's own class order, where the data names its classes otherwise.
    if !class_names.is_empty() && !data.class_names.is_empty() && data.class_names != class_names {
        if data.labels_some_outputs() {
            // Sets of classes, or tags, named by number: class k is the model's
            // output k.
            data = data.named_by_index(&class_names);
        }
        data = data.in_class_order(&class_names)?;
        println!("classes as the model numbers them: {}", class_names.join(", "));
    }
    if let Some(list) = &args.classes {
        data = keep_classes(data, list)?;
    }
    if data.sample_shape != model.spec.input_shape() {
        return Err(Error::shape(
            "eval",
            format!(
                "model '{name}' takes samples of shape {:?} but dataset '{}' has {:?}",
                model.spec.input_shape(),
                data.name,
                data.sample_shape
            ),
        ));
    }
    model.top_k = super::train::top_k_option(args.top_k, model.loss)?;
    model.dynamic_padding = !args.no_dynamic_padding;
    // Per-sample predictions only when the report draws them.
    let b = args.batch_size;
    // A token classifier's entity scores need them too.
    let tags = model.table_labels() == wgml::data::text_table::TableLabels::Tags;
    let (mut e, predicted) = match (&args.report, &answer_test) {
        // A question answerer: its answers too, from the same pass's logits.
        (_, Some(test)) => train::evaluate_answers(&mut model, &ctx, test, b)?,
        (Some(_), None) => train::evaluate_with_predictions(&mut model, &ctx, &data.test, b)?,
        (None, None) if tags => train::evaluate_with_predictions(&mut model, &ctx, &data.test, b)?,
        (None, None) => (train::evaluate(&mut model, &ctx, &data.test, b)?, Vec::new()),
    };
    e.entities = wgml::train::entities::entity_scores(&data.test, &predicted, &data.class_names);
    print_evaluation(&e);
    print_bits_per_byte(&e, bytes_per_token);
    if let Some(path) = &args.metrics {
        write_metrics_json(path, None, &e, &data.class_names, &ctx)?;
    }
    if let Some(dir) = &args.report {
        write_run_report(dir, &History::default(), &e, &data, &predicted)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Converts any image to what the MNIST models expect: 28×28 grey in [0, 1], a
/// light digit on a dark background (inverted when the picture is dark-on-light).
pub fn mnist_pixels(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let img = wgml::data::image_folder::decode(path, &bytes)?;
    let grey = img.to_luma8();
    let small = image::imageops::resize(&grey, 28, 28, image::imageops::FilterType::Triangle);
    let mut px: Vec<f32> = small.pixels().map(|p| p.0[0] as f32 / 255.0).collect();
    // MNIST digits are white on black: a bright border means dark ink on paper.
    let border: Vec<f32> = (0..28)
        .flat_map(|i| [px[i], px[27 * 28 + i], px[i * 28], px[i * 28 + 27]])
        .collect();
    let border_mean = border.iter().sum::<f32>() / border.len() as f32;
    if border_mean > 0.5 {
        px.iter_mut().for_each(|p| *p = 1.0 - *p);
    }
    Ok(px)
}

pub fn run_predict(gpu: &GpuArgs, args: &PredictArgs) -> Result<ExitCode> {
    let ctx = gpu.context()?;
    let Loaded {
        name,
        class_names,
        vocabulary,
        mut model,
        ..
    } = load_model(&ctx, args.model.as_deref(), &args.weights)?;
    if model.table_labels() == wgml::data::text_table::TableLabels::Answers {
        return super::answers::answer_questions(
            &ctx,
            &mut model,
            &vocabulary,
            &args.images,
            args.output.as_ref(),
            args.doc_stride,
            args.allow_no_answer,
        );
    }
    // A token classifier tags each word of sentences.
    let tagger = model.table_labels() == wgml::data::text_table::TableLabels::Tags;
    if args.sentences && !tagger {
        return Err(Error::invalid(format!(
            "--sentences reads plain text for a token classifier; {} classifies whole texts or \
             images",
            args.weights.display()
        )));
    }
    if tagger && let (&[tokens], Some(pad)) = (model.spec.input_shape(), model.spec.padding_id()) {
        let mut tagger = super::tags::Tagger {
            ctx: &ctx,
            model: &mut model,
            tokens,
            pad,
            vocabulary: &vocabulary,
            names: &class_names,
        };
        let output = args.output.as_ref();
        return if args.sentences {
            tagger.tag_sentences(&args.images, output)
        } else {
            tagger.tag_words(&args.images, output)
        };
    }
    let is_table = |p: &PathBuf| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["csv", "jsonl", "json"].iter().any(|t| e.eq_ignore_ascii_case(t)))
    };
    if let (&[tokens], Some(pad)) = (model.spec.input_shape(), model.spec.padding_id())
        && args.images.iter().any(is_table)
    {
        let [table] = args.images.as_slice() else {
            return Err(Error::invalid(
                "predict reads one table of texts at a time: give the table alone (text files may \
                 come several together)",
            ));
        };
        return predict_table(
            &ctx,
            &mut model,
            table,
            (tokens, pad),
            &vocabulary,
            &class_names,
            args,
        );
    }
    if args.output.is_some() {
        return Err(Error::invalid(
            "--output writes a table's predictions: give a CSV or JSON-lines table of texts",
        ));
    }
    let mut x = Vec::new();
    match (model.spec.input_shape(), model.spec.padding_id()) {
        // A classifier of texts: token ids as it was trained on them.
        (&[tokens], Some(pad)) => {
            for p in &args.images {
                x.extend(wgml::data::text_classes::read_document(
                    p,
                    &vocabulary,
                    tokens,
                    pad,
                )?);
            }
        }
        (&[c, h, w], _) if c == 1 || c == 3 => {
            // MNIST's models see digits as MNIST prepares them; a model trained on a
            // folder of images (whose classes the file names) sees images as the
            // folders gave them.
            let mnist = [c, h, w] == [1, 28, 28] && class_names.is_empty();
            for p in &args.images {
                x.extend(if mnist {
                    mnist_pixels(p)?
                } else {
                    wgml::data::image_folder::pixels(p, [c, h, w])?
                });
            }
        }
        (shape, _) => {
            return Err(Error::invalid(format!(
                "predict takes images, or texts for a classifier of texts by class (an Embedding \
                 with mask_id); model '{name}' takes samples of shape {shape:?}"
            )));
        }
    }
    let probs = model.predict(&ctx, &x, args.images.len())?;
    let classes = model.output_dim();
    if model.scores() {
        for (path, score) in args.images.iter().zip(&probs) {
            println!("{}: score {score:.4}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if model.multi_label() {
        let name = |i: usize| class_names.get(i).cloned().unwrap_or_else(|| i.to_string());
        for (path, p) in args.images.iter().zip(probs.chunks(classes)) {
            let each: Vec<String> = p
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{} {v:.4}", name(i)))
                .collect();
            println!(
                "{}: {} ({})",
                path.display(),
                in_set(p, &name).unwrap_or_else(|| "no class".into()),
                each.join(", ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    for (path, p) in args.images.iter().zip(probs.chunks(classes)) {
        let (best, prob) = best_class(p);
        match class_names.get(best) {
            Some(class) => println!(
                "{}: {class} (class {best}, probability {prob:.4})",
                path.display()
            ),
            None => println!("{}: {best} (probability {prob:.4})", path.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows of a table encoded and predicted at a time (bounds the ids held).
const TABLE_CHUNK: usize = 4096;

/// A multi-label classifier's classes for probabilities `p`: those above 0.5,
/// named by `name` and joined by ';'; `None` when there are none.
fn in_set(p: &[f32], name: &dyn Fn(usize) -> String) -> Option<String> {
    let set: Vec<String> = (0..p.len()).filter(|&i| p[i] > 0.5).map(name).collect();
    (!set.is_empty()).then(|| set.join(";"))
}

/// The class with the highest probability in `p`, and that probability (NaN
/// sorted lowest).
pub(super) fn best_class(p: &[f32]) -> (usize, f32) {
    let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    (0..p.len()).fold((0, p.first().copied().unwrap_or(f32::NAN)), |(b, pb), i| {
        if key(p[i]) > key(pb) { (i, p[i]) } else { (b, pb) }
    })
}

/// Classifies the texts of `table` with `model` (reading `tokens` ids padded with
/// `pad`, as it was trained) and writes one CSV row per text to `--output` or
/// standard output.
fn predict_table(
    ctx: &wgml::Context,
    model: &mut wgml::nn::Model,
    table: &std::path::Path,
    (tokens, pad): (usize, u32),
    vocabulary: &wgml::data::text::Vocabulary,
    class_names: &[String],
    args: &PredictArgs,
) -> Result<ExitCode> {
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    // The output opens first, so a bad path costs no predictions.
    let sink: Box<dyn std::io::Write> = match &args.output {
        Some(path)
            if matches!(
                (std::fs::canonicalize(path), std::fs::canonicalize(table)),
                (Ok(a), Ok(b)) if a == b
            ) =>
        {
            return Err(Error::invalid(format!(
                "--output {} is the table being read: give another file",
                path.display()
            )));
        }
        Some(path) => Box::new(std::fs::File::create(path).map_err(io(path))?),
        None => Box::new(std::io::stdout()),
    };
    let (texts, labels) = wgml::data::text_table::read_texts(table)?;
    if texts.iter().any(|t| t.second.is_some()) {
        super::train::refuse_untyped_pairs(
            &model.spec,
            vocabulary,
            &args.weights.display().to_string(),
            &table.display().to_string(),
        )?;
    }
    let classes = model.output_dim();
    let name = |i: usize| class_names.get(i).cloned().unwrap_or_else(|| i.to_string());
    let csv_error = |e: csv::Error| Error::invalid(format!("writing the predictions: {e}"));
    let mut out = csv::Writer::from_writer(sink);
    let mut header = vec!["row".to_string()];
    if labels.is_some() {
        header.push("label".into());
    }
    // A regression gives one score per text; a classifier its class, that
    // class's probability and every class's.
    let (scores, multi) = (model.scores(), model.multi_label());
    if scores {
        header.push("score".into());
    } else if multi {
        // A multi-label classifier: the classes above 0.5, then each one's probability.
        header.push("prediction".into());
        header.extend((0..classes).map(name));
    } else {
        header.extend(["prediction".to_string(), "probability".to_string()]);
        header.extend((0..classes).map(name));
    }
    out.write_record(&header).map_err(csv_error)?;
    let frames = vocabulary.text_frames()?;
    for (c, chunk) in texts.chunks(TABLE_CHUNK).enumerate() {
        let first = c * TABLE_CHUNK;
        let mut x = Vec::with_capacity(chunk.len() * tokens);
        for (i, text) in chunk.iter().enumerate() {
            let second = text.second.as_ref().map(String::as_bytes);
            let (ids, _) = vocabulary
                .encode_text(text.text.as_bytes(), second, tokens, &frames)
                .map_err(|e| Error::invalid(format!("{}: row {}: {e}", table.display(), first + i + 1)))?;
            x.extend(wgml::data::text_classes::cut_and_pad(&ids, tokens, pad));
        }
        let probs = model.predict(ctx, &x, chunk.len())?;
        for (i, p) in probs.chunks(classes).enumerate() {
            let row = first + i;
            let (best, prob) = best_class(p);
            let mut record = vec![(row + 1).to_string()];
            if let Some(labels) = &labels {
                record.push(labels[row].clone().unwrap_or_default());
            }
            if scores {
                record.push(format!("{:.6}", p[0]));
            } else if multi {
                record.push(in_set(p, &name).unwrap_or_default());
                record.extend(p.iter().map(|v| format!("{v:.6}")));
            } else {
                record.extend([name(best), format!("{prob:.6}")]);
                record.extend(p.iter().map(|v| format!("{v:.6}")));
            }
            out.write_record(&record).map_err(csv_error)?;
        }
    }
    let shown = args.output.clone().unwrap_or_else(|| "standard output".into());
    out.flush().map_err(io(&shown))?;
    if let Some(path) = &args.output {
        eprintln!("{} predictions written to {}", texts.len(), path.display());
    }
    Ok(ExitCode::SUCCESS)
}
