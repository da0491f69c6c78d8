//! `wgml train`: train one of the seed models and report what it learned.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use wgml::checkpoint;
use wgml::data::Dataset;
use wgml::data::text::{self, Vocabulary};
use wgml::data::text_table::TableLabels;
use wgml::data::{text_classes, text_table};
use wgml::graph::PlanOptions;
use wgml::import::bert::{Family, encoder_classifier_of, encoder_head_of};
use wgml::kernels::optim::Optimizer;
use wgml::nn::model::ModelSpec;
use wgml::nn::{self, zoo};
use wgml::report;
use wgml::train::entities::entity_scores;
use wgml::train::{self, Evaluation, History};
use wgml::{Error, Result};

use super::GpuArgs;

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Model: cnn, cnn-bn (the cnn with batch normalization), convnet, mlp, binary,
    /// regression, vae (a variational autoencoder, 784 → 512 → latent and back) or
    /// gan (a generator and a discriminator trained in alternation);
    /// or a JSON file describing one (layers, loss, optimizer; see
    /// examples/models/cnn.json), trained with --data and fit's defaults (10 epochs,
    /// batch 32, no validation split); or a wgml checkpoint (.safetensors, e.g. from
    /// `wgml import`): the model it describes, from its weights (unless --init
    /// names others), to fine-tune it.
    #[arg(long, default_value = "cnn")]
    pub model: String,
    /// Dataset: mnist-10k (embedded), fashion-mnist, a folder of IDX files, a folder
    /// of images (train/CLASS/*.png and test/CLASS/*.png; grey or RGB as the model
    /// takes them, resized to its input), a folder of texts by class
    /// (train/CLASS/*.txt and test/CLASS/*.txt, as aclImdb: each document cut to the
    /// model's tokens and padded with its Embedding's mask_id; a GPT-2 checkpoint
    /// becomes a classifier of its last real token) or labelled texts in a table
    /// (FILE.csv or FILE.jsonl with text and label columns, every tenth row of each label the
    /// test split; or a folder of train.csv and test.csv), or text:PATH for a language
    /// model (a text file, or a folder of them; each file's last tenth is the test
    /// split).
    /// Default: the model's own (mnist-10k for cnn and mlp, a synthetic set otherwise).
    #[arg(long)]
    pub data: Option<String>,
    /// Text data (--data text:PATH): how the text becomes token ids. bytes (256
    /// ids, any file; the default, or the --init checkpoint's tokenizer), bpe:N (a
    /// byte-level BPE of at most N tokens, GPT-2's scheme, trained on the training
    /// text), or a Hugging Face tokenizer.json file. --save keeps the tokenizer in
    /// the checkpoint. The model needs an Embedding row and a head output per token.
    #[arg(long, value_name = "bytes|bpe:N|FILE")]
    pub tokenizer: Option<String>,
    /// VAE and GAN (--model vae|gan): dimensions of the latent space or noise
    /// (default 2 for the VAE, 100 for the GAN).
    #[arg(long, value_name = "N")]
    pub latent: Option<usize>,
    /// GAN: after training, classify 1,000 generated images with this classifier
    /// checkpoint (e.g. the seed CNN from `wgml train --save`) and report the share
    /// classified with probability ≥ 0.9 and how evenly the classes appear.
    #[arg(long, value_name = "CHECKPOINT")]
    pub judge: Option<PathBuf>,
    /// Train and test on these classes only, e.g. 0-4 or 1,3,7, relabelled from 0 in
    /// the order given (5-9 makes digit 5 class 0); the model's output layer gets one
    /// unit per kept class.
    #[arg(long, value_name = "LIST")]
    pub classes: Option<String>,
    /// Train on N labelled samples of each class only, drawn with --seed (the test
    /// split stays whole).
    #[arg(long, value_name = "N")]
    pub per_class: Option<usize>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Samples per batch (per forward/backward pass).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Batches per optimizer step: their gradients are summed (gradient
    /// accumulation), so a step follows batch-size × N samples while memory holds
    /// one batch.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub accumulate: usize,
    /// Learning rate.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Smooth the labels of the cross-entropy by E in [0, 1): the target becomes
    /// (1 − E)·onehot + E/classes (PyTorch's label_smoothing). Training and
    /// validation losses include it; the test measures after training do not.
    #[arg(long, value_name = "E")]
    pub label_smoothing: Option<f32>,
    /// Also measure the test's top-K accuracy (labels among the K largest outputs,
    /// Keras' SparseTopKCategoricalAccuracy); sparse categorical cross-entropy only.
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Keep an exponential moving average of the weights with momentum M (Keras'
    /// use_ema with ema_momentum, e.g. 0.99 or 0.999), updated after every step, and
    /// end training with it in the weights' place (saved and tested so). With
    /// --model gan: of the generator's weights, after every generator step.
    /// Models trained on loss terms (vae, a functional file) keep one too.
    #[arg(long, value_name = "M")]
    pub ema: Option<f32>,
    /// Weigh each training sample's loss by its class (Keras' class_weight):
    /// `balanced` (n / (classes · count), as scikit-learn's), or CLASS=WEIGHT pairs
    /// separated by commas (classes by index or name; the others weigh 1).
    /// Evaluation is unweighted.
    #[arg(long, value_name = "balanced|CLASS=W,...")]
    pub class_weight: Option<String>,
    /// Exclude from the weight decay the tensors whose names match any of these
    /// comma-separated regular expressions (Keras' exclude_from_weight_decay), e.g.
    /// `bias,ln_` for a GPT-2 as Hugging Face's Trainer fine-tunes it.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub no_decay: Vec<String>,
    /// adam, sgd or rmsprop.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Seed of the initial weights and of the shuffles.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the epochs, test results and device as JSON.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Fraction of the training set held out for validation (the last samples, as
    /// Keras; a question answerer's last questions, all their windows with them).
    #[arg(long, allow_negative_numbers = true)]
    pub val_split: Option<f64>,
    /// Early stopping: stop after N epochs without a better --monitor value (the
    /// weights of the best epoch are put back at the end).
    #[arg(long)]
    pub patience: Option<usize>,
    /// What early stopping watches: val_loss (default; the training loss without a
    /// validation split), val_accuracy, loss, accuracy, val_f1 (a token
    /// classifier's entity F1 or a question answerer's answer F1 on the
    /// validation split) or val_exact_match (a question answerer's).
    #[arg(long)]
    pub monitor: Option<String>,
    /// Early stopping counts an epoch as better only by more than this.
    #[arg(long, allow_negative_numbers = true)]
    pub min_delta: Option<f64>,
    /// Lower the learning rate after N epochs without a better --monitor value
    /// (Keras' ReduceLROnPlateau).
    #[arg(long, value_name = "N")]
    pub reduce_lr_patience: Option<usize>,
    /// Factor of each reduction (default 0.1).
    #[arg(long, allow_negative_numbers = true)]
    pub reduce_lr_factor: Option<f64>,
    /// The learning rate is never reduced below this (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub min_lr: Option<f64>,
    /// Momentum (SGD and RMSprop).
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f32>,
    /// Clip each step's gradients to this global L2 norm (PyTorch's clip_grad_norm_,
    /// Keras' global_clipnorm).
    #[arg(long, allow_negative_numbers = true, value_name = "MAX_NORM")]
    pub clip_norm: Option<f32>,
    /// Weight decay: decoupled for adam (AdamW, as Keras' and PyTorch's), L2 added to
    /// the gradient for sgd (PyTorch's SGD).
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// Change the learning rate every step: cosine (Keras' CosineDecay, over the whole
    /// run unless --decay-steps; optional --warmup-steps and --alpha), linear (the
    /// same, down a straight line: Hugging Face's default schedule) or exponential
    /// (lr · decay-rate^(step / decay-steps); --staircase rounds the exponent down).
    #[arg(long, value_name = "cosine|linear|exponential")]
    pub lr_schedule: Option<String>,
    /// Steps of the schedule's decay (cosine, linear: default every step after the warmup).
    #[arg(long, value_name = "N")]
    pub decay_steps: Option<u64>,
    /// Exponential decay: the factor per --decay-steps steps.
    #[arg(long, allow_negative_numbers = true)]
    pub decay_rate: Option<f64>,
    /// Exponential decay: lower the rate in steps, every --decay-steps steps.
    #[arg(long)]
    pub staircase: bool,
    /// Cosine or linear decay: the final rate as a fraction of --lr (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Cosine or linear decay: steps of a linear warmup from 0 to --lr first (default 0).
    #[arg(long, value_name = "N")]
    pub warmup_steps: Option<u64>,
    /// Stop after N optimizer steps in total.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Move each training image by up to N pixels each way, drawn anew every epoch
    /// (Keras' RandomTranslation with fill_mode="constant"; zeros come in).
    #[arg(long, value_name = "N")]
    pub augment_shift: Option<usize>,
    /// Mirror each training image left to right with probability ½ (Keras'
    /// RandomFlip("horizontal")).
    #[arg(long)]
    pub augment_flip: bool,
    /// Keep the dataset's order (with --val-split 0 the first batch is the first B samples).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Batch texts of similar length together (as Hugging Face's group_by_length),
    /// so a model that masks padding runs each batch only as long as its longest
    /// text needs: each epoch's shuffled texts are sorted by the length they run
    /// at (a power of two), keeping the shuffle among texts of one length, and the
    /// batches are shuffled.
    #[arg(long)]
    pub group_by_length: bool,
    /// Run every batch of a model that masks padding at the model's whole length,
    /// instead of at its longest sample's (rounded up to a power of two); same
    /// results up to f32 rounding and dropout's draws, for comparison.
    #[arg(long)]
    pub no_dynamic_padding: bool,
    /// A question answerer: tokens consecutive windows of a long context
    /// share (Hugging Face's doc_stride; default 128, or a third of a window
    /// shorter than 384 tokens).
    #[arg(long, value_name = "N")]
    pub doc_stride: Option<usize>,
    /// Keep the whole training state (weights, optimizer state, early-stopping and
    /// learning-rate counters, history) in this folder after every epoch, and resume
    /// from it when it holds one: a run that was stopped continues where it was, with
    /// the same results (Keras' BackupAndRestore). Removed when training ends.
    #[arg(long, value_name = "DIR")]
    pub backup: Option<PathBuf>,
    /// Keep --backup's state when training ends, to train for more epochs later
    /// (`--epochs` may then be raised, unless a cosine schedule spreads over the run's
    /// steps; every other setting must stay the same; a run that stopped early stays
    /// finished).
    #[arg(long, requires = "backup")]
    pub keep_backup: bool,
    /// Start from the weights in this safetensors checkpoint: every tensor whose name
    /// and shape match the model's loads, the others (a new head, new layers) start
    /// from their initialiser; wgml prints which is which.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Freeze layers (Keras' trainable = False): 'loaded' (every layer --init fully
    /// loads: the pretrained base) or layer numbers from 1 and ranges, e.g. 1-4,6.
    #[arg(long, value_name = "loaded|LAYERS")]
    pub freeze: Option<String>,
    /// Layers (numbers from 1 and ranges) that start from their initialisers even
    /// where --init holds tensors that fit them: a new head for a new task with as
    /// many classes as the old one.
    #[arg(long, value_name = "LAYERS", requires = "init")]
    pub new_layers: Option<String>,
    /// Fine-tune with low-rank adapters of rank R (LoRA, as Hugging Face PEFT's
    /// r): every targeted Dense layer, attention projection or Conv2D gets a
    /// trainable A [R, in] and B [out, R] (B starting at zero) whose product, scaled by
    /// --lora-alpha / R, adds to its output; every other tensor is frozen. The
    /// saved checkpoint keeps the adapters; `wgml export` merges them or, with
    /// --peft, writes them as a PEFT adapter.
    #[arg(long, value_name = "R")]
    pub lora: Option<usize>,
    /// LoRA's alpha (PEFT's lora_alpha; default 8): adapters are scaled by alpha / R.
    #[arg(long, value_name = "A", requires = "lora")]
    pub lora_alpha: Option<f32>,
    /// Dropout on the adapters' inputs while training (PEFT's lora_dropout; default 0).
    #[arg(long, value_name = "P", requires = "lora")]
    pub lora_dropout: Option<f32>,
    /// The modules that get adapters, comma-separated: layer names or their last
    /// parts (attn.query, mlp.c_fc, or a Sequential's PyTorch module index; Dense
    /// layers, attention projections and Conv2D layers), or all-linear (every Dense
    /// layer and projection but the output layer). Default:
    /// the query, key and value projections of a GPT-2 (PEFT's c_attn), the query
    /// and value of a BERT or a Llama (PEFT's defaults there), all-linear otherwise. A text
    /// classifier's head (GPT-2's score, BERT's classifier) trains in full.
    #[arg(long, value_name = "MODULES", value_delimiter = ',', requires = "lora")]
    pub lora_targets: Vec<String>,
    /// Layers trained in full beside the adapters (PEFT's modules_to_save), e.g. a
    /// new head; comma-separated names as --lora-targets takes them.
    #[arg(long, value_name = "LAYERS", value_delimiter = ',', requires = "lora")]
    pub lora_train: Vec<String>,
    /// Save the trained weights to this safetensors checkpoint (PyTorch names and layouts).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Instead of training: time every kernel of one training step (GPU timestamps
    /// inside one submission when available, else each dispatch alone by wall
    /// clock) and print a table sorted by time with each kernel's share.
    #[arg(long)]
    pub profile: bool,
    /// Lower every layer on its own, without the fused kernels the planner picks for
    /// CPU adapters (Conv2D + MaxPool2D in one kernel pair, Adam in the Dense weight
    /// gradient's epilogue); same results up to f32 rounding, for comparison.
    #[arg(long)]
    pub no_fuse: bool,
    /// Write pictures of the run into this folder (created if missing): learning
    /// curves, the confusion matrix and misclassified test images (PNG).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Set by `wgml tune`: measure the kernel choices of the run's plans and stop.
    #[arg(skip)]
    pub tune_only: bool,
}

/// The dataset `name` names, its images read as samples of `sample_shape` when it
/// is a folder of images, its text as byte tokens.
pub fn load_data(name: &str, seed: u64, sample_shape: &[usize]) -> Result<Dataset> {
    load_data_with(
        name,
        seed,
        sample_shape,
        &Vocabulary::Bytes,
        None,
        TableLabels::Class,
    )
    .map(|(d, _)| d)
}

/// Whether `--data name` is labelled texts: a folder of texts by class (see
/// [`text_classes`](wgml::data::text_classes)) or tables of texts and labels (see
/// [`text_table`](wgml::data::text_table)).
pub fn is_labelled_texts(name: &str) -> bool {
    labelled_texts(Path::new(name))
}

/// [`is_labelled_texts`] of a path.
fn labelled_texts(path: &Path) -> bool {
    text_classes::is_text_classes(path) || text_table::is_text_table(path)
}

/// The training texts of labelled texts `path`, to train a tokenizer on.
fn labelled_training_texts(path: &Path, labels: TableLabels) -> Result<Vec<String>> {
    if labels == TableLabels::Tags || text_table::is_text_table(path) {
        return text_table::training_texts(path, labels);
    }
    text_classes::training_documents(path)?
        .into_iter()
        .map(|d| {
            String::from_utf8(d).map_err(|e| {
                Error::invalid(format!(
                    "a training document of {} is not UTF-8 ({e}); a tokenizer reads UTF-8, bytes \
                     read any file",
                    path.display()
                ))
            })
        })
        .collect()
}

/// An error when `spec` is a BERT-family model imported before wgml computed
/// token types (it folded type 0 into the positions, so it reads every token
/// as type 0) whose tokenizer types a pair's second text 1: pairs of texts
/// (from `data`) would read as one segment. `model` names it.
pub fn refuse_untyped_pairs(
    spec: &ModelSpec,
    vocabulary: &Vocabulary,
    model: &str,
    data: &str,
) -> Result<()> {
    let ModelSpec::Functional(f) = spec else {
        return Ok(());
    };
    let Some((Family::Bert | Family::Electra, _)) = encoder_classifier_of(f) else {
        return Ok(());
    };
    if f.layers
        .iter()
        .any(|l| l.name.ends_with("embeddings.token_types"))
    {
        return Ok(());
    }
    let typed = vocabulary
        .pair_frame()?
        .is_some_and(|p| p.probe.1.iter().any(|&t| t != 0));
    if !typed {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{model} is a BERT imported before wgml read BERT's token types: it reads every token as \
         type 0, but {data} holds pairs of texts, whose second text is type 1; import the Hugging \
         Face folder again (wgml import DIR --save FILE)"
    )))
}

