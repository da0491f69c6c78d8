//! `wgml::import::import_gpt2` against Hugging Face: a tiny random GPT-2
//! (`kernels-tests/golden/gpt2-tiny/`, written by `golden/make_gpt2_tiny.py` with
//! transformers' `GPT2LMHeadModel`) imported into wgml must give the log
//! probabilities Hugging Face computes in float64 for a text, the same greedy
//! continuation as its `generate(do_sample=False)`, and the same token ids from
//! its tokenizer. The Hub's own file layout (no `transformer.` prefix, the
//! causal-mask buffers, an explicit `lm_head`, f16 tensors) imports to the same
//! model; the head is tied to `wte`, so a fine-tuning step moves `wte` by
//! Hugging Face's gradient (the embedding's and the head's summed); an untied
//! GPT-2 keeps its own head; what is not a GPT-2 is refused by name.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use wgml::checkpoint;
use wgml::data::text::Vocabulary;
use wgml::gpu::AdapterClass;
use wgml::import::import_gpt2;
use wgml::nn::generate::{Sampling, generate_with};

use crate::common::*;

fn fixture() -> PathBuf {
    repo_file("kernels-tests/golden/gpt2-tiny")
}

/// The fixture's expected values by name, and its text.
fn expected() -> (HashMap<String, Vec<f32>>, String) {
    let bytes = std::fs::read(fixture().join("expected.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let text = meta.metadata().as_ref().unwrap()["text"].clone();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let values = file
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    (values, text)
}

/// The probabilities of one position's `logits` (the softmax twin).
fn softmax(logits: &[f32]) -> Vec<f32> {
    let mut p = vec![0.0; logits.len()];
    wgml::reference::softmax::softmax(logits, logits.len(), &mut p);
    p
}

/// Imports `dir` with `context` positions and compiles the checkpoint it saves.
fn import_and_load(
    ctx: &wgml::Context,
    dir: &Path,
    context: Option<usize>,
    name: &str,
) -> (wgml::nn::Model, Vocabulary) {
    let imported = import_gpt2(dir, context, 1e-4).unwrap();
    let out = fresh_dir(name).join("gpt2.safetensors");
    checkpoint::save_functional_tensors(
        &out,
        &imported.kind,
        &imported.architecture,
        &imported.tensors,
        &imported.vocabulary,
    )
    .unwrap();
    let (model, c) = checkpoint::load_model(ctx, &out).unwrap();
    (model, c.vocabulary(&out).unwrap())
}

#[test]
fn an_imported_gpt2_gives_hugging_faces_probabilities_and_greedy_tokens() {
    let (_g, ctx) = gpu();
    let (want, text) = expected();
    let (mut model, vocabulary) = import_and_load(ctx, &fixture(), None, "gpt2-full");
    let ids: Vec<u32> = want["ids"].iter().map(|&v| v as u32).collect();
    assert_eq!(ids.len(), 32);
    // The tokenizer came with the checkpoint and reads the text as Hugging Face's.
    assert_eq!(vocabulary.encode(text.as_bytes()).unwrap()[..32], ids[..]);

    let x: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
    let probs = model.predict(ctx, &x, 1).unwrap();
    // One position read back alone is that position's part of the whole output.
    for position in [0, 17, 31] {
        let row = model.predict_position(ctx, &x, position).unwrap();
        assert_eq!(
            row,
            probs[position * 300..(position + 1) * 300],
            "position {position}"
        );
    }
    assert!(model.predict_position(ctx, &x, 32).is_err());
    assert!(wgml::nn::generate::causal_by_construction(&model));
    log_probs_match(
        "log probabilities against Hugging Face",
        &probs,
        &want["log_probs"],
        9000,
    );

    // One position at a time with the key/value cache: each position's
    // probabilities equal the whole window's there.
    let mut decoder = wgml::graph::decode::Decoder::new(ctx, &model.graph, &model.store, model.output)
        .unwrap()
        .expect("GPT-2 decodes with a key/value cache");
    assert_eq!(decoder.capacity(), 32);
    for (p, &id) in ids.iter().enumerate() {
        assert_eq!(decoder.position(), p);
        let cached = softmax(&decoder.step(ctx, id).unwrap());
        assert_close(
            &format!("cached position {p}"),
            &cached,
            &probs[p * 300..(p + 1) * 300],
            1e-7,
            1e-5,
        );
    }
    let e = decoder.step(ctx, 0).unwrap_err().to_string();
    assert!(e.contains("full"), "{e}");
    decoder.reset();
    assert_eq!(decoder.position(), 0);
    // A prompt's tokens but the last prefilled in one pass (padded to 1, 4, 8,
    // 16 and 32 positions; attention unfused as CPU adapters plan it, fused as
    // GPUs do), the last stepped: the same probabilities.
    let _restore = PlanAs(ctx);
    for (class, n) in [
        (AdapterClass::Native, 1),
        (AdapterClass::Native, 3),
        (AdapterClass::Native, 13),
        (AdapterClass::GpuWithoutSubgroups, 5),
        (AdapterClass::GpuWithoutSubgroups, 8),
        (AdapterClass::GpuWithoutSubgroups, 31),
    ] {
        ctx.set_adapter_class(class);
        // Every cache row first holds another text's keys and values.
        decoder.reset();
        for &id in ids.iter().rev() {
            decoder.step(ctx, id).unwrap();
        }
        decoder.reset();
        decoder.prefill(ctx, &ids[..n]).unwrap();
        assert_eq!(decoder.position(), n);
        let cached = softmax(&decoder.step(ctx, ids[n]).unwrap());
        assert_close(
            &format!("{class:?}: position {n} after a prefill of {n}"),
            &cached,
            &probs[n * 300..(n + 1) * 300],
            1e-7,
            1e-5,
        );
    }
    let e = decoder.prefill(ctx, &ids[..2]).unwrap_err().to_string();
    assert!(e.contains("empty") && e.contains("reset"), "{e}");
    decoder.reset();
    let e = decoder.prefill(ctx, &ids[..32]).unwrap_err().to_string();
    assert!(e.contains("32 tokens to prefill"), "{e}");
    decoder.reset();

    let greedy: Vec<u32> = want["greedy"].iter().map(|&v| v as u32).collect();
    assert!(
        want["greedy_margin"][0] > 1e-3,
        "the fixture's top two logits nearly tie"
    );
    // With the key/value cache (generate's default) and without it.
    for use_cache in [true, false] {
        let new = generate_with(
            &mut model,
            ctx,
            &ids[..8],
            greedy.len(),
            Sampling::GREEDY,
            &mut rng(1),
            |_| ControlFlow::Continue(()),
            use_cache,
        )
        .unwrap();
        assert_eq!(
            new, greedy,
            "greedy continuation against Hugging Face's generate (cache: {use_cache})"
        );
    }
}

/// `--context 16`: the first 16 rows of the position embedding; a causal model's
/// first 16 positions give the same probabilities as the whole model's.
#[test]
fn a_shorter_context_keeps_the_first_positions() {
    let (_g, ctx) = gpu();
    let (want, _) = expected();
    let (mut model, _) = import_and_load(ctx, &fixture(), Some(16), "gpt2-short");
    assert_eq!(model.spec.input_shape(), &[16]);
    let x: Vec<f32> = want["ids"][..16].to_vec();
    let probs = model.predict(ctx, &x, 1).unwrap();
    let got: Vec<f32> = probs.iter().map(|&p| (p as f64).ln() as f32).collect();
    let expect = &want["log_probs"][..16 * 300];
    let keep: Vec<usize> = (0..got.len()).filter(|&i| expect[i] > -60.0).collect();
    let pick = |v: &[f32]| keep.iter().map(|&i| v[i]).collect::<Vec<f32>>();
    assert_close("16 positions", &pick(&got), &pick(expect), 2e-4, 1e-5);
    for context in [1, 33] {
        let e = import_gpt2(&fixture(), Some(context), 1e-4)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!("context of {context}")) && e.contains("2 to 32"),
            "{e}"
        );
    }
}

