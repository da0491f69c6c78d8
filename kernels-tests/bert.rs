//! `wgml::import::bert` against Hugging Face: a tiny random
//! `BertForSequenceClassification` (`kernels-tests/golden/bert-tiny-cls/`, written
//! by `golden/make_bert_tiny.py`) imported into wgml must read the fixture's
//! texts into the ids its tokenizer gives (`[CLS] … [SEP]`, cut with the frame
//! kept, `[PAD]` after), give the probabilities and loss Hugging Face computes in
//! float64, and take a step by its gradients; pairs of texts are framed, cut and
//! typed as its tokenizer does them (`pairs.safetensors`, token types computed
//! from the `[SEP]`s). The Hub's other layouts (no
//! `bert.` prefix, `gamma`/`beta`, pretraining heads, no classifier) import too.

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use wgml::data::text::Vocabulary;
use wgml::data::text_classes::cut_and_pad;
use wgml::gpu::AdapterClass;
use wgml::import::bert::{BertImport, import_bert};
use wgml::kernels::optim::Optimizer;

use crate::common::*;

fn fixture() -> PathBuf {
    repo_file("kernels-tests/golden/bert-tiny-cls")
}

fn roberta() -> PathBuf {
    repo_file("kernels-tests/golden/roberta-tiny-cls")
}

fn distilbert() -> PathBuf {
    repo_file("kernels-tests/golden/distilbert-tiny-cls")
}

fn electra() -> PathBuf {
    repo_file("kernels-tests/golden/electra-tiny-cls")
}

/// A fixture's expected values by name, and its texts (none for an adapter's).
fn expected_of(dir: &std::path::Path) -> (HashMap<String, Vec<f32>>, Vec<String>) {
    let (values, mut lines) = fixture_file(&dir.join("expected.safetensors"), &["texts"]);
    (values, lines.remove(0))
}

/// A fixture file's values by name, and the lines of each of its metadata
/// entries `keys` (none where it has no such entry).
fn fixture_file(path: &std::path::Path, keys: &[&str]) -> (HashMap<String, Vec<f32>>, Vec<Vec<String>>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let texts = keys
        .iter()
        .map(|key| {
            meta.metadata()
                .as_ref()
                .and_then(|m| m.get(*key))
                .map_or_else(Vec::new, |t| t.lines().map(str::to_string).collect())
        })
        .collect();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let values = file
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, values(v.data())))
        .collect();
    (values, texts)
}

fn how(context: usize, classes: Option<usize>) -> BertImport {
    BertImport {
        context: Some(context),
        lr: 1e-4,
        classes,
        seed: 3,
        multi_label: false,
        task: wgml::import::bert::Task::TextClassification,
    }
}

/// Pairs of texts read as the fixture's tokenizer reads them
/// (`golden/make_bert_tiny_pairs.py`: `[CLS] A [SEP] B [SEP]`, the longer cut
/// first: neither, the first, the second, both), and the token types computed
/// from those ids equal the tokenizer's on every real token; RoBERTa's pair
/// template joins with `</s></s>`; bytes have no pair template.
#[test]
fn pairs_of_texts_are_framed_cut_and_typed_as_hugging_faces_tokenizer_does() {
    let (want, lines) = fixture_file(&fixture().join("pairs.safetensors"), &["firsts", "seconds"]);
    let vocabulary = Vocabulary::from_file(&fixture().join("tokenizer.json")).unwrap();
    let frames = vocabulary.text_frames().unwrap();
    let pair = frames.pair.clone().unwrap();
    assert_eq!(
        (pair.before, pair.between, pair.after),
        (vec![2], vec![3], vec![3])
    );
    let mut ids = Vec::new();
    for (first, second) in lines[0].iter().zip(&lines[1]) {
        let (framed, whole) = vocabulary
            .encode_text(first.as_bytes(), Some(second.as_bytes()), 16, &frames)
            .unwrap();
        assert!(
            framed.len() <= 16 && (whole > 16) == (framed.len() == 16),
            "{first} | {second}"
        );
        ids.extend(cut_and_pad(&framed, 16, 0));
    }
    assert_eq!(ids, want["ids"]);
    let types = wgml::reference::sequence::token_types(&ids, 16, 3, 2);
    for (i, ((got, hf), id)) in types.iter().zip(&want["token_types"]).zip(&ids).enumerate() {
        if *id != 0.0 {
            assert_eq!(got, hf, "pair {} token {}", i / 16, i % 16);
        }
    }
    let roberta = Vocabulary::from_file(&roberta().join("tokenizer.json")).unwrap();
    let pair = roberta.pair_frame().unwrap().unwrap();
    assert_eq!(
        (pair.before, pair.between, pair.after),
        (vec![0], vec![2, 2], vec![2])
    );
    assert_eq!(Vocabulary::Bytes.pair_frame().unwrap(), None);
    let e = Vocabulary::Bytes
        .encode_text(b"a", Some(b"b"), 8, &Vocabulary::Bytes.text_frames().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("puts nothing between two texts"), "{e}");
    // A window that cannot hold the frame is refused, not cut mid-frame.
    let e = vocabulary
        .encode_text(b"a", Some(b"b"), 2, &frames)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 tokens of frame"), "{e}");
}

/// The texts read as the fixture's tokenizer reads them for BERT: framed, cut
/// to 16 with the frame kept (the second text), unknown words as `[UNK]`; and
/// as RoBERTa's byte-level tokenizer frames them (`<s> … </s>`, `<pad>` = 1).
#[test]
fn bert_texts_are_framed_and_cut_as_hugging_faces_tokenizer_does() {
    for (dir, frame, pad) in [
        (fixture(), (vec![2], vec![3]), 0),
        (roberta(), (vec![0], vec![2]), 1),
        (distilbert(), (vec![2], vec![3]), 0),
        (electra(), (vec![2], vec![3]), 0),
    ] {
        let (want, texts) = expected_of(&dir);
        let vocabulary = Vocabulary::from_file(&dir.join("tokenizer.json")).unwrap();
        assert_eq!(vocabulary.padding_id(), Some(pad));
        assert_eq!(vocabulary.document_frame().unwrap(), frame);
        let mut ids = Vec::new();
        for text in &texts {
            let (framed, whole) = vocabulary.encode_document(text.as_bytes(), 16).unwrap();
            assert_eq!(
                whole > 16,
                framed.len() == 16 && text.len() > 60,
                "{text}: {whole}"
            );
            ids.extend(cut_and_pad(&framed, 16, pad));
        }
        assert_eq!(ids, want["ids"], "{}", dir.display());
    }
    let vocabulary = Vocabulary::from_file(&fixture().join("tokenizer.json")).unwrap();
    // A window shorter than the frame keeps what fits.
    assert_eq!(vocabulary.encode_document(b"bad", 1).unwrap().0, vec![2]);
    // Bytes have no frame.
    assert_eq!(
        Vocabulary::Bytes.encode_document(b"abc", 2).unwrap(),
        (vec![97, 98], 3)
    );
}