/// [`load_data`], text (`text:PATH`, a folder of texts by class) read as tokens
/// of `vocabulary`, texts by class padded with `padding` (the model's
/// [`ModelSpec::padding_id`]); for `text:PATH`, also the test split's bytes per
/// token (for [`print_bits_per_byte`]).
pub fn load_data_with(
    name: &str,
    seed: u64,
    sample_shape: &[usize],
    vocabulary: &Vocabulary,
    padding: Option<u32>,
    labels: TableLabels,
) -> Result<(Dataset, Option<f64>)> {
    if labels != TableLabels::Answers && wgml::data::squad::is_squad(Path::new(name)) {
        return Err(Error::invalid(format!(
            "{name} holds questions about contexts (SQuAD's format), which a question answerer \
             reads: import a BERT-family model with `wgml import --question-answering`, then train \
             it on them"
        )));
    }
    let (data, bytes_per_token) = match name {
        dir if (labels == TableLabels::Tags && !dir.starts_with("text:")) || is_labelled_texts(dir) => {
            let pad = padding.ok_or_else(|| {
                Error::invalid(match sample_shape {
                    [_] => format!(
                        "{dir} holds labelled texts, which are padded to the model's {sample_shape:?} \
                         tokens: give the model's Embedding a mask_id (the padding id: 0 for bytes, \
                         GPT-2's <|endoftext|> 50256), so the padding is masked"
                    ),
                    _ => format!(
                        "{dir} holds labelled texts, read as token ids [T], but the model takes \
                         samples of shape {sample_shape:?}: give a model whose input is token ids \
                         read by an Embedding with a mask_id (examples/models/text_classifier.json)"
                    ),
                })
            })?;
            let path = Path::new(dir);
            let (d, report) = if labels == TableLabels::Tags || text_table::is_text_table(path) {
                text_table::read_text_table(path, sample_shape, vocabulary, pad, labels)?
            } else {
                text_classes::read_text_classes(path, sample_shape, vocabulary, pad)?
            };
            if !report.ignored.is_empty() {
                let names: Vec<String> = report.ignored.iter().map(|f| f.display().to_string()).collect();
                println!("left out, a class the test split lacks: {}", names.join(", "));
            }
            let pairs = match report.pairs {
                0 => String::new(),
                n if n == report.documents => " (pairs of texts)".to_string(),
                n => format!(" ({n} of them pairs of texts)"),
            };
            let unit = if labels == TableLabels::Tags {
                "sentences of tagged words"
            } else {
                "documents"
            };
            println!(
                "texts read as {}: {} {unit}{pairs}, {:.0} tokens each on average, {} cut to {} tokens, padded with id {pad}",
                vocabulary.describe(),
                report.documents,
                report.mean_tokens,
                report.truncated,
                sample_shape.first().copied().unwrap_or(0)
            );
            (d, None)
        }
        "two-blobs" => (Dataset::two_blobs(seed), None),
        "linear-regression" => (Dataset::linear_regression(seed), None),
        other => match other.strip_prefix("text:") {
            Some(path) => {
                let corpus = text::Corpus::read(Path::new(path))?;
                if !corpus.ignored.is_empty() {
                    let names: Vec<String> = corpus.ignored.iter().map(|f| f.display().to_string()).collect();
                    println!("left out, naming no split: {}", names.join(", "));
                }
                let (d, rate) = text::read_corpus_data(&corpus, Path::new(path), sample_shape, vocabulary)?;
                (d, Some(rate))
            }
            None => (Dataset::open(other, sample_shape)?, None),
        },
    };
    if !data.class_names.is_empty() {
        let names: Vec<String> = data
            .class_names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{i} = {n}"))
            .collect();
        println!("classes: {}", names.join(", "));
    }
    Ok((data, bytes_per_token))
}

