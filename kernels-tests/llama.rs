//! wgml's importer of Llama checkpoints (`wgml::import::llama`) against Hugging
//! Face's `LlamaForCausalLM` on two tiny fixtures
//! (`golden/make_llama_tiny.py`): grouped-query attention with an untied head,
//! and one key and value head per query head with the head tied to the
//! embedding and Llama 3.1's scaled rotary frequencies; a Qwen2 (biases on
//! the query, key and value projections, a tied head); and a Qwen3 (each query
//! and key head RMS-normalized before the rotary turn); and a Llama whose rotary
//! positions YaRN scales (`golden/make_llama_yarn.py`: frequencies kept, blended
//! and divided, cosines and sines times the attention factor). The imported
//! models give Hugging Face's probabilities, greedy continuations and gradients.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use wgml::checkpoint;
use wgml::import::llama::import_llama;
use wgml::nn::generate::{Sampling, generate_with};

use crate::common::*;

const FIXTURES: [&str; 5] = [
    "llama-tiny",
    "llama-tiny-tied",
    "qwen2-tiny",
    "qwen3-tiny",
    "llama-tiny-yarn",
];
/// Tokens: the byte-level BPE's 300, then <|begin_of_text|> and <|end_of_text|>.
const VOCAB: usize = 302;

fn fixture(name: &str) -> PathBuf {
    repo_file(&format!("kernels-tests/golden/{name}"))
}

/// The fixture's expected values by name.
fn expected(dir: &Path) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, v)| (name, values(v.data())))
        .collect()
}

/// Imports `dir` with `context` positions, saves the checkpoint and loads it back.
fn import_and_load(ctx: &wgml::Context, dir: &Path, context: Option<usize>, name: &str) -> wgml::nn::Model {
    let imported = import_llama(dir, context, 1e-4).unwrap();
    let out = fresh_dir(name).join("llama.safetensors");
    checkpoint::save_functional_tensors(
        &out,
        &imported.kind,
        &imported.architecture,
        &imported.tensors,
        &imported.vocabulary,
    )
    .unwrap();
    checkpoint::load_model(ctx, &out).unwrap().0
}

#[test]
fn an_imported_llama_gives_hugging_faces_probabilities_and_greedy_tokens() {
    let (_g, ctx) = gpu();
    for name in FIXTURES {
        let want = expected(&fixture(name));
        let mut model = import_and_load(ctx, &fixture(name), None, name);
        assert_eq!(model.spec.input_shape(), &[32]);
        let ids: Vec<u32> = want["ids"].iter().map(|&v| v as u32).collect();
        // The tokenizer came with the checkpoint, and frames a text as Hugging
        // Face's does: <|begin_of_text|> first.
        assert_eq!(ids[0], 300, "{name}");
        let vocabulary =
            wgml::data::text::Vocabulary::from_file(&fixture(name).join("tokenizer.json")).unwrap();
        let text = "The engine trains real models on any GPU; it reads text as tokens.";
        let framed = [
            vocabulary.document_frame().unwrap().0,
            vocabulary.encode(text.as_bytes()).unwrap(),
        ]
        .concat();
        assert_eq!(framed[..32], ids[..], "{name}");
        let probs = model.predict(ctx, &want["ids"], 1).unwrap();
        log_probs_match(
            &format!("{name}: log probabilities"),
            &probs,
            &want["log_probs"],
            9000,
        );
        // One position at a time with the key/value cache (the keys turned at
        // their own positions), and after a prefill: the whole window's
        // probabilities at each position.
        assert!(wgml::nn::generate::causal_by_construction(&model), "{name}");
        let mut decoder = wgml::graph::decode::Decoder::new(ctx, &model.graph, &model.store, model.output)
            .unwrap()
            .expect("a Llama decodes with a key/value cache");
        // Grouped key/value heads are cached once, not repeated per query head.
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture(name).join("config.json")).unwrap()).unwrap();
        let field = |k: &str| config[k].as_u64().unwrap();
        assert_eq!(
            decoder.cache_bytes(),
            field("num_hidden_layers") * 2 * 32 * field("num_key_value_heads") * field("head_dim") * 4,
            "{name}"
        );
        let row = |p: usize| &probs[p * VOCAB..(p + 1) * VOCAB];
        for (p, &id) in ids.iter().enumerate() {
            let cached = softmax_rows(&decoder.step(ctx, id).unwrap(), VOCAB);
            assert_close(
                &format!("{name}: cached position {p}"),
                &cached,
                row(p),
                1e-7,
                1e-5,
            );
        }
        for n in [3, 13] {
            decoder.reset();
            decoder.prefill(ctx, &ids[..n]).unwrap();
            let cached = softmax_rows(&decoder.step(ctx, ids[n]).unwrap(), VOCAB);
            assert_close(
                &format!("{name}: position {n} after a prefill"),
                &cached,
                row(n),
                1e-7,
                1e-5,
            );
        }
        let greedy: Vec<u32> = want["greedy"].iter().map(|&v| v as u32).collect();
        assert!(
            want["greedy_margin"][0] > 1e-2,
            "{name}: the top two logits nearly tie"
        );
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
                "{name}: greedy tokens against Hugging Face's (cache: {use_cache})"
            );
        }
    }
}