/// A gradient against Hugging Face's float64 one: within 1e-5 relative and
/// `atol` absolute.
fn grad_close(what: &str, got: &[f32], want: &[f32], atol: f32) {
    assert_close(what, got, want, atol, 1e-5);
}

/// `imported` saved as a wgml checkpoint and exported as a Hugging Face folder
/// (in a fresh folder `name`): the export's summary, its `config.json`, and
/// the folder imported again at 16 tokens.
fn export_and_import(
    imported: &wgml::import::Imported,
    name: &str,
) -> (String, serde_json::Value, wgml::import::Imported) {
    export_and_import_at(imported, name, 16)
}

/// [`export_and_import`] of a model of `tokens` tokens.
fn export_and_import_at(
    imported: &wgml::import::Imported,
    name: &str,
    tokens: usize,
) -> (String, serde_json::Value, wgml::import::Imported) {
    let out = fresh_dir(name);
    let path = out.join("model.safetensors");
    save_imported(imported, &path);
    let c = wgml::checkpoint::load(&path).unwrap();
    let summary = wgml::export::bert::export_bert(&c, &path, &out.join("hf")).unwrap();
    let config = serde_json::from_slice(&std::fs::read(out.join("hf/config.json")).unwrap()).unwrap();
    (
        summary,
        config,
        import_bert(&out.join("hf"), &how(tokens, None)).unwrap(),
    )
}

/// Checks one SGD step of an encoder of `family` against Hugging Face's
/// fixture `want`: `loss` (wgml's, as Hugging Face means it) within 1e-5
/// relative of `want["loss"]`; the gradients of `head`'s weight and of the word
/// embeddings, and of each position's row of the window of `tokens` (Hugging
/// Face's rows from `first`, RoBERTa's after its padding rows), within 1e-6.
fn step_matches(
    what: &dyn Fn(&str) -> String,
    stepped: &Stepped,
    want: &HashMap<String, Vec<f32>>,
    loss: f64,
    head: &str,
    family: &str,
    (first, tokens): (usize, usize),
) {
    let hf = want["loss"][0] as f64;
    assert!(
        (loss - hf).abs() < 1e-5 * hf,
        "{}",
        what(&format!("loss {loss} vs {hf}"))
    );
    for name in [
        format!("{head}.weight"),
        format!("{family}.embeddings.word_embeddings.weight"),
    ] {
        grad_close(
            &what(&name),
            &stepped.grad(&name),
            &want[&format!("grad.{name}")],
            1e-6,
        );
    }
    let name = format!("{family}.embeddings.position_embeddings.weight");
    let ours = stepped.grad(&name);
    let d = ours.len() / tokens;
    grad_close(
        &what(&name),
        &ours,
        &want[&format!("grad.{name}")][first * d..(first + tokens) * d],
        1e-6,
    );
}

/// What [`sgd_step`] measured.
struct Stepped {
    /// The model's outputs on the batch before the step.
    predictions: Vec<f32>,
    /// The batch's mean loss.
    loss: f64,
    before: Vec<wgml::graph::params::NamedValues>,
    after: Vec<wgml::graph::params::NamedValues>,
}

impl Stepped {
    /// Tensor `name`'s gradient: the step SGD at rate 1 took.
    fn grad(&self, name: &str) -> Vec<f32> {
        let find = |v: &[wgml::graph::params::NamedValues]| v.iter().find(|t| t.0 == name).unwrap().2.clone();
        find(&self.before)
            .iter()
            .zip(find(&self.after))
            .map(|(b, a)| b - a)
            .collect()
    }
}

/// `imported`'s model compiled as the context's adapter class plans it: its
/// outputs on `batch`, then one SGD step at rate 1 on it.
fn sgd_step(
    ctx: &wgml::Context,
    imported: &wgml::import::Imported,
    batch: &wgml::nn::model::Batch,
) -> Stepped {
    let mut model = imported
        .architecture
        .functional
        .compile_supervised(ctx, Optimizer::sgd(1.0, 0.0), 1)
        .unwrap();
    model.load_params(ctx, &imported.tensors).unwrap();
    let predictions = model.predict(ctx, batch.x, batch.len).unwrap();
    let before = model.store.download(ctx).unwrap();
    model.acc.reset(ctx).unwrap();
    model.train_step(ctx, batch, 1.0, |_, _| {}).unwrap();
    let loss = model.acc.read(ctx).unwrap().0 / batch.len as f64;
    let after = model.store.download(ctx).unwrap();
    Stepped {
        predictions,
        loss,
        before,
        after,
    }
}

/// Imports the classifier in `dir` at 16 tokens and checks its probabilities,
/// loss and one SGD step on the fixture's `expected.safetensors` against
/// Hugging Face's ([`against_hugging_face_on`]).
fn against_hugging_face(
    dir: &std::path::Path,
    grads: &[(&str, &str)],
    positions: (&str, &str, usize),
    types: Option<&str>,
) {
    against_hugging_face_on(dir, "expected.safetensors", grads, positions, types, 1e-6);
}