/// How `wgml train --data text:PATH` (or a folder of texts by class) reads the
/// text: `--tokenizer` as `choice`
/// (see [`TrainArgs::tokenizer`]), else the `--init` checkpoint's, else bytes. A
/// `--tokenizer` that differs from the one the `--init` checkpoint was trained
/// with is refused unless `new_layers` re-initialise layers: its ids would pick
/// the trained rows of other tokens.
fn text_vocabulary(
    choice: Option<&str>,
    file: &Path,
    init: Option<&(&PathBuf, checkpoint::Checkpoint)>,
    new_layers: bool,
    labels: TableLabels,
) -> Result<Vocabulary> {
    let Some(choice) = choice else {
        return match init {
            Some((path, c)) => c.vocabulary(path),
            None => Ok(Vocabulary::Bytes),
        };
    };
    let chosen = chosen_vocabulary(choice, file, labels)?;
    if let Some((path, c)) = init
        && c.metadata.contains_key(checkpoint::TOKENIZER_KEY)
        && !new_layers
        && c.vocabulary(path)?.to_json()? != chosen.to_json()?
    {
        return Err(Error::invalid(format!(
            "--tokenizer {choice} is not the tokenizer {} was trained with, so its ids would \
             pick other tokens' trained rows: leave --tokenizer out to read the text as the \
             checkpoint does, or re-initialise the Embedding and head with --new-layers",
            path.display()
        )));
    }
    Ok(chosen)
}

/// The vocabulary `--tokenizer choice` names (`bytes`, `bpe:N` trained on the
/// training part of `file`: a text corpus's, or the training documents of a
/// folder of texts by class, or a table's split as its `labels` split it; or a
/// tokenizer.json file).
fn chosen_vocabulary(choice: &str, file: &Path, labels: TableLabels) -> Result<Vocabulary> {
    if choice == "bytes" {
        return Ok(Vocabulary::Bytes);
    }
    let Some(size) = choice.strip_prefix("bpe:") else {
        let v = Vocabulary::from_file(Path::new(choice))?;
        println!("tokenizer from {choice}: {} tokens", v.size());
        return Ok(v);
    };
    let size: usize = size.parse().map_err(|_| {
        Error::invalid(format!(
            "--tokenizer {choice}: give the most tokens the BPE may have, e.g. bpe:1024"
        ))
    })?;
    let corpus;
    let documents;
    let training: Vec<&str> = if labels == TableLabels::Tags || labelled_texts(file) {
        documents = labelled_training_texts(file, labels)?;
        documents.iter().map(String::as_str).collect()
    } else {
        corpus = text::Corpus::read(file)?;
        corpus.training_texts()?
    };
    let start = std::time::Instant::now();
    let v = Vocabulary::train_bpe_on(&training, size)?;
    println!(
        "tokenizer: a byte-level BPE of {} tokens (at most {size}) trained on {} bytes in {:.2}s",
        v.size(),
        training.iter().map(|t| t.len()).sum::<usize>(),
        start.elapsed().as_secs_f64()
    );
    Ok(v)
}

/// `data` with only the classes `list` names (`--classes`), relabelled from 0.
pub fn keep_classes(data: Dataset, list: &str) -> Result<Dataset> {
    let classes = wgml::ranges::parse(list, 0).map_err(|part| {
        Error::invalid(format!(
            "--classes: '{part}' is not a class number (from 0) or a range such as 0-4"
        ))
    })?;
    let data = data.keep_classes(&classes)?;
    let names: Vec<String> = data
        .class_names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i} = {n}"))
        .collect();
    println!("classes kept: {}", names.join(", "));
    Ok(data)
}

fn optimizer(name: &str, lr: f32, momentum: Option<f32>) -> Result<Optimizer> {
    let m = momentum.unwrap_or(0.0);
    let o = match name {
        "adam" if momentum.is_some() => {
            return Err(Error::invalid("--momentum applies to sgd and rmsprop, not adam"));
        }
        "adam" => Optimizer::adam(lr),
        "sgd" => Optimizer::sgd(lr, m),
        "rmsprop" => match Optimizer::rmsprop(lr) {
            Optimizer::RmsProp {
                rho,
                epsilon,
                centered,
                ..
            } => Optimizer::RmsProp {
                lr,
                rho,
                epsilon,
                momentum: m,
                centered,
            },
            other => other,
        },
        other => {
            return Err(Error::invalid(format!(
                "unknown optimizer '{other}': choose adam, sgd or rmsprop"
            )));
        }
    };
    o.validate()?;
    Ok(o)
}

/// `optimizer` with weight decay `wd` (Adam: decoupled, AdamW; SGD: L2).
fn with_weight_decay(optimizer: Optimizer, wd: f32) -> Result<Optimizer> {
    let mut o = optimizer;
    match &mut o {
        Optimizer::Adam { weight_decay, .. } | Optimizer::Sgd { weight_decay, .. } => *weight_decay = wd,
        Optimizer::RmsProp { .. } => {
            return Err(Error::invalid(
                "--weight-decay applies to adam (AdamW) and sgd; wgml's rmsprop has none",
            ));
        }
    }
    o.validate()?;
    Ok(o)
}