/// One plain SGD step on the fixture's text moves the embedding and layer 0's
/// query and key projections by Hugging Face's gradients of its mean
/// next-token loss (the tied embedding's summing the head's part).
#[test]
fn a_fine_tuning_step_moves_the_weights_by_hugging_faces_gradients() {
    let (_g, ctx) = gpu();
    for name in FIXTURES {
        let want = expected(&fixture(name));
        // Hugging Face's loss over 32 ids reads positions 0..=30 against ids 1..=31.
        let imported = import_llama(&fixture(name), Some(31), 1e-4).unwrap();
        let tied = !imported.tensors.iter().any(|(n, ..)| n == "lm_head.weight");
        assert_eq!(tied, matches!(name, "llama-tiny-tied" | "qwen2-tiny"), "{name}");
        let mut model = imported
            .architecture
            .functional
            .compile_supervised(ctx, wgml::kernels::optim::Optimizer::sgd(1.0, 0.0), 1)
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
        let param = |model: &wgml::nn::Model, p: &str| {
            let p = model.store.params.iter().find(|q| q.name == p).unwrap();
            p.value.to_f32(ctx).unwrap()
        };
        let names = [
            ("model.embed_tokens.weight", "embed_grad"),
            ("model.layers.0.self_attn.query.weight", "q_proj_grad"),
            ("model.layers.0.self_attn.key.weight", "k_proj_grad"),
        ];
        let before: Vec<Vec<f32>> = names.iter().map(|(p, _)| param(&model, p)).collect();
        model.acc.reset(ctx).unwrap();
        model.train_step(ctx, &batch, 1.0, |_, _| {}).unwrap();
        let loss = model.acc.read(ctx).unwrap().0 / 31.0;
        assert!(
            (loss - want["loss"][0] as f64).abs() < 1e-5 * loss,
            "{name}: loss {loss} vs {}",
            want["loss"][0]
        );
        for ((p, grad), before) in names.iter().zip(before) {
            let step: Vec<f32> = before.iter().zip(param(&model, p)).map(|(b, a)| b - a).collect();
            // f32 sums (the tied embedding's of 31 positions' head gradients)
            // against float64.
            assert_close(
                &format!("{name}: {p}'s gradient"),
                &step,
                &want[*grad],
                4e-6,
                1e-4,
            );
        }
    }
}