/// Imports the classifier in `dir` at 16 tokens and checks its probabilities,
/// loss and one SGD step on the batch of fixture file `file` against Hugging
/// Face's: `grads` pairs wgml's tensor names with Hugging Face's; the position
/// table starts at row `first` of Hugging Face's; with `types` (Hugging Face's
/// name) the model folded its one token type into the positions, and their
/// rows summed over the positions are that type's gradient. Gradients agree
/// within 1e-5 relative and `atol` absolute.
fn against_hugging_face_on(
    dir: &std::path::Path,
    file: &str,
    grads: &[(&str, &str)],
    positions: (&str, &str, usize),
    types: Option<&str>,
    atol: f32,
) {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let (want, _) = fixture_file(&dir.join(file), &[]);
    let (tokens, classes) = (16, 3);
    let imported = import_bert(dir, &how(tokens, None)).unwrap();
    assert!(
        imported
            .summary
            .contains("its classifier of 3 classes (neg, neutral, pos)"),
        "{}",
        imported.summary
    );
    assert_eq!(imported.architecture.class_names, ["neg", "neutral", "pos"]);
    let ids = &want["ids"];
    let labels: Vec<u32> = want["labels"].iter().map(|&l| l as u32).collect();
    let batch = wgml::nn::model::Batch {
        x: ids,
        labels: &labels,
        values: &[],
        len: 4,
    };
    let probabilities = softmax_rows(&want["logits"], classes);
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        let stepped = sgd_step(ctx, &imported, &batch);
        assert_close(
            &format!("{class:?}: probabilities"),
            &stepped.predictions,
            &probabilities,
            1e-6,
            1e-5,
        );
        let loss = stepped.loss;
        assert!(
            (loss - want["loss"][0] as f64).abs() < 1e-5,
            "{class:?}: loss {loss} vs {:?}",
            want["loss"]
        );
        let what = |s: &str| format!("{class:?}: {s}'s gradient against Hugging Face's");
        for (ours, hf) in grads {
            grad_close(
                &what(ours),
                &stepped.grad(ours),
                &want[&format!("grad.{hf}")],
                atol,
            );
        }
        // Each position's row gets the position's gradient; where the table
        // holds the one token type too, summed over the positions, that type's.
        let (ours, hf, first) = positions;
        let folded = stepped.grad(ours);
        // The embeddings' width (ELECTRA's are narrower than its blocks).
        let d = folded.len() / tokens;
        let rows = &want[&format!("grad.{hf}")][first * d..(first + tokens) * d];
        grad_close(&what("positions"), &folded, rows, atol);
        if let Some(hf) = types {
            let type0: Vec<f32> = (0..d)
                .map(|c| (0..tokens).map(|t| folded[t * d + c]).sum())
                .collect();
            assert_close(
                &what("token type 0"),
                &type0,
                &want[&format!("grad.{hf}")][..d],
                1e-5,
                1e-4,
            );
        }
    }
}

#[test]
fn an_imported_bert_classifier_gives_hugging_faces_logits_and_gradients() {
    let layer0 = "bert.encoder.layer.0.attention";
    against_hugging_face(
        &fixture(),
        &[
            ("classifier.weight", "classifier.weight"),
            ("bert.pooler.dense.weight", "bert.pooler.dense.weight"),
            (
                "bert.embeddings.word_embeddings.weight",
                "bert.embeddings.word_embeddings.weight",
            ),
            (
                &format!("{layer0}.query.weight"),
                &format!("{layer0}.self.query.weight"),
            ),
            (
                "bert.embeddings.token_type_embeddings.weight",
                "bert.embeddings.token_type_embeddings.weight",
            ),
        ],
        (
            "bert.embeddings.position_embeddings.weight",
            "bert.embeddings.position_embeddings.weight",
            0,
        ),
        None,
    );
}

/// A regression head (`golden/make_bert_tiny_regression.py`: num_labels 1,
/// problem_type unset, which Hugging Face reads as a regression) on sentence
/// pairs scored as STS-B scores them: imported as one score under mean squared
/// error, it gives Hugging Face's float64 scores, loss and gradients; exported,
/// it is a regression again.
#[test]
fn a_bert_regression_head_gives_hugging_faces_scores_and_gradients() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let dir = repo_file("kernels-tests/golden/bert-tiny-reg");
    let (want, lines) = fixture_file(&dir.join("expected.safetensors"), &["firsts", "seconds"]);
    let imported = import_bert(&dir, &how(16, None)).unwrap();
    assert!(
        imported.summary.contains("its regression head (one score"),
        "{}",
        imported.summary
    );
    let spec = wgml::nn::model::ModelSpec::Functional(imported.architecture.functional.clone());
    assert!(spec.scores(wgml::nn::Loss::MeanSquaredError));
    let frames = imported.vocabulary.text_frames().unwrap();
    let mut ids = Vec::new();
    for (first, second) in lines[0].iter().zip(&lines[1]) {
        let (framed, _) = imported
            .vocabulary
            .encode_text(first.as_bytes(), Some(second.as_bytes()), 16, &frames)
            .unwrap();
        ids.extend(cut_and_pad(&framed, 16, 0));
    }
    assert_eq!(ids, want["ids"]);
    let batch = wgml::nn::model::Batch {
        x: &ids,
        labels: &[],
        values: &want["labels"],
        len: 4,
    };
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        let stepped = sgd_step(ctx, &imported, &batch);
        let what = |s: &str| format!("{class:?}: {s}");
        assert_close(&what("scores"), &stepped.predictions, &want["logits"], 1e-6, 1e-5);
        let (loss, hf) = (stepped.loss, want["loss"][0] as f64);
        assert!((loss - hf).abs() < 1e-5 * hf, "{class:?}: loss {loss} vs {hf}");
        for name in [
            "classifier.weight",
            "bert.embeddings.token_type_embeddings.weight",
            "bert.embeddings.word_embeddings.weight",
        ] {
            // The tables' rows sum many tokens' gradients of both signs (this
            // fixture's loss is 7): f32 rounding of the terms, ~1e-6 of them.
            let atol = if name.contains("embeddings") { 1e-5 } else { 1e-6 };
            grad_close(
                &what(name),
                &stepped.grad(name),
                &want[&format!("grad.{name}")],
                atol,
            );
        }
    }
    let (summary, config, again) = export_and_import(&imported, "bert-regression-export");
    assert!(summary.contains("a regression head, one score"), "{summary}");
    assert_eq!(config["problem_type"], "regression");
    assert_eq!(config["id2label"].as_object().map(|m| m.len()), Some(1));
    assert_eq!(again.tensors, imported.tensors);
}

/// A multi-label head (`golden/make_bert_tiny_multilabel.py`: problem_type
/// multi_label_classification): a sigmoid per class under binary cross-entropy
/// gives Hugging Face's probabilities, loss and gradients; exported, it is
/// multi-label again.
#[test]
fn a_bert_multi_label_head_gives_hugging_faces_probabilities_and_gradients() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let dir = repo_file("kernels-tests/golden/bert-tiny-multilabel");
    let (want, _) = expected_of(&dir);
    let imported = import_bert(&dir, &how(16, None)).unwrap();
    assert!(
        imported
            .summary
            .contains("multi-label classifier of 3 classes, a sigmoid each (joy, love, anger)"),
        "{}",
        imported.summary
    );
    let spec = wgml::nn::model::ModelSpec::Functional(imported.architecture.functional.clone());
    assert!(spec.multi_label(wgml::nn::Loss::BinaryCrossentropy));
    let sigmoids: Vec<f32> = want["logits"].iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
    let batch = wgml::nn::model::Batch {
        x: &want["ids"],
        labels: &[],
        values: &want["labels"],
        len: 4,
    };
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        let stepped = sgd_step(ctx, &imported, &batch);
        let what = |s: &str| format!("{class:?}: {s}");
        assert_close(
            &what("probabilities"),
            &stepped.predictions,
            &sigmoids,
            1e-6,
            1e-5,
        );
        let (loss, hf) = (stepped.loss, want["loss"][0] as f64);
        assert!((loss - hf).abs() < 1e-5 * hf, "{class:?}: loss {loss} vs {hf}");
        for name in ["classifier.weight", "bert.embeddings.word_embeddings.weight"] {
            grad_close(
                &what(name),
                &stepped.grad(name),
                &want[&format!("grad.{name}")],
                1e-6,
            );
        }
    }
    let (summary, config, again) = export_and_import(&imported, "bert-multi-label-export");
    assert!(
        summary.contains("a multi-label classifier of 3 classes"),
        "{summary}"
    );
    assert_eq!(config["problem_type"], "multi_label_classification");
    assert_eq!(
        (again.architecture, again.tensors),
        (imported.architecture, imported.tensors)
    );
}