/// The fixture's files in a fresh folder `name`, its tensors through `tensors`
/// (see [`rewrite`]) and its config.json (parsed) through `edit`.
fn with_config(
    name: &str,
    tensors: impl Fn(&mut Vec<RawTensor>),
    edit: impl Fn(&mut serde_json::Value),
) -> PathBuf {
    let dir = fresh_dir(name);
    rewrite(&dir, tensors);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

/// One plain SGD step on the fixture's text moves `wte` by Hugging Face's
/// gradient of its mean next-token loss: the gradient through the embedding and
/// the one through the tied head, summed into one tensor (dropout off on both
/// sides). A head trained apart from `wte` (a copy) misses the head's part,
/// which is most of it.
#[test]
fn a_fine_tuning_step_moves_the_tied_embedding_by_hugging_faces_gradient() {
    let (_g, ctx) = gpu();
    let (want, _) = expected();
    let dir = with_config(
        "gpt2-no-dropout",
        |_| {},
        |c| {
            c["embd_pdrop"] = 0.0.into();
            c["resid_pdrop"] = 0.0.into();
            c["attn_pdrop"] = 0.0.into();
        },
    );
    // Hugging Face's loss over 32 ids reads positions 0..=30 against ids 1..=31:
    // the same as 31 positions of input.
    let imported = import_gpt2(&dir, Some(31), 1e-4).unwrap();
    assert!(imported.tensors.iter().all(|(n, ..)| n != "lm_head.weight"));
    let lr = 1.0;
    let mut model = imported
        .architecture
        .functional
        .compile_supervised(ctx, wgml::kernels::optim::Optimizer::sgd(lr, 0.0), 1)
        .unwrap();
    model.load_params(ctx, &imported.tensors).unwrap();
    let ids = &want["ids"];
    let labels: Vec<u32> = ids[1..].iter().map(|&v| v as u32).collect();
    let batch = wgml::nn::model::Batch {
        x: &ids[..31],
        labels: &labels,
        values: &[],
        len: 1,
    };
    let wte = |model: &wgml::nn::Model| {
        let p = model
            .store
            .params
            .iter()
            .find(|p| p.name == "wte.weight")
            .unwrap();
        p.value.to_f32(ctx).unwrap()
    };
    let before = wte(&model);
    model.train_step(ctx, &batch, lr, |_, _| {}).unwrap();
    let after = wte(&model);
    let step: Vec<f32> = before.iter().zip(&after).map(|(b, a)| (b - a) / lr).collect();
    assert_close(
        "wte's gradient against Hugging Face's",
        &step,
        &want["wte_grad"],
        1e-6,
        1e-5,
    );
}

/// `tie_word_embeddings: false`: the head is the file's `lm_head.weight`, its
/// own tensor, and the file must hold it.
#[test]
fn an_untied_gpt2_keeps_its_own_head() {
    let (_g, ctx) = gpu();
    let (want, _) = expected();
    let untie = |c: &mut serde_json::Value| c["tie_word_embeddings"] = false.into();
    let dir = with_config("gpt2-untied", |_| {}, untie);
    let e = import_gpt2(&dir, None, 1e-4).err().unwrap().to_string();
    assert!(
        e.contains("lm_head.weight") && e.contains("tie_word_embeddings"),
        "{e}"
    );
    // A head of half wte: the logits halve, so the log probabilities change.
    let half_head = |t: &mut Vec<RawTensor>| {
        let wte = values(&t.iter().find(|x| x.0 == "transformer.wte.weight").unwrap().3);
        let half: Vec<f32> = wte.iter().map(|v| v * 0.5).collect();
        t.push((
            "lm_head.weight".into(),
            Dtype::F32,
            vec![300, 32],
            f32_bytes(&half),
        ));
    };
    let dir = with_config("gpt2-untied", half_head, untie);
    let (mut model, _) = import_and_load(ctx, &dir, None, "gpt2-untied-load");
    assert!(
        model.store.params.iter().any(|p| p.name == "lm_head.weight"),
        "the untied head is a tensor of its own"
    );
    let probs = model.predict(ctx, &want["ids"], 1).unwrap();
    let got: Vec<f32> = probs[..300].iter().map(|&p| (p as f64).ln() as f32).collect();
    let tied = &want["log_probs"][..300];
    assert!(
        max_rel_err(&got, tied, 1.0) > 1e-2,
        "the untied head's probabilities differ from the tied one's"
    );
}

/// `wgml::export::export_gpt2` is the importer's inverse: the fixture imported
/// and exported gives back Hugging Face's own file (the same tensors, bit for
/// bit, under the same names, no `lm_head.weight` for the tied head), a config
/// the importer reads as the fixture's, and its tokenizer; a fine-tuned model
/// exported and imported again has its own tensors; what is not a GPT-2 is
/// refused, naming the layer that differs.
#[test]
fn export_writes_back_what_import_read() {
    let (_g, ctx) = gpu();
    let imported = import_gpt2(&fixture(), None, 1e-4).unwrap();
    let dir = fresh_dir("gpt2-export");
    let c_path = dir.join("gpt2.safetensors");
    checkpoint::save_functional_tensors(
        &c_path,
        &imported.kind,
        &imported.architecture,
        &imported.tensors,
        &imported.vocabulary,
    )
    .unwrap();
    let c = checkpoint::load(&c_path).unwrap();
    let hf = dir.join("hf");
    let exported = wgml::export::export_gpt2(&c, &c_path, &hf).unwrap();
    assert!(exported.tokenizer);
    let read = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = file
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, v.shape().to_vec(), values(v.data())))
            .collect();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    let (want, got) = (
        read(&fixture().join("model.safetensors")),
        read(&hf.join("model.safetensors")),
    );
    assert_eq!(
        got.iter().map(|t| &t.0).collect::<Vec<_>>(),
        want.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    assert_eq!(got, want, "the exported tensors are Hugging Face's, bit for bit");
    let config = |dir: &Path| {
        wgml::import::Gpt2Config::parse(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    assert_eq!(config(&hf), config(&fixture()));
    let vocabulary = Vocabulary::from_file(&hf.join("tokenizer.json")).unwrap();
    let text = b"The engine trains real models on any GPU.";
    assert_eq!(
        vocabulary.encode(text).unwrap(),
        imported.vocabulary.encode(text).unwrap()
    );

    // Fine-tuned (a shorter context too), exported, imported: its own tensors.
    let (mut model, _) = import_and_load(ctx, &fixture(), Some(16), "gpt2-export-tuned");
    let ids: Vec<f32> = (0..16).map(|i| (i * 7 % 300) as f32).collect();
    let labels: Vec<u32> = (1..17).map(|i| i * 7 % 300).collect();
    let batch = wgml::nn::model::Batch {
        x: &ids,
        labels: &labels,
        values: &[],
        len: 1,
    };
    model.train_step(ctx, &batch, 1e-2, |_, _| {}).unwrap();
    let tuned = model.store.download(ctx).unwrap();
    let tuned_path = dir.join("tuned.safetensors");
    checkpoint::save_functional_tensors(
        &tuned_path,
        "gpt2",
        &import_gpt2(&fixture(), Some(16), 1e-4).unwrap().architecture,
        &tuned,
        &imported.vocabulary,
    )
    .unwrap();
    let hf2 = dir.join("hf-tuned");
    let c = checkpoint::load(&tuned_path).unwrap();
    let e = wgml::export::export_gpt2(&c, &tuned_path, &hf2).unwrap();
    assert_eq!(e.config.positions, 16);
    let again = import_gpt2(&hf2, None, 1e-4).unwrap();
    let sorted = |mut t: Vec<(String, Vec<usize>, Vec<f32>)>| {
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    let tuned = sorted(tuned);
    assert_ne!(
        tuned.iter().find(|t| t.0 == "wte.weight").unwrap().2,
        imported.tensors[0].2[..],
        "the step moved wte"
    );
    assert_eq!(sorted(again.tensors), tuned, "export then import is the identity");

    // Not a GPT-2: a changed layer is named; a model that is not functional is refused.
    let mut arch = imported.architecture.clone();
    let ln = arch
        .functional
        .layers
        .iter_mut()
        .find(|l| l.name == "h.1.ln_2")
        .unwrap();
    ln.what = wgml::nn::functional::LayerOrOp::Layer(wgml::nn::Layer::layer_norm());
    let odd = dir.join("odd.safetensors");
    checkpoint::save_functional_tensors(&odd, "gpt2", &arch, &imported.tensors, &imported.vocabulary)
        .unwrap();
    let e = wgml::export::export_gpt2(&checkpoint::load(&odd).unwrap(), &odd, &dir.join("odd"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("layer 'h.1.ln_2'") && e.contains("not a GPT-2"), "{e}");
    // A layer frozen while fine-tuning is still GPT-2's.
    let mut arch = imported.architecture.clone();
    let ln = arch
        .functional
        .layers
        .iter_mut()
        .find(|l| l.name == "h.0.ln_1")
        .unwrap();
    if let wgml::nn::functional::LayerOrOp::Layer(layer) = &ln.what {
        ln.what = wgml::nn::functional::LayerOrOp::Layer(layer.clone().frozen());
    }
    let frozen = dir.join("frozen.safetensors");
    checkpoint::save_functional_tensors(&frozen, "gpt2", &arch, &imported.tensors, &imported.vocabulary)
        .unwrap();
    wgml::export::export_gpt2(&checkpoint::load(&frozen).unwrap(), &frozen, &dir.join("frozen")).unwrap();
    let mlp = dir.join("mlp.safetensors");
    checkpoint::save(&mlp, "mlp", &[("0.weight".into(), vec![2, 2], vec![0.0; 4])], 0).unwrap();
    let e = wgml::export::export_gpt2(&checkpoint::load(&mlp).unwrap(), &mlp, &dir.join("mlp"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no functional model"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes the fixture's tensors to `dir/model.safetensors` after `edit`, with
/// the fixture's config and tokenizer beside it.
fn rewrite(dir: &Path, edit: impl Fn(&mut Vec<RawTensor>)) {
    rewrite_fixture(&fixture(), dir, edit);
}

#[test]
fn the_hubs_layout_imports_to_the_same_tensors() {
    let plain = import_gpt2(&fixture(), None, 1e-4).unwrap().tensors;
    let dir = fresh_dir("gpt2-hub");
    rewrite(&dir, |t| {
        for (name, ..) in t.iter_mut() {
            *name = name.trim_start_matches("transformer.").to_string();
        }
        // The causal-mask buffers older files carry, and the tied head written out.
        for i in 0..2 {
            let mask: Vec<f32> = (0..32 * 32)
                .map(|k| ((k % 32) <= (k / 32)) as u8 as f32)
                .collect();
            t.push((
                format!("h.{i}.attn.bias"),
                Dtype::F32,
                vec![1, 1, 32, 32],
                f32_bytes(&mask),
            ));
        }
        let wte = t.iter().find(|x| x.0 == "wte.weight").unwrap().3.clone();
        t.push(("lm_head.weight".into(), Dtype::F32, vec![300, 32], wte));
        // ln_f's scale in f16.
        let ln = t.iter_mut().find(|x| x.0 == "ln_f.weight").unwrap();
        ln.3 = values(&ln.3)
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        ln.1 = Dtype::F16;
    });
    let hub = import_gpt2(&dir, None, 1e-4).unwrap().tensors;
    assert_eq!(hub.len(), plain.len());
    for ((n, s, v), (n2, s2, v2)) in plain.iter().zip(&hub) {
        assert_eq!((n, s), (n2, s2));
        if n == "ln_f.weight" {
            let rounded: Vec<f32> = v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
            assert_eq!(&rounded, v2, "{n}");
            assert_ne!(v, v2, "{n} went through f16");
        } else {
            assert_eq!(v, v2, "{n}");
        }
    }
}

#[test]
fn what_is_not_a_gpt2_is_refused_by_name() {
    let refused = |name: &str, edit: &dyn Fn(&mut Vec<RawTensor>), want: &[&str]| {
        let dir = fresh_dir(name);
        rewrite(&dir, edit);
        let e = import_gpt2(&dir, None, 1e-4).err().unwrap().to_string();
        for w in want {
            assert!(e.contains(w), "{name}: {e}");
        }
        assert!(e.contains("model.safetensors"), "{name}: {e}");
    };
    refused(
        "gpt2-missing",
        &|t| t.retain(|x| x.0 != "transformer.h.1.mlp.c_fc.bias"),
        &["h.1.mlp.c_fc.bias", "has no tensor"],
    );
    refused(
        "gpt2-extra",
        &|t| {
            t.push((
                "transformer.h.0.attn.rotary".into(),
                Dtype::F32,
                vec![1],
                f32_bytes(&[0.0]),
            ))
        },
        &["h.0.attn.rotary", "another architecture"],
    );
    refused(
        "gpt2-shape",
        &|t| {
            let x = t.iter_mut().find(|x| x.0 == "transformer.ln_f.bias").unwrap();
            x.2 = vec![16];
            x.3.truncate(64);
        },
        &["ln_f.bias", "[16]", "[32]"],
    );
    refused(
        "gpt2-dtype",
        &|t| {
            let x = t.iter_mut().find(|x| x.0 == "transformer.ln_f.bias").unwrap();
            x.1 = Dtype::I32;
        },
        &["ln_f.bias", "I32"],
    );
    let dir = fresh_dir("gpt2-no-tokenizer");
    rewrite(&dir, |_| {});
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = import_gpt2(&dir, None, 1e-4).err().unwrap().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("save_pretrained"),
        "{e}"
    );
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let e = import_gpt2(&dir, None, 1e-4).err().unwrap().to_string();
    assert!(e.contains("config.json") && e.contains("llama"), "{e}");
}

/// A GPT-2 made a sequence classifier (`Functional::sequence_classifier`: the
/// padding masked, each sample read at its last real token, a head `score`
/// without bias) gives Hugging Face's `GPT2ForSequenceClassification` logits
/// on right-padded samples of 16, 9, 1 and 5 real ids (float64 there, dropout
/// off, `kernels-tests/golden/gpt2-tiny-cls/` from `golden/make_gpt2_cls.py`),
/// and one plain SGD step moves `score`, `wte`, `wpe` and the first block's
/// query, key and value by its gradient of the mean cross-entropy; as lavapipe
/// and GPUs plan it. Exported (`GPT2ForSequenceClassification`'s files) and
/// imported again, it predicts the same, with its class names and padding.
#[test]
fn a_gpt2_sequence_classifier_gives_hugging_faces_logits_and_gradients() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let bytes = std::fs::read(repo_file(
        "kernels-tests/golden/gpt2-tiny-cls/expected.safetensors",
    ))
    .unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let want = |name: &str| -> Vec<f32> {
        file.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let dir = with_config(
        "gpt2-cls",
        |_| {},
        |c| {
            c["embd_pdrop"] = 0.0.into();
            c["resid_pdrop"] = 0.0.into();
            c["attn_pdrop"] = 0.0.into();
        },
    );
    let (tokens, classes, pad, d) = (16, 3, 299, 32);
    let imported = import_gpt2(&dir, Some(tokens), 1e-4).unwrap();
    let classifier = imported
        .architecture
        .functional
        .sequence_classifier(classes, pad)
        .unwrap();
    let mut values = imported.tensors.clone();
    values.push(("score.weight".into(), vec![classes, d], want("score.weight")));
    let (ids, labels) = (want("ids"), want("labels"));
    let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let batch = wgml::nn::model::Batch {
        x: &ids,
        labels: &labels,
        values: &[],
        len: 4,
    };
    let logits = want("logits");
    let probabilities: Vec<f32> = logits.chunks(classes).flat_map(softmax).collect();
    // Export and import again.
    let mut architecture = imported.architecture.clone();
    architecture.functional = classifier.clone();
    architecture.class_names = ["neg", "neutral", "pos"].map(String::from).to_vec();
    let out = fresh_dir("gpt2-cls-export");
    let path = out.join("cls.safetensors");
    checkpoint::save_functional_tensors(&path, "gpt2", &architecture, &values, &imported.vocabulary).unwrap();
    let exported =
        wgml::export::export_gpt2(&checkpoint::load(&path).unwrap(), &path, &out.join("hf")).unwrap();
    assert!(
        exported
            .summary
            .contains("a classifier of 3 classes, padding id 299"),
        "{}",
        exported.summary
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("hf/config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "GPT2ForSequenceClassification");
    assert_eq!(
        (config["pad_token_id"].clone(), config["id2label"]["2"].clone()),
        (299.into(), "pos".into())
    );
    let again = import_gpt2(&out.join("hf"), Some(tokens), 1e-4).unwrap();
    assert!(
        again
            .summary
            .contains("a classifier of 3 classes (neg, neutral, pos), padding id 299"),
        "{}",
        again.summary
    );
    assert_eq!(again.architecture.functional, classifier);
    assert_eq!(again.architecture.class_names, architecture.class_names);
    let mut reread = again
        .architecture
        .functional
        .compile_supervised(ctx, wgml::kernels::optim::Optimizer::sgd(0.1, 0.0), 1)
        .unwrap();
    reread.load_params(ctx, &again.tensors).unwrap();
    assert_close(
        "exported and imported again",
        &reread.predict(ctx, &ids, 4).unwrap(),
        &probabilities,
        1e-6,
        1e-5,
    );
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        let lr = 1.0;
        let mut model = classifier
            .compile_supervised(ctx, wgml::kernels::optim::Optimizer::sgd(lr, 0.0), 1)
            .unwrap();
        model.load_params(ctx, &values).unwrap();
        let got = model.predict(ctx, &ids, 4).unwrap();
        assert_close(
            &format!("{class:?}: probabilities"),
            &got,
            &probabilities,
            1e-6,
            1e-5,
        );
        let before = model.store.download(ctx).unwrap();
        model.acc.reset(ctx).unwrap();
        model.train_step(ctx, &batch, lr, |_, _| {}).unwrap();
        let loss = model.acc.read(ctx).unwrap().0 / 4.0;
        assert!(
            (loss - want("loss")[0] as f64).abs() < 1e-5,
            "{class:?}: loss {loss} vs {:?}",
            want("loss")
        );
        let after = model.store.download(ctx).unwrap();
        let step = |name: &str| -> Vec<f32> {
            let find =
                |v: &[wgml::graph::params::NamedValues]| v.iter().find(|t| t.0 == name).unwrap().2.clone();
            find(&before)
                .iter()
                .zip(find(&after))
                .map(|(b, a)| (b - a) / lr)
                .collect()
        };
        let what = |s: &str| format!("{class:?}: {s}'s gradient against Hugging Face's");
        assert_close(
            &what("score"),
            &step("score.weight"),
            &want("grad.score.weight"),
            1e-6,
            1e-5,
        );
        assert_close(
            &what("wte"),
            &step("wte.weight"),
            &want("grad.wte.weight"),
            1e-6,
            1e-5,
        );
        let wpe = want("grad.wpe.weight");
        assert_close(&what("wpe"), &step("wpe.weight"), &wpe[..tokens * d], 1e-6, 1e-5);
        // c_attn is [in, 3·d] (Conv1D): the query's, key's and value's columns.
        let c_attn = want("grad.h.0.attn.c_attn.weight");
        for (part, name) in ["query", "key", "value"].iter().enumerate() {
            let hf: Vec<f32> = (0..d * d)
                .map(|i| c_attn[(i % d) * 3 * d + part * d + i / d])
                .collect();
            let got = step(&format!("h.0.attn.{name}.weight"));
            assert_close(&what(name), &got, &hf, 1e-6, 1e-5);
        }
    }
}

/// The classifier above with a 32-token window: the fixture's samples, padded to
/// 32, run a plan cut to 16 tokens (dynamic padding), and still give Hugging
/// Face's probabilities, loss and gradients; the window's other 16 rows of wpe
/// get none, as in Hugging Face.
#[test]
fn a_gpt2_classifier_runs_padded_batches_at_their_length() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let bytes = std::fs::read(repo_file(
        "kernels-tests/golden/gpt2-tiny-cls/expected.safetensors",
    ))
    .unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let want = |name: &str| -> Vec<f32> {
        file.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let dir = with_config(
        "gpt2-cls-window",
        |_| {},
        |c| {
            c["embd_pdrop"] = 0.0.into();
            c["resid_pdrop"] = 0.0.into();
            c["attn_pdrop"] = 0.0.into();
        },
    );
    let (tokens, window, classes, pad, d) = (16, 32, 3, 299, 32);
    let imported = import_gpt2(&dir, Some(window), 1e-4).unwrap();
    let classifier = imported
        .architecture
        .functional
        .sequence_classifier(classes, pad)
        .unwrap();
    let mut values = imported.tensors.clone();
    values.push(("score.weight".into(), vec![classes, d], want("score.weight")));
    let ids: Vec<f32> = want("ids")
        .chunks(tokens)
        .flat_map(|s| s.iter().copied().chain([pad as f32; 16]))
        .collect();
    let labels: Vec<u32> = want("labels").iter().map(|&l| l as u32).collect();
    let probabilities: Vec<f32> = want("logits").chunks(classes).flat_map(softmax).collect();
    let lr = 1.0;
    let mut model = classifier
        .compile_supervised(ctx, wgml::kernels::optim::Optimizer::sgd(lr, 0.0), 1)
        .unwrap();
    model.load_params(ctx, &values).unwrap();
    assert_eq!(model.batch_tokens(&ids), Some(tokens));
    let got = model.predict(ctx, &ids, 4).unwrap();
    assert_close("probabilities", &got, &probabilities, 1e-6, 1e-5);
    let before = model.store.download(ctx).unwrap();
    model.acc.reset(ctx).unwrap();
    let batch = wgml::nn::model::Batch {
        x: &ids,
        labels: &labels,
        values: &[],
        len: 4,
    };
    model.train_step(ctx, &batch, lr, |_, _| {}).unwrap();
    let loss = model.acc.read(ctx).unwrap().0 / 4.0;
    assert!((loss - want("loss")[0] as f64).abs() < 1e-5, "loss {loss}");
    let after = model.store.download(ctx).unwrap();
    let step = |name: &str| -> Vec<f32> {
        let find = |v: &[wgml::graph::params::NamedValues]| v.iter().find(|t| t.0 == name).unwrap().2.clone();
        find(&before)
            .iter()
            .zip(find(&after))
            .map(|(b, a)| (b - a) / lr)
            .collect()
    };
    assert_close(
        "score",
        &step("score.weight"),
        &want("grad.score.weight"),
        1e-6,
        1e-5,
    );
    let wpe = want("grad.wpe.weight");
    assert_close("wpe", &step("wpe.weight"), &wpe[..window * d], 1e-6, 1e-5);
    assert!(
        model.built_plans().iter().all(|o| o.tokens == Some(tokens)),
        "{:?}",
        model.built_plans()
    );
}