/// Scaled rotary positions, a sliding window and a missing tensor are refused,
/// naming the file and what to do.
#[test]
fn what_wgml_does_not_compute_is_refused() {
    let dir = fresh_dir("llama-scaled");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("llama-tiny").join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    config["rope_parameters"] =
        serde_json::json!({ "rope_type": "longrope", "factor": 8.0, "rope_theta": 500000.0 });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let e = import_llama(&dir, None, 1e-4).err().unwrap().to_string();
    assert!(
        e.contains("config.json") && e.contains("scales its rotary positions ('longrope')"),
        "{e}"
    );
    config["rope_parameters"] = serde_json::json!({ "rope_type": "default", "rope_theta": 10000.0 });
    config["num_hidden_layers"] = 3.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let e = import_llama(&dir, None, 1e-4).err().unwrap().to_string();
    assert!(
        e.contains("has no tensor 'model.layers.2.input_layernorm.weight'"),
        "{e}"
    );
    let e = import_llama(&fixture("llama-tiny"), Some(33), 1e-4)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("2 to 32"), "{e}");
    // A Mistral's sliding window: the same as full attention up to its length.
    config["num_hidden_layers"] = 2.into();
    config["model_type"] = "mistral".into();
    config["sliding_window"] = 16.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let e = import_llama(&dir, None, 1e-4).err().unwrap().to_string();
    assert!(
        e.contains("sliding window of 16 tokens") && e.contains("--context 16 or less"),
        "{e}"
    );
    assert!(import_llama(&dir, Some(16), 1e-4).is_ok());
}

/// The tensors of a safetensors file by name.
fn tensors_of(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), values(v.data()))))
        .collect()
}

/// `wgml export` of an imported Llama writes Hugging Face's tensors back
/// exactly (names, shapes, values; no head when tied), a config.json of the
/// same settings, and a folder that imports to the same model.
#[test]
fn export_writes_back_what_import_read() {
    for name in FIXTURES {
        let imported = import_llama(&fixture(name), None, 1e-4).unwrap();
        let dir = fresh_dir(&format!("{name}-export"));
        let file = dir.join("model.safetensors");
        checkpoint::save_functional_tensors(
            &file,
            &imported.kind,
            &imported.architecture,
            &imported.tensors,
            &imported.vocabulary,
        )
        .unwrap();
        let out = dir.join("hf");
        let c = checkpoint::load(&file).unwrap();
        let summary = wgml::export::llama::export_llama(&c, &file, &out).unwrap();
        assert!(summary.contains("with its tokenizer"), "{summary}");
        assert_eq!(
            tensors_of(&out.join("model.safetensors")),
            tensors_of(&fixture(name).join("model.safetensors")),
            "{name}"
        );
        let theirs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture(name).join("config.json")).unwrap()).unwrap();
        let ours: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        for key in [
            "architectures",
            "model_type",
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "hidden_act",
            "max_position_embeddings",
            "rms_norm_eps",
            "rope_parameters",
            "tie_word_embeddings",
            "attention_bias",
            "mlp_bias",
            "use_sliding_window",
        ] {
            // Qwen2's config.json has no attention_bias, mlp_bias or head_dim.
            if theirs.get(key).is_some() {
                assert_eq!(ours[key], theirs[key], "{name}: {key}");
            }
        }
        let again = import_llama(&out, None, 1e-4).unwrap();
        assert_eq!(
            (again.architecture, again.tensors),
            (imported.architecture, imported.tensors),
            "{name}"
        );
    }
}