/// ELECTRA (`golden/make_electra_tiny.py`): embeddings of 16 widened to the
/// blocks' 32 by `embeddings_project`, no pooler, the head's dense layer with
/// GELU; single texts and pairs give Hugging Face's probabilities, loss and
/// gradients.
#[test]
fn an_imported_electra_classifier_gives_hugging_faces_logits_and_gradients() {
    let layer0 = "electra.encoder.layer.0.attention";
    let grads = [
        ("classifier.out_proj.weight", "classifier.out_proj.weight"),
        ("classifier.dense.weight", "classifier.dense.weight"),
        (
            "electra.embeddings_project.weight",
            "electra.embeddings_project.weight",
        ),
        (
            "electra.embeddings.word_embeddings.weight",
            "electra.embeddings.word_embeddings.weight",
        ),
        (
            "electra.embeddings.token_type_embeddings.weight",
            "electra.embeddings.token_type_embeddings.weight",
        ),
        (
            &format!("{layer0}.query.weight"),
            &format!("{layer0}.self.query.weight"),
        ),
    ];
    let positions = (
        "electra.embeddings.position_embeddings.weight",
        "electra.embeddings.position_embeddings.weight",
        0,
    );
    for file in ["expected.safetensors", "pairs.safetensors"] {
        // The projection's and the positions' gradients sum every token's with
        // cancellation: PyTorch's own f32 gradient of the projection is 3e-6
        // off float64's there (values up to 0.1).
        against_hugging_face_on(&electra(), file, &grads, positions, None, 3e-6);
    }
}

/// Pairs of texts (`golden/make_bert_tiny_pairs.py`): the token types wgml
/// computes from the ids give Hugging Face's probabilities, loss and
/// gradients, both rows of the token-type table included.
#[test]
fn an_imported_bert_classifier_reads_pairs_of_texts_as_hugging_face_does() {
    against_hugging_face_on(
        &fixture(),
        "pairs.safetensors",
        &[
            ("classifier.weight", "classifier.weight"),
            (
                "bert.embeddings.word_embeddings.weight",
                "bert.embeddings.word_embeddings.weight",
            ),
            (
                "bert.embeddings.token_type_embeddings.weight",
                "bert.embeddings.token_type_embeddings.weight",
            ),
        ],
        (
            "bert.embeddings.position_embeddings.weight",
            "bert.embeddings.position_embeddings.weight",
            0,
        ),
        None,
        1e-6,
    );
}

/// RoBERTa: positions from row pad + 1 = 2, no pooler, the head's dense layer
/// and out_proj.
#[test]
fn an_imported_roberta_classifier_gives_hugging_faces_logits_and_gradients() {
    let layer0 = "roberta.encoder.layer.0.attention";
    against_hugging_face(
        &roberta(),
        &[
            ("classifier.out_proj.weight", "classifier.out_proj.weight"),
            ("classifier.dense.weight", "classifier.dense.weight"),
            (
                "roberta.embeddings.word_embeddings.weight",
                "roberta.embeddings.word_embeddings.weight",
            ),
            (
                &format!("{layer0}.query.weight"),
                &format!("{layer0}.self.query.weight"),
            ),
        ],
        (
            "roberta.embeddings.position_embeddings.weight",
            "roberta.embeddings.position_embeddings.weight",
            2,
        ),
        None,
    );
}