/// The class weights `--class-weight spec` describes for a model trained with
/// `loss` on `data`'s training split: `balanced` weighs class c by n / (k · n_c)
/// (n labels, k classes, n_c of class c: scikit-learn's `compute_class_weight`),
/// else `CLASS=WEIGHT` pairs (a class by index or by the dataset's name for it;
/// unnamed classes weigh 1).
fn class_weights(spec: &str, data: &Dataset, loss: wgml::nn::Loss) -> Result<Vec<f32>> {
    use wgml::data::Targets;
    // How many training labels each class has.
    let counts = match (&data.train.y, loss) {
        (Targets::Classes { .. }, wgml::nn::Loss::SparseCategoricalCrossentropy) => data.train.class_counts(),
        (Targets::Values { values, dim: 1 }, wgml::nn::Loss::BinaryCrossentropy) => {
            let ones = values.iter().filter(|&&v| v > 0.5).count();
            vec![values.len() - ones, ones]
        }
        _ => {
            return Err(Error::invalid(format!(
                "--class-weight applies to classifiers (sparse categorical cross-entropy, or binary \
                 cross-entropy of one output); this model trains with {}",
                loss.name()
            )));
        }
    };
    let k = counts.len();
    if spec == "balanced" {
        let n: usize = counts.iter().sum();
        if let Some(c) = counts.iter().position(|&n_c| n_c == 0) {
            return Err(Error::invalid(format!(
                "--class-weight balanced: class {c} has no training sample to weigh by; give the \
                 weights as CLASS=WEIGHT pairs"
            )));
        }
        return Ok(counts
            .iter()
            .map(|&n_c| (n as f64 / (k * n_c) as f64) as f32)
            .collect());
    }
    let mut weights = vec![1.0f32; k];
    for pair in spec.split(',') {
        let (class, weight) = pair.split_once('=').ok_or_else(|| {
            Error::invalid(format!(
                "--class-weight '{pair}': give balanced, or CLASS=WEIGHT pairs separated by commas"
            ))
        })?;
        // A class's name first (after --classes, digit names and indices differ), then its index.
        let class = class.trim();
        let c = match data.class_names.iter().position(|n| n == class) {
            Some(c) => c,
            None => class
                .parse::<usize>()
                .map_err(|_| Error::invalid(format!("--class-weight: no class is named '{class}'")))?,
        };
        if c >= k {
            return Err(Error::invalid(format!(
                "--class-weight: class {c} is past the {k} classes"
            )));
        }
        weights[c] = weight.trim().parse::<f32>().map_err(|_| {
            Error::invalid(format!(
                "--class-weight: weight '{}' is not a number",
                weight.trim()
            ))
        })?;
    }
    Ok(weights)
}

/// `--top-k K` for a model trained with `loss`: refused for K = 0 and for losses
/// other than sparse categorical cross-entropy (checked before the GPU starts).
pub fn top_k_option(k: Option<usize>, loss: wgml::nn::Loss) -> Result<Option<usize>> {
    match k {
        Some(0) => Err(Error::invalid("--top-k needs K of at least 1")),
        Some(k) if loss != wgml::nn::Loss::SparseCategoricalCrossentropy => Err(Error::invalid(format!(
            "--top-k {k} applies to sparse categorical cross-entropy (classifiers, language \
             models); this model trains with {}",
            loss.name()
        ))),
        k => Ok(k),
    }
}

/// The schedule the flags describe; flags of a schedule not chosen are refused.
fn lr_schedule(args: &TrainArgs) -> Result<Option<train::LrSchedule>> {
    let unused = |flag: &str, given: bool, kind: &str| -> Result<()> {
        if given {
            return Err(Error::invalid(format!("{flag} belongs to --lr-schedule {kind}")));
        }
        Ok(())
    };
    let schedule = match args.lr_schedule.as_deref() {
        None => {
            if args.decay_steps.is_some() || args.decay_rate.is_some() || args.staircase {
                return Err(Error::invalid(
                    "--decay-steps, --decay-rate and --staircase need --lr-schedule",
                ));
            }
            unused("--alpha", args.alpha.is_some(), "cosine or linear")?;
            unused("--warmup-steps", args.warmup_steps.is_some(), "cosine or linear")?;
            return Ok(None);
        }
        Some("exponential") => {
            unused("--alpha", args.alpha.is_some(), "cosine or linear")?;
            unused("--warmup-steps", args.warmup_steps.is_some(), "cosine or linear")?;
            train::LrSchedule::Exponential {
                decay_steps: args
                    .decay_steps
                    .ok_or_else(|| Error::invalid("--lr-schedule exponential needs --decay-steps N"))?,
                decay_rate: args
                    .decay_rate
                    .ok_or_else(|| Error::invalid("--lr-schedule exponential needs --decay-rate R"))?,
                staircase: args.staircase,
            }
        }
        Some(kind @ ("cosine" | "linear")) => {
            unused("--decay-rate", args.decay_rate.is_some(), "exponential")?;
            unused("--staircase", args.staircase, "exponential")?;
            let (decay_steps, alpha, warmup_steps) = (
                args.decay_steps,
                args.alpha.unwrap_or(0.0),
                args.warmup_steps.unwrap_or(0),
            );
            if kind == "cosine" {
                train::LrSchedule::Cosine {
                    decay_steps,
                    alpha,
                    warmup_steps,
                }
            } else {
                train::LrSchedule::Linear {
                    decay_steps,
                    alpha,
                    warmup_steps,
                }
            }
        }
        Some(other) => {
            return Err(Error::invalid(format!(
                "unknown learning-rate schedule '{other}': choose cosine, linear or exponential"
            )));
        }
    };
    schedule.validate()?;
    Ok(Some(schedule))
}

/// What `wgml train` trains: a model, its loss and optimizer, fit's settings and
/// the dataset it trains on by default (none for a model from a file).
struct Recipe {
    model: ModelSpec,
    loss: nn::Loss,
    optimizer: Optimizer,
    fit: train::FitConfig,
    data: &'static str,
}

impl From<zoo::Recipe> for Recipe {
    fn from(r: zoo::Recipe) -> Recipe {
        Recipe {
            model: ModelSpec::Sequential(r.model),
            loss: r.loss,
            optimizer: r.optimizer,
            fit: r.fit,
            data: r.data,
        }
    }
}

/// The name of a model from a file: the file's stem.
fn file_model_name(path: &Path) -> String {
    path.file_stem()
        .map_or("custom".into(), |s| s.to_string_lossy().into_owned())
}

/// A model described in a JSON file (a checkpoint's [`checkpoint::Architecture`]),
/// as a recipe with fit's defaults; its name is the file's stem.
fn recipe_from_file(path: &Path, text: &str) -> Result<(Recipe, String)> {
    let a: checkpoint::Architecture = serde_json::from_str(text).map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: format!(
            "is not a model description (see examples/models/cnn.json, or vae.json for a functional model): {e}"
        ),
    })?;
    let recipe = Recipe {
        model: ModelSpec::Sequential(a.model),
        loss: a.loss,
        optimizer: a.optimizer,
        fit: train::FitConfig::default(),
        data: "",
    };
    Ok((recipe, file_model_name(path)))
}

/// The model a wgml checkpoint describes, as a recipe with fit's defaults; its
/// name is the one the file gives (else the file's stem).
fn recipe_from_checkpoint(path: &Path, c: &checkpoint::Checkpoint) -> Result<(Recipe, String)> {
    let name = c.model.clone().unwrap_or_else(|| file_model_name(path));
    let (model, loss, optimizer) = if let Some(a) = c.functional_architecture(path)? {
        let loss = a.functional.supervised_loss().ok_or_else(|| Error::Data {
            path: path.display().to_string(),
            message: "holds a model trained on its own loss terms; train it from its JSON \
                      description with --init this file"
                .into(),
        })?;
        (ModelSpec::Functional(a.functional), loss, a.optimizer)
    } else if let Some(a) = c.architecture(path)? {
        (ModelSpec::Sequential(a.model), a.loss, a.optimizer)
    } else {
        return Err(Error::Data {
            path: path.display().to_string(),
            message: "does not describe its model (an older wgml checkpoint or another \
                      program's): give --model the model and --init this file"
                .into(),
        });
    };
    let recipe = Recipe {
        model,
        loss,
        optimizer,
        fit: train::FitConfig::default(),
        data: "",
    };
    Ok((recipe, name))
}