/// A PEFT adapter on the grouped-query Llama (`golden/make_llama_lora.py`: rank
/// 4, rank 2 on v_proj, on the four attention projections, gate_proj and
/// down_proj) gives PEFT's float64 log probabilities and loss, one SGD step
/// moves every adapter tensor by PEFT's gradient, and `write_adapter` gives the
/// file's tensors back.
#[test]
fn a_peft_adapter_gives_pefts_probabilities_and_gradients_and_writes_back() {
    let (_g, ctx) = gpu();
    let dir = fixture("llama-tiny-lora");
    let want = expected(&dir);
    let ids = expected(&fixture("llama-tiny"))["ids"].clone();
    let mut imported = import_llama(&fixture("llama-tiny"), None, 1e-4).unwrap();
    let summary = wgml::peft::decoder::add_adapter(&mut imported, &dir).unwrap();
    assert!(
        summary.contains("rank 4, alpha 6") && summary.contains("on 12 modules"),
        "{summary}"
    );
    let mut model = imported.model(ctx).unwrap();
    let probs = model.predict(ctx, &ids, 1).unwrap();
    log_probs_match("adapted log probabilities", &probs, &want["log_probs"], 9000);

    // One SGD step at rate 1 on positions 0..=30 against ids 1..=31.
    let mut short = import_llama(&fixture("llama-tiny"), Some(31), 1e-4).unwrap();
    wgml::peft::decoder::add_adapter(&mut short, &dir).unwrap();
    let mut model = short
        .architecture
        .functional
        .compile_supervised(ctx, wgml::kernels::optim::Optimizer::sgd(1.0, 0.0), 1)
        .unwrap();
    model.load_params(ctx, &short.tensors).unwrap();
    let labels: Vec<u32> = ids[1..].iter().map(|&v| v as u32).collect();
    let batch = wgml::nn::model::Batch {
        x: &ids[..31],
        labels: &labels,
        values: &[],
        len: 1,
    };
    let adapters: Vec<(String, Vec<f32>)> = model
        .store
        .params
        .iter()
        .filter(|p| p.name.contains("lora_"))
        .map(|p| (p.name.clone(), p.value.to_f32(ctx).unwrap()))
        .collect();
    assert_eq!(adapters.len(), 24);
    model.acc.reset(ctx).unwrap();
    model.train_step(ctx, &batch, 1.0, |_, _| {}).unwrap();
    let loss = model.acc.read(ctx).unwrap().0 / 31.0;
    assert!((loss - want["loss"][0] as f64).abs() < 1e-5 * loss, "loss {loss}");
    for (name, before) in &adapters {
        let after = model
            .store
            .params
            .iter()
            .find(|p| &p.name == name)
            .unwrap()
            .value
            .to_f32(ctx)
            .unwrap();
        let step: Vec<f32> = before.iter().zip(&after).map(|(b, a)| b - a).collect();
        let theirs = name
            .replace("self_attn.query", "self_attn.q_proj")
            .replace("self_attn.key", "self_attn.k_proj")
            .replace("self_attn.value", "self_attn.v_proj")
            .replace("self_attn.output", "self_attn.o_proj");
        assert_close(&format!("{name}'s gradient"), &step, &want[&theirs], 4e-6, 1e-4);
    }

    // Written back: the adapter file's tensors, and settings PEFT reads the same way.
    let out = fresh_dir("llama-lora-write");
    let file = out.join("adapted.safetensors");
    checkpoint::save_functional_tensors(
        &file,
        &imported.kind,
        &imported.architecture,
        &imported.tensors,
        &imported.vocabulary,
    )
    .unwrap();
    let c = checkpoint::load(&file).unwrap();
    let summary = wgml::peft::decoder::write_adapter(&c, &file, &out.join("adapter")).unwrap();
    assert!(
        summary.contains("on 12 modules") && summary.contains("CAUSAL_LM"),
        "{summary}"
    );
    assert_eq!(
        tensors_of(&out.join("adapter/adapter_model.safetensors")),
        tensors_of(&dir.join("adapter_model.safetensors"))
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(
        (written["r"].clone(), written["lora_alpha"].clone()),
        (4.into(), 6.0.into())
    );
    assert_eq!(written["task_type"], "CAUSAL_LM");
    assert_eq!(written["modules_to_save"], serde_json::Value::Null);
    let patterns = written["rank_pattern"].as_object().unwrap();
    assert_eq!(patterns.len(), 2, "{patterns:?}");
    assert!(
        patterns
            .iter()
            .all(|(k, v)| k.ends_with("self_attn.v_proj") && *v == 2),
        "{patterns:?}"
    );
}