/// `BertModel`'s layout (no `bert.` prefix), older layer-norm names, the
/// pretraining heads and the position-id buffer import to the same tensors; a
/// file without a classifier gets a new one of the classes asked for (2 by
/// default), drawn small; what is not a BERT is refused by name.
#[test]
fn the_hubs_bert_layouts_import_and_a_pretrained_bert_gets_a_new_head() {
    let plain = import_bert(&fixture(), &how(16, None)).unwrap().tensors;
    let dir = fresh_dir("bert-hub");
    rewrite_fixture(&fixture(), &dir, |t| {
        t.retain(|x| !x.0.starts_with("classifier."));
        for (name, ..) in t.iter_mut() {
            *name = name
                .trim_start_matches("bert.")
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
        }
        t.push((
            "cls.predictions.bias".into(),
            Dtype::F32,
            vec![64],
            f32_bytes(&[0.5; 64]),
        ));
        t.push((
            "embeddings.position_ids".into(),
            Dtype::F32,
            vec![1, 24],
            f32_bytes(&[0.0; 24]),
        ));
    });
    let hub = import_bert(&dir, &how(16, Some(4))).unwrap();
    assert!(
        hub.summary.contains("a new head 'classifier' of 4 classes")
            && hub
                .summary
                .contains("1 tensors of heads the classifier does not use (cls.*) left out"),
        "{}",
        hub.summary
    );
    assert_eq!(
        hub.architecture.class_names,
        ["LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"]
    );
    assert_eq!(hub.tensors.len(), plain.len());
    for ((n, s, v), (n2, s2, v2)) in plain.iter().zip(&hub.tensors) {
        assert_eq!(n, n2);
        match n.as_str() {
            "classifier.weight" => {
                assert_eq!(s2, &[4, 32]);
                let std = (v2.iter().map(|x| x * x).sum::<f32>() / v2.len() as f32).sqrt();
                assert!((0.01..0.03).contains(&std), "drawn N(0, 0.02²): {std}");
            }
            "classifier.bias" => assert_eq!(v2, &[0.0; 4]),
            _ => assert_eq!((s, v), (s2, v2), "{n}"),
        }
    }
    assert_eq!(
        import_bert(&dir, &how(16, None))
            .unwrap()
            .architecture
            .class_names
            .len(),
        2
    );
    // RobertaModel's layout: no prefix, a pooler and the masked-LM head left out,
    // the whole head (dense and out_proj) new.
    let dir = fresh_dir("roberta-hub");
    rewrite_fixture(&roberta(), &dir, |t| {
        t.retain(|x| !x.0.starts_with("classifier."));
        for (name, ..) in t.iter_mut() {
            *name = name.trim_start_matches("roberta.").to_string();
        }
        for extra in ["pooler.dense.bias", "lm_head.bias"] {
            t.push((extra.into(), Dtype::F32, vec![32], f32_bytes(&[0.5; 32])));
        }
    });
    let hub = import_bert(&dir, &how(18, None)).unwrap();
    assert!(
        hub.summary
            .contains("a new head 'classifier.dense', 'classifier.out_proj' of 2 classes")
            && hub.summary.contains("18 positions (of 18)")
            && hub
                .summary
                .contains("2 tensors of heads the classifier does not use"),
        "{}",
        hub.summary
    );
    let e = import_bert(&dir, &how(19, None)).err().unwrap().to_string();
    assert!(e.contains("this RoBERTa has 18 positions"), "{e}");
    let refused = |what: &str, edit: &dyn Fn(&mut Vec<RawTensor>), how: BertImport, want: &str| {
        let dir = fresh_dir(what);
        rewrite_fixture(&fixture(), &dir, edit);
        let e = import_bert(&dir, &how).err().unwrap().to_string();
        assert!(e.contains(want), "{what}: {e}");
    };
    refused(
        "bert-extra",
        &|t| t.push(("decoder.weight".into(), Dtype::F32, vec![1], f32_bytes(&[0.0]))),
        how(16, None),
        "holds tensor 'decoder.weight'",
    );
    refused(
        "bert-missing",
        &|t| t.retain(|x| !x.0.contains("layer.1.output.dense.bias")),
        how(16, None),
        "has no tensor 'encoder.layer.1.output.dense.bias'",
    );
    // Another class count replaces the output layer (ignore_mismatched_sizes).
    let five = import_bert(&fixture(), &how(16, Some(5))).unwrap();
    assert!(
        five.summary
            .contains("the file's classifier of 3 classes replaced by a new output layer of 5"),
        "{}",
        five.summary
    );
    assert_eq!(five.architecture.class_names.len(), 5);
    // Heads of another kind, and a tokenizer that frames nothing.
    for (what, key, value, want) in [
        (
            "bert-choice",
            "architectures",
            serde_json::json!(["BertForMultipleChoice"]),
            "BertForMultipleChoice",
        ),
        (
            "bert-regression-of-three",
            "problem_type",
            serde_json::json!("regression"),
            "'regression' with 3 labels",
        ),
    ] {
        let dir = fresh_dir(what);
        rewrite_fixture(&fixture(), &dir, |_| {});
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        config[key] = value;
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let e = import_bert(&dir, &how(16, None)).err().unwrap().to_string();
        assert!(e.contains(want), "{what}: {e}");
    }
    // A regression head (num_labels 1): read as one (one score under mean squared
    // error), or replaced when --num-labels asks for classes.
    let dir = fresh_dir("bert-regression");
    rewrite_fixture(&fixture(), &dir, |t| {
        for (name, _, shape, bytes) in t.iter_mut() {
            if name.starts_with("classifier.") {
                let per_row = bytes.len() / shape[0];
                bytes.truncate(per_row);
                shape[0] = 1;
            }
        }
    });
    let one = import_bert(&dir, &how(16, None)).unwrap();
    assert!(
        one.summary.contains("its regression head (one score"),
        "{}",
        one.summary
    );
    assert!(one.architecture.class_names.is_empty());
    assert_eq!(
        one.architecture.functional.supervised_loss(),
        Some(wgml::nn::Loss::MeanSquaredError)
    );
    let two = import_bert(&dir, &how(16, Some(2))).unwrap();
    assert!(
        two.summary.contains("classifier of 1 classes replaced"),
        "{}",
        two.summary
    );
    let dir = fresh_dir("bert-no-frame");
    rewrite_fixture(&fixture(), &dir, |_| {});
    let mut t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap()).unwrap();
    t["post_processor"] = serde_json::Value::Null;
    std::fs::write(dir.join("tokenizer.json"), t.to_string()).unwrap();
    let e = import_bert(&dir, &how(16, None)).err().unwrap().to_string();
    assert!(e.contains("puts nothing before a text"), "{e}");
    refused(
        "bert-context",
        &|_| {},
        how(25, None),
        "this BERT has 24 positions",
    );
}

/// DistilBERT: its own names (q_lin, sa_layer_norm, ffn.lin1...), no token
/// types, no dropout after attention, the head pre_classifier (ReLU) and
/// classifier.
#[test]
fn an_imported_distilbert_classifier_gives_hugging_faces_logits_and_gradients() {
    let layer0 = "distilbert.transformer.layer.0.attention";
    against_hugging_face(
        &distilbert(),
        &[
            ("classifier.weight", "classifier.weight"),
            ("pre_classifier.weight", "pre_classifier.weight"),
            (
                "distilbert.embeddings.word_embeddings.weight",
                "distilbert.embeddings.word_embeddings.weight",
            ),
            (
                &format!("{layer0}.query.weight"),
                &format!("{layer0}.q_lin.weight"),
            ),
        ],
        (
            "distilbert.embeddings.position_embeddings.weight",
            "distilbert.embeddings.position_embeddings.weight",
            0,
        ),
        None,
    );
}