pub fn run(gpu: &GpuArgs, args: &TrainArgs) -> Result<ExitCode> {
    if args.tokenizer.is_some()
        && !args
            .data
            .as_deref()
            .is_some_and(|d| d.starts_with("text:") || is_labelled_texts(d))
    {
        return Err(Error::invalid(
            "--tokenizer reads text into tokens: give --data text:FILE or a folder of texts by class",
        ));
    }
    match args.model.as_str() {
        "vae" if args.judge.is_some() => return Err(Error::invalid("--judge applies to --model gan")),
        "vae" => return super::vae::run(gpu, args),
        "gan" => return super::gan::run(gpu, args),
        _ if args.latent.is_some() => return Err(Error::invalid("--latent applies to --model vae and gan")),
        _ if args.judge.is_some() => return Err(Error::invalid("--judge applies to --model gan")),
        _ => {}
    }
    // A checkpoint given as the model is read once: for its model here, and as
    // the initial weights below unless --init names others.
    let model_path = PathBuf::from(&args.model);
    let mut model_checkpoint = None;
    let (mut recipe, name) = if args.model.ends_with(".safetensors") {
        let c = checkpoint::load(&model_path)?;
        let r = recipe_from_checkpoint(&model_path, &c)?;
        model_checkpoint = Some(c);
        r
    } else if args.model.ends_with(".json") {
        let path = Path::new(&args.model);
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        if super::functional::is_functional(&text) {
            let a = super::functional::architecture(path, &text)?;
            match a.functional.supervised_loss() {
                None => return super::functional::run(gpu, args, path, a),
                Some(loss) => {
                    let recipe = Recipe {
                        model: ModelSpec::Functional(a.functional),
                        loss,
                        optimizer: a.optimizer,
                        fit: train::FitConfig::default(),
                        data: "",
                    };
                    (recipe, file_model_name(path))
                }
            }
        } else {
            recipe_from_file(path, &text)?
        }
    } else {
        let r = zoo::recipe(&args.model)?;
        let name = r.name.to_string();
        (Recipe::from(r), name)
    };
    if let Some(e) = args.epochs {
        recipe.fit.epochs = e;
    }
    if let Some(b) = args.batch_size {
        recipe.fit.batch_size = b;
    }
    recipe.fit.accumulate = args.accumulate;
    let lr = args.lr.unwrap_or(recipe.optimizer.lr());
    if !(lr.is_finite() && lr > 0.0) {
        return Err(Error::invalid(format!(
            "learning rate {lr} must be a positive number"
        )));
    }
    let default_optimizer = match recipe.optimizer {
        Optimizer::Adam { .. } => "adam",
        Optimizer::Sgd { .. } => "sgd",
        Optimizer::RmsProp { .. } => "rmsprop",
    };
    recipe.optimizer = match (&args.optimizer, args.momentum) {
        (None, None) => recipe.optimizer.with_lr(lr),
        (name, momentum) => optimizer(name.as_deref().unwrap_or(default_optimizer), lr, momentum)?,
    };
    let clip_norm = args.clip_norm.map(wgml::graph::ClipNorm::new).transpose()?;
    if let Some(wd) = args.weight_decay {
        recipe.optimizer = with_weight_decay(recipe.optimizer, wd)?;
    }
    recipe.fit.lr_schedule = lr_schedule(args)?;
    recipe.fit.seed = args.seed;
    if let Some(v) = args.val_split {
        recipe.fit.validation_split = v;
    }
    if let Some(p) = args.patience {
        recipe.fit.patience = Some(p);
    }
    if let Some(m) = &args.monitor {
        recipe.fit.monitor = train::Monitor::parse(m)?;
    }
    if let Some(d) = args.min_delta {
        recipe.fit.min_delta = d;
    }
    if args.reduce_lr_patience.is_some() || args.reduce_lr_factor.is_some() || args.min_lr.is_some() {
        let mut rule = train::ReduceLrOnPlateau {
            monitor: recipe.fit.monitor,
            ..Default::default()
        };
        if let Some(p) = args.reduce_lr_patience {
            rule.patience = p;
        }
        if let Some(f) = args.reduce_lr_factor {
            rule.factor = f;
        }
        if let Some(m) = args.min_lr {
            rule.min_lr = m;
        }
        recipe.fit.reduce_lr = Some(rule);
    }
    if let Some(s) = args.steps {
        recipe.fit.max_steps = Some(s);
    }
    if args.no_shuffle {
        recipe.fit.shuffle = false;
    }
    recipe.fit.group_by_length = args.group_by_length;
    if args.augment_shift.is_some() || args.augment_flip {
        recipe.fit.augment = Some(wgml::data::augment::Augment {
            shift: args.augment_shift.unwrap_or(0),
            flip_horizontal: args.augment_flip,
        });
    }
    recipe.fit.backup = args.backup.as_ref().map(|dir| train::Backup {
        dir: dir.clone(),
        delete_when_done: !args.keep_backup,
    });
    recipe.fit.validate()?;
    if let Some(a) = &recipe.fit.augment {
        a.validate(recipe.model.input_shape())?;
    }
    let data_name = match (&args.data, recipe.data) {
        (Some(d), _) => d.clone(),
        (None, "") => {
            return Err(Error::invalid(format!(
                "model '{name}' from {} has no dataset of its own: give --data",
                args.model
            )));
        }
        (None, d) => d.to_string(),
    };
    let init = match (&args.init, model_checkpoint) {
        (Some(p), _) => Some((p, checkpoint::load(p)?)),
        (None, Some(c)) => Some((&model_path, c)),
        (None, None) => None,
    };
    // What the table's labels are to the model (classes, scores, sets or tags).
    let labels = recipe.model.table_labels(recipe.loss);
    let text_file = data_name.strip_prefix("text:").or((labels == TableLabels::Tags
        || labels == TableLabels::Answers
        || is_labelled_texts(&data_name))
    .then_some(data_name.as_str()));
    let vocabulary = match text_file {
        Some(file) => text_vocabulary(
            args.tokenizer.as_deref(),
            Path::new(file),
            init.as_ref(),
            args.new_layers.is_some(),
            labels,
        )?,
        None if args.tokenizer.is_some() => {
            return Err(Error::invalid(
                "--tokenizer reads text into tokens: give --data text:FILE or a folder of texts by class",
            ));
        }
        None => Vocabulary::Bytes,
    };
    // A language model trained on texts by class becomes a classifier of each
    // text's last real token, padded as its vocabulary pads.
    let classify = match &recipe.model {
        ModelSpec::Functional(f) if is_labelled_texts(&data_name) && recipe.model.padding_id().is_none() => {
            let per_token = f.supervised_loss() == Some(nn::Loss::SparseCategoricalCrossentropy)
                && f.graph().is_ok_and(|g| match &f.objective {
                    nn::functional::FunctionalObjective::Supervised { output, .. } => {
                        g.node(output).is_ok_and(|o| g.graph.shape(o).len() == 2)
                    }
                    _ => false,
                });
            per_token.then_some(f.clone())
        }
        _ => None,
    };
    let padding = match &classify {
        Some(_) => Some(vocabulary.padding_id().ok_or_else(|| {
            Error::invalid(format!(
                "{}'s tokenizer has no padding or end-of-text token to pad the texts with",
                args.model
            ))
        })?),
        None => recipe.model.padding_id(),
    };
    // A question answerer's data keeps its test and validation questions, to
    // score the answers; its validation questions are held out whole.
    let (mut data, bytes_per_token, mut answer_splits) = if labels == TableLabels::Answers {
        let (d, questions) = super::answers::read_answer_data(
            Path::new(&data_name),
            recipe.model.input_shape(),
            &vocabulary,
            padding,
            (args.doc_stride, recipe.fit.validation_split),
        )?;
        recipe.fit.validation_split = 0.0;
        (d, None, Some(questions))
    } else {
        let (d, bytes) = load_data_with(
            &data_name,
            args.seed,
            recipe.model.input_shape(),
            &vocabulary,
            padding,
            labels,
        )?;
        (d, bytes, None)
    };
    // What --lora defaults to: GPT-2's query, key and value, for a GPT-2 made a
    // classifier too; the classifier's new head trains in full (PEFT's SEQ_CLS).
    let gpt2 = match (&classify, &recipe.model) {
        (Some(f), _) | (None, ModelSpec::Functional(f)) => is_gpt2(f),
        _ => false,
    };
    // A classifier made now or before: its head trains in full under --lora.
    let made_classifier =
        matches!(&recipe.model, ModelSpec::Functional(f) if wgml::export::gpt2_classifier_of(f).is_some());
    let encoder = match &recipe.model {
        ModelSpec::Functional(f) => encoder_head_of(f),
        _ => None,
    };
    if text_table::is_text_table(Path::new(&data_name)) && text_table::has_pairs(Path::new(&data_name))? {
        refuse_untyped_pairs(&recipe.model, &vocabulary, &args.model, &data_name)?;
    }
    let bert_classes = encoder.map(|h| h.classes);
    let new_head: &[&str] = match encoder {
        Some(head) => head.layers(),
        None if classify.is_some() || made_classifier => &[nn::transfer::CLASSIFIER_HEAD],
        None => &[],
    };
    if let Some((path, c)) = &init {
        data = in_checkpoint_order(data, &c.class_names(path)?)?;
    }
    if data_name.starts_with("text:") {
        println!(
            "text read as {}: {} training tokens",
            vocabulary.describe(),
            data.train.x.len()
        );
    }
    if let Some(list) = &args.classes {
        data = keep_classes(data, list)?;
        // A classifier wgml makes below gets a head of the classes kept.
        if recipe.loss == nn::Loss::SparseCategoricalCrossentropy && classify.is_none() {
            let ModelSpec::Sequential(s) = &recipe.model else {
                return Err(Error::invalid(
                    "--classes resizes the head of a Sequential model; give a functional model a head \
                     of as many units as the classes kept, in its file",
                ));
            };
            recipe.model = ModelSpec::Sequential(s.with_head_units(data.class_names.len())?);
        }
    }
    if let Some(n) = args.per_class {
        data = data.per_class(n, args.seed)?;
    }
    if let Some(head) = bert_classes
        && head < data.class_names.len()
    {
        return Err(Error::invalid(format!(
            "the data has {} classes but {}'s head has {head}: import the model again with \
             --num-labels {0} (a new output layer of {0} classes)",
            data.class_names.len(),
            args.model
        )));
    }
    if let (Some(f), Some(pad)) = (classify, padding) {
        let classes = data.class_names.len();
        recipe.model = ModelSpec::Functional(f.sequence_classifier(classes, pad)?);
        recipe.loss = nn::Loss::SparseCategoricalCrossentropy;
        println!(
            "a sequence classifier: each text read at its last real token ({}), a new head '{}' of \
             {classes} classes",
            nn::transfer::CLASSIFIER_POOL,
            nn::transfer::CLASSIFIER_HEAD
        );
    }
    // A dataset's own validation split (an image folder's val/) replaces the
    // recipe's share of the training samples; asking for both is refused.
    let held_out = answer_splits.as_ref().is_some_and(|a| a.held_out);
    if let Some(v) = &data.validation {
        if let Some(share) = args.val_split.filter(|&s| s > 0.0 && !held_out) {
            return Err(Error::invalid(format!(
                "'{}' has its own validation split ({} samples); --val-split {share} would take \
                 another from the training samples: leave it out, or give --val-split 0 to train \
                 without validating",
                data.name,
                v.len()
            )));
        }
        if args.val_split == Some(0.0) {
            data.validation = None;
        } else if !held_out {
            recipe.fit.validation_split = 0.0;
            println!(
                "validating on the dataset's own validation split: {} samples",
                v.len()
            );
        }
    }
    if data.sample_shape != recipe.model.input_shape() {
        return Err(Error::shape(
            "train",
            format!(
                "model '{}' takes samples of shape {:?} but dataset '{}' has {:?}",
                name,
                recipe.model.input_shape(),
                data.name,
                data.sample_shape
            ),
        ));
    }
    if let Some(dir) = &args.report {
        // Fail before training, not after it, when the pictures cannot be written.
        report::prepare(dir)?;
    }
    // The loss options are checked before the GPU starts.
    let label_smoothing = match args.label_smoothing {
        Some(_) if recipe.loss != wgml::nn::Loss::SparseCategoricalCrossentropy => {
            return Err(Error::invalid(format!(
                "--label-smoothing applies to sparse categorical cross-entropy (classifiers, \
                 language models); this model trains with {}",
                recipe.loss.name()
            )));
        }
        Some(e) => wgml::graph::LabelSmoothing::new(e)?,
        None => None,
    };
    let ema = args.ema.map(wgml::graph::Ema::new).transpose()?;
    let top_k = top_k_option(args.top_k, recipe.loss)?;
    let class_weight = match &args.class_weight {
        Some(spec) => Some(class_weights(spec, &data, recipe.loss)?),
        None => None,
    };
    if !args.no_decay.is_empty() && recipe.optimizer.weight_decay() == 0.0 {
        return Err(Error::invalid(match recipe.optimizer {
            Optimizer::RmsProp { .. } => {
                "--no-decay excludes tensors from a weight decay, which rmsprop does not have: use \
                 adam or sgd with --weight-decay"
                    .to_string()
            }
            _ => format!(
                "--no-decay excludes tensors from a weight decay, but {} has none: give \
                 --weight-decay too",
                recipe.optimizer.name()
            ),
        }));
    }
    let ctx = gpu.context()?;
    println!(
        "wgml: training {} on {} ({} train / {} test) on {} ({:?})",
        name,
        data.name,
        data.train.len(),
        data.test.len(),
        ctx.info.name,
        ctx.info.backend
    );
    let new_layers = match &args.new_layers {
        Some(list) => wgml::ranges::parse(list, 1).map_err(|part| {
            Error::invalid(format!(
                "--new-layers: '{part}' is not a layer number (from 1) or a range such as 2-4"
            ))
        })?,
        None => Vec::new(),
    };
    if let Some(freeze) = &args.freeze {
        if args.lora.is_some() {
            return Err(Error::invalid(
                "--lora freezes every tensor but the adapters (and --lora-train's layers): drop --freeze",
            ));
        }
        let freeze = nn::Freeze::parse(freeze)?;
        if freeze == nn::Freeze::Loaded && init.is_none() {
            return Err(Error::invalid("--freeze loaded needs --init CHECKPOINT"));
        }
        // The new layers' tensors do not come from the checkpoint: 'loaded' leaves them out.
        let ModelSpec::Sequential(s) = &recipe.model else {
            return Err(Error::invalid(
                "--freeze numbers the layers of a Sequential model; freeze a functional model's \
                 layers in its file (\"trainable\": false)",
            ));
        };
        let fresh = s.tensors_of_layers(recipe.loss, &new_layers)?;
        let values: Vec<_> = init
            .iter()
            .flat_map(|(_, c)| c.tensors.iter().filter(|(n, _, _)| !fresh.contains(n)).cloned())
            .collect();
        recipe.model = ModelSpec::Sequential(s.freeze(recipe.loss, &freeze, &values)?);
    }
    if let Some(rank) = args.lora {
        let llama = matches!(&recipe.model, ModelSpec::Functional(f)
            if wgml::export::llama::llama_config_of(f).is_ok());
        let defaults: &[&str] = if gpt2 {
            &["attn.query", "attn.key", "attn.value"]
        } else if llama {
            // PEFT's default for a Llama: q_proj and v_proj.
            &["self_attn.query", "self_attn.value"]
        } else if bert_classes.is_some() {
            &["attention.query", "attention.value"]
        } else {
            &[nn::lora::ALL_LINEAR]
        };
        add_lora(&mut recipe.model, rank, args, defaults, new_head)?;
    }
    println!("{}", recipe.model.summary(recipe.loss)?);
    let mut model = recipe
        .model
        .compile(&ctx, recipe.loss, recipe.optimizer.clone(), args.seed)?;
    model.fuse = !args.no_fuse;
    model.dynamic_padding = !args.no_dynamic_padding;
    if args.group_by_length && !model.pads_texts() {
        return Err(Error::invalid(
            "--group-by-length groups texts by length: it needs a model of token ids whose \
             Embedding masks padding (a mask_id), such as examples/models/text_classifier.json",
        ));
    }
    if let Some(why) = model.dynamic_padding_unavailable() {
        println!("note: every batch runs the model's whole window: {why}");
    }
    if args.group_by_length && args.no_dynamic_padding {
        return Err(Error::invalid(
            "--group-by-length saves work only with dynamic padding: drop --no-dynamic-padding",
        ));
    }
    if let Some(lora) = model.spec_lora() {
        let adapters = model
            .store
            .params
            .iter()
            .filter(|p| nn::lora::is_adapter(&p.name))
            .count()
            / 2;
        println!(
            "LoRA: {adapters} adapters of rank {}, alpha {} (scale {}), dropout {} on {}{}; every other \
             tensor frozen",
            lora.rank,
            lora.alpha,
            lora.scaling(),
            lora.dropout,
            lora.targets.join(", "),
            if lora.train.is_empty() {
                String::new()
            } else {
                format!("; trained in full: {}", lora.train.join(", "))
            }
        );
    }
    model.clip_norm = clip_norm;
    if let Some(mut weights) = class_weight {
        let shown: Vec<String> = weights
            .iter()
            .enumerate()
            .map(|(c, w)| format!("{c} = {w:.4}"))
            .collect();
        println!("class weights: {}", shown.join(", "));
        // A head wider than the data's classes: the classes no label names weigh 1.
        let classes = model.output_dim() / model.label_positions();
        if weights.len() < classes && model.loss == wgml::nn::Loss::SparseCategoricalCrossentropy {
            weights.resize(classes, 1.0);
        }
        model.set_class_weights(Some(weights))?;
    }
    model.label_smoothing = label_smoothing;
    model.set_ema(ema);
    if !args.no_decay.is_empty() {
        let patterns: Vec<&str> = args.no_decay.iter().map(String::as_str).collect();
        let excluded = model.exclude_from_weight_decay(&patterns)?;
        println!(
            "no weight decay on {} of {} trainable tensors ({})",
            excluded.len(),
            model.store.params.iter().filter(|p| p.trainable).count(),
            args.no_decay.join(", ")
        );
    }
    if (data_name.starts_with("text:") || is_labelled_texts(&data_name))
        && let Some((rows, layer)) = model.input_embedding_rows()
        && rows < vocabulary.size()
    {
        return Err(Error::shape(
            "train",
            format!(
                "the text is read as {}, but Embedding '{layer}' has {rows} rows: give it an \
                 input_dim of {} so that every token has one",
                vocabulary.describe(),
                vocabulary.size()
            ),
        ));
    }
    if let Some((path, c)) = &init {
        let mut report = model
            .load_matching_except(&ctx, &c.tensors, &new_layers)
            .map_err(|e| e.in_file(path, &format!("does not fit model '{name}'")))?;
        // New adapters are expected: counted, not listed.
        let adapters = report.new.len();
        report.new.retain(|(n, _)| !nn::lora::is_adapter(n));
        let adapters = adapters - report.new.len();
        // Under LoRA a layer that starts anew (--new-layers, a new head) must train.
        if model.spec_lora().is_some()
            && let Some((frozen, _)) = report
                .new
                .iter()
                .find(|(n, _)| model.store.params.iter().any(|p| p.name == *n && !p.trainable))
        {
            let module = frozen.rsplit_once('.').map_or(frozen.as_str(), |(m, _)| m);
            return Err(Error::invalid(format!(
                "'{frozen}' starts from its initialiser, but LoRA freezes it: train its layer in \
                 full with --lora-train {module}"
            )));
        }
        println!("initial weights from {}: {report}", path.display());
        if adapters > 0 {
            println!("{adapters} LoRA adapter tensors start anew (A uniform, B zero)");
        }
    }
    if args.profile {
        let profile = train::profile::profile_step(&mut model, &ctx, recipe.fit.batch_size, 5)?;
        print!("{}", train::profile::profile_table(&profile));
        return Ok(ExitCode::SUCCESS);
    }
    if args.tune_only {
        // Measure every product of the run's plans on this adapter, whatever
        // WGML_TUNE says (the other kernels have no alternatives to choose from).
        ctx.set_tune_mode(Some("on"));
    }
    // Every plan of the run at once: their pipelines compile in parallel.
    let mut test_batch = recipe.fit.batch_size.max(256);
    let start = std::time::Instant::now();
    let train_plans = train::fit_plans_validated(&model, &data.train, data.validation.as_ref(), &recipe.fit)?;
    let with_test = |model: &nn::Model, test_batch| {
        let mut plans = train_plans.clone();
        // The test evaluation after training is the plain cross-entropy (see below).
        for p in train::eval_plans(model, data.test.len(), test_batch) {
            let p = PlanOptions {
                label_smoothing: None,
                ..p
            };
            if !plans.contains(&p) {
                plans.push(p);
            }
        }
        plans
    };
    let mut plans = with_test(&model, test_batch);
    let compiled = match model.prepare(&ctx, &plans) {
        // Where training's plans fit and the test's larger batch does not (a long
        // window's attention scores), the test runs training's batch size.
        Err(Error::TooLarge { what, .. }) if test_batch > recipe.fit.batch_size => {
            let compiled = model.prepare(&ctx, &train_plans)?;
            test_batch = recipe.fit.batch_size;
            println!("note: the test evaluation runs batches of {test_batch}: at 256, {what} would not fit");
            plans = with_test(&model, test_batch);
            compiled + model.prepare(&ctx, &plans)?
        }
        prepared => prepared?,
    };
    println!(
        "prepared {} plans in {:.2}s ({compiled} pipelines compiled in parallel)",
        plans.len(),
        start.elapsed().as_secs_f64()
    );
    if recipe.fit.accumulate > 1 {
        println!(
            "gradient accumulation: {} batches of {} per optimizer step",
            recipe.fit.accumulate, recipe.fit.batch_size
        );
    }
    if args.tune_only {
        // A causal language model's key/value-cached decoder (what `generate`
        // runs): its one-row products are measured as it is built.
        if wgml::nn::generate::causal_by_construction(&model) {
            wgml::graph::decode::Decoder::new(&ctx, &model.graph, &model.store, model.output)?;
        }
        print!("{}", super::info::tuning_table(&ctx));
        return Ok(ExitCode::SUCCESS);
    }
    // A token classifier of entity tags measures its validation entity F1.
    if labels == TableLabels::Tags && wgml::train::entities::are_entity_tags(&data.class_names) {
        recipe.fit.entity_tags = data.class_names.clone();
    }
    // A question answerer scores its validation answers every epoch.
    recipe.fit.answers = answer_splits
        .as_mut()
        .and_then(|a| a.validation.take())
        .filter(|_| data.validation.is_some())
        .map(std::sync::Arc::new);
    let fitted = match &data.validation {
        Some(v) => train::fit_validated(&mut model, &ctx, &data.train, v, &recipe.fit, &mut []),
        None => train::fit(&mut model, &ctx, &data.train, &recipe.fit),
    };
    let history = fitted.inspect_err(|e| {
        if matches!(e, Error::DeviceLost { .. }) {
            eprintln!("{}", device_lost_advice(recipe.fit.backup.as_ref()));
        }
    })?;
    if let Some(m) = model.ema().filter(|_| !history.epochs.is_empty()) {
        println!("weights replaced by their moving average (momentum {})", m.get());
    }
    if let Some(path) = &args.save {
        if data_name.starts_with("text:") {
            checkpoint::save_language_model(path, &ctx, &model, &name, &vocabulary)?;
        } else if is_labelled_texts(&data_name)
            || labels == TableLabels::Tags
            || labels == TableLabels::Answers
        {
            checkpoint::save_text_classifier(path, &ctx, &model, &name, &data.class_names, &vocabulary)?;
        } else {
            checkpoint::save_model(path, &ctx, &model, &name, &data.class_names)?;
        }
        println!("weights saved to {}", path.display());
    }
    // The test measures are the plain cross-entropy (perplexity and bits per byte
    // compare across runs only so), whatever smoothing trained the model.
    if let Some(e) = model.label_smoothing.take() {
        println!(
            "label smoothing {}: the training and validation losses above include it; the test \
             measures below do not",
            e.get()
        );
    }
    model.top_k = top_k;
    let (mut eval, predicted) = match &answer_splits {
        // A question answerer: its answers too, from the same pass's logits.
        Some(a) => train::evaluate_answers(&mut model, &ctx, &a.test, test_batch)?,
        None => train::evaluate_with_predictions(&mut model, &ctx, &data.test, test_batch)?,
    };
    eval.entities = entity_scores(&data.test, &predicted, &data.class_names);
    print_evaluation(&eval);
    print_bits_per_byte(&eval, bytes_per_token);
    if let Some(path) = &args.metrics {
        write_metrics_json(path, Some(&history), &eval, &data.class_names, &ctx)?;
        println!("metrics written to {}", path.display());
    }
    if let Some(dir) = &args.report {
        write_run_report(dir, &history, &eval, &data, &predicted)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a person whose GPU went away during training does next.
fn device_lost_advice(backup: Option<&train::Backup>) -> String {
    match backup {
        Some(b) => format!(
            "note: the GPU went away during training (a driver reset, the device removed or \
             out of memory). Run the same command again: it resumes from the last complete \
             epoch saved in {}.",
            b.dir.display()
        ),
        None => "note: the GPU went away during training (a driver reset, the device removed or \
                 out of memory). Run the command again; add --backup DIR so that a run \
                 interrupted like this resumes from its last complete epoch."
            .to_string(),
    }
}

/// Writes the report pictures of a run (`history` may be empty: no curves) for
/// the test split of `data`, whose predicted classes are `predicted`.
pub fn write_run_report(
    dir: &Path,
    history: &History,
    eval: &Evaluation,
    data: &Dataset,
    predicted: &[usize],
) -> Result<()> {
    let truth = train::true_classes(&data.test);
    let samples = report::Samples {
        x: &data.test.x,
        shape: &data.sample_shape,
        truth: &truth,
        predicted,
    };
    let has_samples = !predicted.is_empty() && samples.is_image();
    for path in report::write_report(dir, history, eval, has_samples.then_some(&samples))? {
        println!("report: {}", path.display());
    }
    Ok(())
}

/// For text data (the test split's `bytes_per_token`, from [`load_data_with`]),
/// prints the test loss in bits per byte: the measure that compares language
/// models across tokenizers.
pub fn print_bits_per_byte(e: &Evaluation, bytes_per_token: Option<f64>) {
    if let Some(per_token) = bytes_per_token {
        println!(
            "test bits per byte: {:.4} ({per_token:.2} bytes per token)",
            e.loss / std::f64::consts::LN_2 / per_token
        );
    }
}

/// Prints test loss, accuracy, per-class metrics and the confusion matrix; for
/// a sequence model (a label per token) the per-token loss, accuracy and
/// perplexity, without the per-class tables of its whole vocabulary.
pub fn print_evaluation(e: &Evaluation) {
    print!("test loss: {:.4}", e.loss);
    if let Some(a) = e.accuracy {
        print!(" - test accuracy: {a:.4}");
    }
    if let Some((k, a)) = e.top_k {
        print!(" - top-{k} accuracy: {a:.4}");
    }
    if let Some((r, rho)) = e.correlation {
        print!(" - Pearson r: {r:.4} - Spearman rho: {rho:.4}");
    }
    if let Some(a) = &e.answers {
        // A question answerer: its loss and accuracy are over the start and
        // end tokens of each window; its answers are scored as SQuAD's.
        println!(" (start and end tokens; {} windows)", e.samples);
        super::answers::print_answer_scores(a);
        return;
    }
    if e.tags {
        // A token classifier: accuracy over the tagged words, then the spans
        // of entity tags (parts of speech have none).
        println!(" (per word; {} sentences)", e.samples);
        if let Some(m) = &e.entities {
            println!("entity  precision  recall  f1      support");
            for s in m.per_type.iter().chain([&m.overall]) {
                println!(
                    "{:>6}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
                    s.entity, s.precision, s.recall, s.f1, s.support
                );
            }
        }
        return;
    }
    if e.positions > 1 {
        println!(
            " - perplexity: {:.3} (per token; {} samples of {} tokens)",
            e.loss.exp(),
            e.samples,
            e.positions
        );
        return;
    }
    println!(" ({} samples)", e.samples);
    if e.per_class.is_empty() {
        return;
    }
    println!("class  precision  recall  f1      support");
    for m in &e.per_class {
        println!(
            "{:>5}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
            m.class, m.precision, m.recall, m.f1, m.support
        );
    }
    if let (Some(p), Some(r), Some(f)) = (e.macro_precision, e.macro_recall, e.macro_f1) {
        println!("macro  {p:>9.4}  {r:>6.4}  {f:>6.4}");
    }
    if e.confusion.is_empty() {
        // A multi-label classifier: each class a yes/no, no single matrix.
        return;
    }
    println!("confusion matrix (rows: true class, columns: predicted):");
    for row in &e.confusion {
        println!("  {}", row.iter().map(|c| format!("{c:>5}")).collect::<String>());
    }
}

/// `data` renumbered to the order of `saved`, the class names of the checkpoint
/// training starts from, when they hold the data's classes in another order (a
/// classifier imported from Hugging Face's `id2label`, one trained with
/// `--classes 1,0`, a multi-label table using some of the model's classes): its
/// head's outputs then keep their classes. Data of other classes is left as it
/// is, with a note.
fn in_checkpoint_order(data: Dataset, saved: &[String]) -> Result<Dataset> {
    if saved.is_empty() || data.class_names.is_empty() || data.class_names == saved {
        return Ok(data);
    }
    // Sets of classes named by number (go_emotions' [2, 27]) are the model's
    // outputs of those numbers (Hugging Face's LABEL_k is output k).
    // So are a token classifier's tags (a tag per word: the data may use some
    // of the model's tags only).
    let sets = data.labels_some_outputs();
    let data = if sets { data.named_by_index(saved) } else { data };
    // A multi-label table may use some of the model's classes only: each takes
    // the model's output of its name. One class per text needs the same classes.
    let known = data.class_names.iter().all(|c| saved.contains(c));
    let same = {
        let (mut a, mut b) = (data.class_names.clone(), saved.to_vec());
        a.sort();
        b.sort();
        a == b
    };
    if !(known && (sets || same)) {
        println!(
            "note: the data's classes ({}) are not the checkpoint's ({}): the data's class i takes \
             the head's output i",
            data.class_names.join(", "),
            saved.join(", ")
        );
        return Ok(data);
    }
    println!("classes as the checkpoint numbers them: {}", saved.join(", "));
    data.in_class_order(saved)
}

/// Writes training history (if any) and test results as JSON (`class_names` by
/// label, empty when the data does not name its classes).
pub fn write_metrics_json(
    path: &Path,
    h: Option<&History>,
    e: &Evaluation,
    class_names: &[String],
    ctx: &wgml::Context,
) -> Result<()> {
    let json = serde_json::json!({
        "epochs": h.map(|h| &h.epochs),
        "best_epoch": h.and_then(|h| h.best_epoch),
        "stopped_early": h.map(|h| h.stopped_early),
        "test_loss": e.loss,
        "test_accuracy": e.accuracy,
        "test_top_k": e.top_k.map(|(k, _)| k),
        "test_top_k_accuracy": e.top_k.map(|(_, a)| a),
        "test_pearson": e.correlation.map(|(r, _)| r),
        "test_spearman": e.correlation.map(|(_, rho)| rho),
        "labels_per_sample": e.positions,
        "test_perplexity": (e.positions > 1 && !e.tags && e.answers.is_none()).then(|| e.loss.exp()),
        "confusion_matrix": e.confusion,
        "class_names": class_names,
        "per_class": e.per_class,
        "macro_precision": e.macro_precision,
        "macro_recall": e.macro_recall,
        "macro_f1": e.macro_f1,
        "entities": e.entities,
        "answers": e.answers,
        "adapter": ctx.info.name,
        "backend": format!("{:?}", ctx.info.backend),
    });
    write_json(path, &json)
}

/// Writes `json` pretty-printed to `path`.
pub fn write_json(path: &Path, json: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(json).map_err(|e| Error::invalid(e.to_string()))?;
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Gives `model` the low-rank adapters of `--lora rank` and its companion flags;
/// without `--lora-targets`, on the modules `defaults` names (PEFT's defaults for
/// the model: GPT-2's attention projections, BERT's query and value).
fn add_lora(
    model: &mut ModelSpec,
    rank: usize,
    args: &TrainArgs,
    defaults: &[&str],
    new_head: &[&str],
) -> Result<()> {
    let targets = if !args.lora_targets.is_empty() {
        args.lora_targets.clone()
    } else {
        defaults.iter().map(|t| t.to_string()).collect()
    };
    let mut train = args.lora_train.clone();
    for head in new_head {
        if !train.iter().any(|t| t == head) {
            train.push(head.to_string());
        }
    }
    let config = nn::LoraConfig {
        rank,
        alpha: args.lora_alpha.unwrap_or(8.0),
        dropout: args.lora_dropout.unwrap_or(0.0),
        targets,
        train,
        rank_pattern: Default::default(),
        alpha_pattern: Default::default(),
    };
    let slot = match model {
        ModelSpec::Sequential(s) => &mut s.lora,
        ModelSpec::Functional(f) => &mut f.lora,
    };
    if let Some(old) = slot {
        return Err(Error::invalid(format!(
            "--lora: the model already has adapters (rank {} on {}); train it without --lora to \
             go on training them, or export it merged (wgml export) and start anew from that",
            old.rank,
            old.targets.join(", ")
        )));
    }
    *slot = Some(config);
    Ok(())
}

/// Whether `f` is a GPT-2 as `wgml import` describes one.
fn is_gpt2(f: &nn::Functional) -> bool {
    wgml::export::gpt2_config_of(f).is_ok()
}

/// Refuses, by name, the first flag of `wgml train` given that a model trained on
/// its own loss terms (`--model vae|gan` or a functional file, which trains with
/// `how`) has no use for: the supervised fit's validation, early stopping,
/// schedules, gradient accumulation, transfer and augmentation flags (`--ema`
/// applies to them too).
pub fn refuse_supervised_flags(args: &TrainArgs, how: &str) -> Result<()> {
    let given = [
        ("--val-split", args.val_split.is_some()),
        ("--patience", args.patience.is_some()),
        ("--monitor", args.monitor.is_some()),
        ("--classes", args.classes.is_some()),
        ("--per-class", args.per_class.is_some()),
        ("--init", args.init.is_some()),
        ("--freeze", args.freeze.is_some()),
        ("--lora", args.lora.is_some()),
        ("--lr-schedule", args.lr_schedule.is_some()),
        ("--clip-norm", args.clip_norm.is_some()),
        ("--weight-decay", args.weight_decay.is_some()),
        ("--accumulate", args.accumulate != 1),
        ("--no-decay", !args.no_decay.is_empty()),
        ("--label-smoothing", args.label_smoothing.is_some()),
        ("--class-weight", args.class_weight.is_some()),
        ("--top-k", args.top_k.is_some()),
        ("--reduce-lr-patience", args.reduce_lr_patience.is_some()),
        ("--augment-shift", args.augment_shift.is_some()),
        ("--augment-flip", args.augment_flip),
        ("--profile", args.profile),
        ("--optimizer", args.optimizer.is_some()),
        ("--momentum", args.momentum.is_some()),
    ];
    match given.iter().find(|(_, g)| *g) {
        Some((flag, _)) => Err(Error::invalid(format!(
            "{flag} does not apply to --model {} ({how})",
            args.model
        ))),
        None => Ok(()),
    }
}