/// A BERT, RoBERTa or DistilBERT classifier exported (`*ForSequenceClassification`'s
/// names, the position table written as the folded sum after RoBERTa's zero
/// padding rows, token types as zeros) and imported again is the same model
/// with the same tensors; what is not such a classifier is refused by the
/// exporter.
#[test]
fn export_writes_back_what_import_read() {
    let (_g, ctx) = gpu();
    let out = fresh_dir("bert-export");
    for (dir, name, positions) in [
        (fixture(), "BertForSequenceClassification", 16),
        (roberta(), "RobertaForSequenceClassification", 18),
        (distilbert(), "DistilBertForSequenceClassification", 16),
        (electra(), "ElectraForSequenceClassification", 16),
    ] {
        let (want, _) = expected_of(&dir);
        let imported = import_bert(&dir, &how(16, None)).unwrap();
        let path = out.join(format!("{name}.safetensors"));
        save_imported(&imported, &path);
        let c = wgml::checkpoint::load(&path).unwrap();
        let hf = out.join(name);
        let summary = wgml::export::bert::export_bert(&c, &path, &hf).unwrap();
        assert!(
            summary.contains("a classifier of 3 classes") && summary.contains("with its tokenizer"),
            "{summary}"
        );
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["architectures"][0], name);
        let tokenizer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hf.join("tokenizer_config.json")).unwrap()).unwrap();
        assert_eq!(tokenizer["model_max_length"], 16, "{name}");
        if name != "RobertaForSequenceClassification" {
            assert_eq!(tokenizer["do_lower_case"], true, "{name}: {tokenizer}");
        }
        assert_eq!(
            (
                config["id2label"]["2"].clone(),
                config["max_position_embeddings"].clone()
            ),
            ("pos".into(), positions.into())
        );
        let again = import_bert(&hf, &how(16, None)).unwrap();
        assert_eq!(again.architecture, imported.architecture);
        assert_eq!(again.tensors, imported.tensors);
        let mut model = again
            .architecture
            .functional
            .compile_supervised(ctx, Optimizer::sgd(0.1, 0.0), 1)
            .unwrap();
        model.load_params(ctx, &again.tensors).unwrap();
        let probabilities = softmax_rows(&want["logits"], 3);
        assert_close(
            &format!("{name} exported and imported again"),
            &model.predict(ctx, &want["ids"], 4).unwrap(),
            &probabilities,
            1e-6,
            1e-5,
        );
    }
    // XLM-R keeps its model_type and class on the way back.
    let xlmr = fresh_dir("xlm-roberta");
    rewrite_fixture(&roberta(), &xlmr, |_| {});
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(xlmr.join("config.json")).unwrap()).unwrap();
    config["model_type"] = "xlm-roberta".into();
    std::fs::write(xlmr.join("config.json"), config.to_string()).unwrap();
    let imported = import_bert(&xlmr, &how(16, None)).unwrap();
    assert_eq!(imported.kind, "xlm-roberta");
    let path = out.join("xlmr.safetensors");
    save_imported(&imported, &path);
    let c = wgml::checkpoint::load(&path).unwrap();
    wgml::export::bert::export_bert(&c, &path, &out.join("xlmr-hf")).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("xlmr-hf/config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["model_type"].clone(), config["architectures"][0].clone()),
        ("xlm-roberta".into(), "XLMRobertaForSequenceClassification".into())
    );
    let gpt2 = repo_file("kernels-tests/golden/gpt2-tiny");
    let lm = wgml::import::import_gpt2(&gpt2, Some(16), 1e-4).unwrap();
    let lm_path = out.join("gpt2.safetensors");
    wgml::checkpoint::save_functional_tensors(
        &lm_path,
        "gpt2",
        &lm.architecture,
        &lm.tensors,
        &lm.vocabulary,
    )
    .unwrap();
    let e = wgml::export::bert::export_bert(
        &wgml::checkpoint::load(&lm_path).unwrap(),
        &lm_path,
        &out.join("no"),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("has no layer 'classifier'"), "{e}");
}

/// PEFT's classifier adapters of each family (LoRA on the query and value, the
/// head saved whole; `golden/make_encoder_cls_lora.py`) read onto the imported
/// classifier give PEFT's logits; written back by wgml and read onto the plain
/// classifier again, they still do, and their tensors are PEFT's.
#[test]
fn peft_adapters_of_the_bert_family_give_pefts_logits_and_write_back() {
    let (_g, ctx) = gpu();
    let out = fresh_dir("encoder-peft");
    for dir in [fixture(), roberta(), distilbert()] {
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let adapter = repo_file(&format!("kernels-tests/golden/{name}-lora"));
        let (want, _) = expected_of(&adapter);
        let probabilities = softmax_rows(&want["logits"], 3);
        let adapted = |adapter: &std::path::Path| {
            let mut imported = import_bert(&dir, &how(16, None)).unwrap();
            let line = wgml::peft::encoder::add_adapter(&mut imported, adapter).unwrap();
            assert!(
                line.contains("rank 4, alpha 6") && line.contains("on 4 "),
                "{line}"
            );
            imported
        };
        let imported = adapted(&adapter);
        let lora = imported.architecture.functional.lora.as_ref().unwrap();
        assert_eq!(
            lora.train.len(),
            if name.starts_with("bert") { 1 } else { 2 },
            "{name}"
        );
        let predict = |imported: &wgml::import::Imported| {
            let mut model = imported
                .architecture
                .functional
                .compile_supervised(ctx, Optimizer::sgd(0.1, 0.0), 1)
                .unwrap();
            model.load_params(ctx, &imported.tensors).unwrap();
            model.predict(ctx, &want["ids"], 4).unwrap()
        };
        assert_close(
            &format!("{name}: PEFT's"),
            &predict(&imported),
            &probabilities,
            1e-6,
            1e-5,
        );
        let path = out.join(format!("{name}.safetensors"));
        save_imported(&imported, &path);
        let written = out.join(format!("{name}-peft"));
        let line =
            wgml::peft::encoder::write_adapter(&wgml::checkpoint::load(&path).unwrap(), &path, &written)
                .unwrap();
        assert!(line.contains("of 3 classes (PEFT's SEQ_CLS"), "{line}");
        let ours =
            SafeTensors::deserialize(&std::fs::read(written.join("adapter_model.safetensors")).unwrap())
                .unwrap()
                .tensors()
                .into_iter()
                .map(|(n, v)| (n, values(v.data())))
                .collect::<HashMap<_, _>>();
        let theirs_bytes = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
        let theirs = SafeTensors::deserialize(&theirs_bytes).unwrap();
        for (n, v) in theirs.tensors() {
            assert_eq!(ours.get(&n), Some(&values(v.data())), "{name}: {n}");
        }
        assert_close(
            &format!("{name}: written and read again"),
            &predict(&adapted(&written)),
            &probabilities,
            1e-6,
            1e-5,
        );
    }
}

/// An adapter wgml trained on a layer PEFT saves whole (here the classifier,
/// as `--lora-targets all-linear` reaches RoBERTa's head) is merged into the
/// saved layer on export: read back onto the plain model, the adapter predicts
/// what wgml's model with that adapter predicts.
#[test]
fn adapters_on_the_saved_head_are_merged_into_it() {
    let (_g, ctx) = gpu();
    let out = fresh_dir("encoder-peft-head");
    let adapter = repo_file("kernels-tests/golden/bert-tiny-cls-lora");
    let (want, _) = expected_of(&adapter);
    let mut imported = import_bert(&fixture(), &how(16, None)).unwrap();
    wgml::peft::encoder::add_adapter(&mut imported, &adapter).unwrap();
    let lora = imported.architecture.functional.lora.as_mut().unwrap();
    lora.targets.push("classifier".into());
    let mut r = rng(23);
    imported.tensors.push((
        "classifier.lora_A.weight".into(),
        vec![4, 32],
        uniform(&mut r, 128, -0.5, 0.5),
    ));
    imported.tensors.push((
        "classifier.lora_B.weight".into(),
        vec![3, 4],
        uniform(&mut r, 12, -0.5, 0.5),
    ));
    let predict = |imported: &wgml::import::Imported| {
        let mut model = imported
            .architecture
            .functional
            .compile_supervised(ctx, Optimizer::sgd(0.1, 0.0), 1)
            .unwrap();
        model.load_params(ctx, &imported.tensors).unwrap();
        model.predict(ctx, &want["ids"], 4).unwrap()
    };
    let ours = predict(&imported);
    let path = out.join("bert.safetensors");
    save_imported(&imported, &path);
    let written = out.join("peft");
    let line =
        wgml::peft::encoder::write_adapter(&wgml::checkpoint::load(&path).unwrap(), &path, &written).unwrap();
    assert!(
        line.contains("on 4 BERT modules"),
        "the head's adapter is merged, not listed: {line}"
    );
    // PEFT puts no adapter on a layer it saves whole: none is written there.
    let bytes = std::fs::read(written.join("adapter_model.safetensors")).unwrap();
    let names: Vec<String> = SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(str::to_string)
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("classifier.lora"))
            && names.contains(&"base_model.model.classifier.weight".to_string()),
        "{names:?}"
    );
    let mut again = import_bert(&fixture(), &how(16, None)).unwrap();
    wgml::peft::encoder::add_adapter(&mut again, &written).unwrap();
    assert_close("merged head", &predict(&again), &ours, 1e-6, 1e-5);
    // Without the head's adapter the predictions differ: the test can fail.
    let moved = ours
        .iter()
        .zip(softmax_rows(&want["logits"], 3))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(moved > 1e-3, "the head's adapter changes nothing ({moved})");
}

/// Token classifiers (`golden/make_encoder_tokens.py`: BERT's, RoBERTa's,
/// DistilBERT's and ELECTRA's *ForTokenClassification of 5 tags): their sentences of words
/// read as `tokenizer(words, is_split_into_words=True, truncation=True)` reads
/// them (RoBERTa's byte-level BPE with `add_prefix_space=True`), each word's
/// tag on its first token and no label elsewhere (run_ner's alignment); every
/// token's probabilities, the mean loss over the labelled tokens and one step's
/// gradients are Hugging Face's; exported, each is its *ForTokenClassification
/// again.
#[test]
fn token_classifiers_give_hugging_faces_tags_and_gradients() {
    // (family, its first position row, its class, the sentences its tokenizer
    // makes longer than the 16-token window, as transformers counts them).
    for (family, first, class, cut) in [
        ("bert", 0, "Bert", 1),
        ("roberta", 2, "Roberta", 2),
        ("distilbert", 0, "DistilBert", 1),
        ("electra", 0, "Electra", 1),
    ] {
        token_classifier_against_hugging_face(family, first, class, cut);
    }
}

/// The token classifier of `family` (its position table's first token at row
/// `first` of Hugging Face's; Hugging Face's class `{class}ForTokenClassification`;
/// `cut` of its sentences longer than the window) against Hugging Face's (see
/// [`token_classifiers_give_hugging_faces_tags_and_gradients`]).
fn token_classifier_against_hugging_face(family: &str, first: usize, class_name: &str, cut: usize) {
    use wgml::data::NO_LABEL;
    use wgml::data::tagged_words::WordReader;
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let dir = repo_file(&format!("kernels-tests/golden/{family}-tiny-tokens"));
    let (want, _) = fixture_file(&dir.join("expected.safetensors"), &[]);
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let sentences: Vec<(Vec<String>, Vec<String>)> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["sentences"]).unwrap();
    let (tokens, tags) = (16, 5);
    let imported = import_bert(&dir, &how(tokens, None)).unwrap();
    assert!(
        imported
            .summary
            .contains("its token classifier of 5 classes (O, B-PER, I-PER, B-LOC, I-LOC)"),
        "{}",
        imported.summary
    );
    let spec = wgml::nn::model::ModelSpec::Functional(imported.architecture.functional.clone());
    assert_eq!(
        spec.table_labels(wgml::nn::Loss::SparseCategoricalCrossentropy),
        wgml::data::text_table::TableLabels::Tags
    );
    // The words as Hugging Face's tokenizer reads and aligns them.
    let pad = imported.pad_token_id.unwrap();
    let mut reader = WordReader::new(&[tokens], &imported.vocabulary, pad).unwrap();
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    for (words, word_tags) in &sentences {
        let (x, first) = reader.sample(words).unwrap();
        ids.extend(x);
        labels.extend(first.iter().map(|w| {
            match w {
                Some(w) => imported
                    .architecture
                    .class_names
                    .iter()
                    .position(|t| *t == word_tags[*w])
                    .unwrap() as u32,
                None => NO_LABEL,
            }
        }));
    }
    assert_eq!(ids, want["ids"], "{family}: token ids");
    let hf_labels: Vec<u32> = want["labels"]
        .iter()
        .map(|&l| if l < 0.0 { NO_LABEL } else { l as u32 })
        .collect();
    assert_eq!(labels, hf_labels, "{family}: labels");
    assert_eq!(
        reader.report().truncated,
        cut,
        "{family}: sentences longer than the window"
    );
    let labelled = labels.iter().filter(|&&l| l != NO_LABEL).count() as f64;
    let batch = wgml::nn::model::Batch {
        x: &ids,
        labels: &labels,
        values: &[],
        len: 4,
    };
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        let stepped = sgd_step(ctx, &imported, &batch);
        let what = |s: &str| format!("{family} {class:?}: {s}");
        // Every real token's (padding's outputs mean nothing).
        let real = |p: &[f32]| -> Vec<f32> {
            p.chunks(tags)
                .zip(&ids)
                .filter(|&(_, &id)| id != pad as f32)
                .flat_map(|(row, _)| row.to_vec())
                .collect()
        };
        assert_close(
            &what("probabilities"),
            &real(&stepped.predictions),
            &real(&softmax_rows(&want["logits"], tags)),
            1e-6,
            1e-5,
        );
        let loss = stepped.loss * 4.0 / labelled;
        step_matches(
            &what,
            &stepped,
            &want,
            loss,
            "classifier",
            family,
            (first, tokens),
        );
    }
    let (summary, config, again) = export_and_import(&imported, &format!("{family}-tokens-export"));
    assert!(
        summary.contains("a classifier of each token, 5 classes"),
        "{summary}"
    );
    assert_eq!(
        config["architectures"][0],
        format!("{class_name}ForTokenClassification")
    );
    assert_eq!(
        (again.architecture, again.tensors),
        (imported.architecture, imported.tensors)
    );
}

/// Question answerers of each family (a new `qa_outputs` on the tiny
/// encoders, `golden/make_encoder_qa.py`) read the fixture's questions as
/// Hugging Face's `run_qa.py` does (the same ids, windows of the context two
/// tokens apart, start and end labels, each window's context offsets); their
/// start and end probabilities, the loss and one step's gradients are Hugging
/// Face's; their logits give `utils_qa`'s answers (SQuAD 2.0's rules); exported,
/// each is its *ForQuestionAnswering again.
#[test]
fn question_answerers_give_hugging_faces_answers_and_gradients() {
    for (family, first, class) in [
        ("bert", 0, "Bert"),
        ("roberta", 2, "Roberta"),
        ("distilbert", 0, "DistilBert"),
        ("electra", 0, "Electra"),
    ] {
        question_answerer_against_hugging_face(family, first, class);
    }
}

/// The question answerer of `family` (its position table's first token at row
/// `first` of Hugging Face's; Hugging Face's class `{class}ForQuestionAnswering`)
/// against Hugging Face's (see
/// [`question_answerers_give_hugging_faces_answers_and_gradients`]).
fn question_answerer_against_hugging_face(family: &str, first: usize, class_name: &str) {
    use wgml::data::squad::{QaReader, read_examples};
    use wgml::kernels::sequence::MASKED_SCORE;
    use wgml::train::answers::{AnswerOptions, Questions, best_answers};
    use wgml::train::evaluate_answers;
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let dir = repo_file(&format!("kernels-tests/golden/{family}-tiny-qa"));
    let (want, _) = fixture_file(&dir.join("expected.safetensors"), &[]);
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().as_ref().unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&meta["examples"]).unwrap();
    let lines: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    let file = fresh_dir(&format!("{family}-qa-data")).join("questions.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let examples = read_examples(&file).unwrap();
    let tokens = 18;
    let imported = import_bert(&dir, &how(tokens, None)).unwrap();
    assert!(
        imported.summary.contains("its question answerer"),
        "{}",
        imported.summary
    );
    let pad = imported.pad_token_id.unwrap();
    let reader = QaReader::new(&imported.vocabulary, tokens, 2, pad).unwrap();
    let read = reader.features(&examples).unwrap();
    let split = read.split(tokens);
    let what = |s: &str| format!("{family}: {s}");
    assert_eq!(split.x, want["ids"], "{}", what("token ids"));
    let wgml::data::Targets::Classes { labels, .. } = &split.y else {
        unreachable!("question answering has classes")
    };
    let hf_labels: Vec<u32> = want["labels"].iter().map(|&l| l as u32).collect();
    assert_eq!(labels, &hf_labels, "{}", what("start and end labels"));
    let features: Vec<serde_json::Value> = serde_json::from_str(&meta["features"]).unwrap();
    assert_eq!(read.features.len(), features.len());
    for (ours, theirs) in read.features.iter().zip(&features) {
        assert_eq!(ours.example, theirs["example"].as_u64().unwrap() as usize);
        let offsets: Vec<Option<(usize, usize)>> = serde_json::from_value(theirs["offsets"].clone()).unwrap();
        assert_eq!(ours.offsets, offsets, "{}", what("offsets"));
    }
    let n = read.features.len();
    // Each feature's start row then its end row, as wgml's [2, T] output; the
    // padding's scores masked.
    let real = |f: usize, t: usize| {
        let ids = &split.x[f * tokens..(f + 1) * tokens];
        ids[t..].iter().any(|&id| id != pad as f32)
    };
    let hf_logits: Vec<f32> = (0..n)
        .flat_map(|f| {
            let row = f * tokens..(f + 1) * tokens;
            want["start_logits"][row.clone()]
                .iter()
                .chain(&want["end_logits"][row])
                .enumerate()
                .map(|(i, &v)| if real(f, i % tokens) { v } else { MASKED_SCORE })
                .collect::<Vec<f32>>()
        })
        .collect();
    assert!(
        hf_logits.contains(&MASKED_SCORE),
        "{}",
        what("some windows are padded")
    );
    let batch = wgml::nn::model::Batch {
        x: &split.x,
        labels,
        values: &[],
        len: n,
    };
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        let stepped = sgd_step(ctx, &imported, &batch);
        let what = |s: &str| format!("{family} {class:?}: {s}");
        assert_close(
            &what("probabilities"),
            &stepped.predictions,
            &softmax_rows(&hf_logits, tokens),
            1e-6,
            1e-5,
        );
        // The mean over the 2n labels is the mean of the start's and end's means.
        let loss = stepped.loss / 2.0;
        step_matches(
            &what,
            &stepped,
            &want,
            loss,
            "qa_outputs",
            family,
            (first, tokens),
        );
    }
    let mut model = imported.model(ctx).unwrap();
    let logits = model.predict_logits(ctx, &split.x, n).unwrap();
    assert_close(&what("logits"), &logits, &hf_logits, 1e-5, 1e-5);
    let options = AnswerOptions {
        unanswerable: true,
        ..AnswerOptions::default()
    };
    let answers = best_answers(&examples, &read.features, &logits, tokens, &options);
    let hf_answers: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&meta["predictions"]).unwrap();
    for a in &answers {
        assert_eq!(
            a.answer,
            hf_answers[&a.id],
            "{}",
            what(&format!("answer to {}", a.id))
        );
    }
    // Evaluating the windows in batches of 3 (short ones shortened, dynamic
    // padding) gives the same answers from its own pass's logits, and the loss
    // of a plain evaluation.
    let short = (0..n).filter(|&f| !real(f, 16)).count();
    assert!(short > 0 && short < n, "{}", what("some windows run shortened"));
    let questions = Questions {
        examples: examples.clone(),
        windows: read.clone(),
        tokens,
        unanswerable: true,
    };
    let (e, predicted) = evaluate_answers(&mut model, ctx, &questions, 3).unwrap();
    assert_eq!(
        e.answers,
        Some(questions.scores(&logits)),
        "{}",
        what("evaluated answers")
    );
    let plain = wgml::train::evaluate(&mut model, ctx, &split, n).unwrap();
    assert_close(
        &what("evaluated loss"),
        &[e.loss as f32],
        &[plain.loss as f32],
        1e-5,
        1e-5,
    );
    assert_eq!(
        (e.accuracy, e.samples),
        (plain.accuracy, n),
        "{}",
        what("accuracy")
    );
    let argmax: Vec<usize> = logits
        .chunks(tokens)
        .map(|row| (0..tokens).fold(0, |b, c| if row[c] > row[b] { c } else { b }))
        .collect();
    assert_eq!(predicted, argmax, "{}", what("predicted start and end tokens"));
    let (summary, config, again) = export_and_import_at(&imported, &format!("{family}-qa-export"), tokens);
    assert!(summary.contains("a question answerer"), "{summary}");
    assert_eq!(
        config["architectures"][0],
        format!("{class_name}ForQuestionAnswering")
    );
    assert_eq!(
        (again.architecture, again.tensors),
        (imported.architecture, imported.tensors)
    );
}
