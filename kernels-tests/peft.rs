//! `wgml::peft` against Hugging Face PEFT: a LoRA adapter PEFT wrote for the tiny
//! GPT-2 (`kernels-tests/golden/gpt2-tiny-lora/`, from `golden/make_gpt2_lora.py`:
//! rank 4, α 6, on every block's c_attn, attn.c_proj, mlp.c_fc and mlp.c_proj,
//! random A and B) imported into wgml gives PEFT's float64 log probabilities, and
//! one plain SGD step moves every adapter by PEFT's gradient (c_attn's A by the
//! sum of the query's, key's and value's, its B by theirs side by side). Written
//! back after training, the adapter is the trained one in PEFT's form: its
//! c_attn adapter of rank 3·4 merges into the weights that `wgml export` merges.
//! Broken or foreign adapter folders are refused by name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use wgml::checkpoint;
use wgml::gpu::AdapterClass;
use wgml::import::{Imported, import_gpt2};
use wgml::kernels::optim::Optimizer;
use wgml::nn::model::Batch;

use crate::common::*;

fn base() -> PathBuf {
    repo_file("kernels-tests/golden/gpt2-tiny")
}

fn adapter() -> PathBuf {
    repo_file("kernels-tests/golden/gpt2-tiny-lora")
}

/// Every tensor of safetensors file `path` (f32) by name, with its shape.
fn tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (v.shape().to_vec(), values))
        })
        .collect()
}

/// The tiny GPT-2 with dropout off (as PEFT's numbers were taken), imported with
/// `context` positions and the golden adapter.
fn adapted(name: &str, context: usize) -> Imported {
    let mut imported = plain(name, context);
    let line = wgml::peft::add_adapter(&mut imported, &adapter()).unwrap();
    assert!(line.contains("rank 4, alpha 6"), "{line}");
    imported
}

/// The tiny GPT-2 imported with `context` positions and dropout off, no adapter;
/// padded with its last id (`pad_token_id` 299) where it becomes a classifier.
fn plain(name: &str, context: usize) -> Imported {
    let dir = fresh_dir(name);
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(base().join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base().join("config.json")).unwrap()).unwrap();
    for rate in ["embd_pdrop", "resid_pdrop", "attn_pdrop"] {
        config[rate] = 0.0.into();
    }
    config["pad_token_id"] = 299.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    import_gpt2(&dir, Some(context), 1e-4).unwrap()
}

/// A classifier's adapter PEFT wrote (task_type SEQ_CLS: LoRA on c_attn, the head
/// `score` trained in full; `golden/make_gpt2_cls_lora.py`) makes the imported
/// GPT-2 that classifier: PEFT's logits on right-padded samples of 16, 9, 1 and 5
/// ids, and the head among the tensors that train.
#[test]
fn a_peft_classifier_adapter_gives_pefts_logits() {
    let (_g, ctx) = gpu();
    let dir = repo_file("kernels-tests/golden/gpt2-tiny-cls-lora");
    let want = tensors(&dir.join("expected.safetensors"));
    let mut imported = plain("peft-cls", 16);
    let line = wgml::peft::add_adapter(&mut imported, &dir).unwrap();
    assert!(line.contains("and the head score of 3 classes"), "{line}");
    let functional = &imported.architecture.functional;
    assert_eq!(wgml::export::gpt2_classifier_of(functional), Some((3, 299)));
    assert_eq!(functional.lora.as_ref().unwrap().train, ["score"]);
    let mut model = functional
        .compile_supervised(ctx, Optimizer::sgd(0.1, 0.0), 1)
        .unwrap();
    model.load_params(ctx, &imported.tensors).unwrap();
    let score = model
        .store
        .params
        .iter()
        .find(|p| p.name == "score.weight")
        .unwrap();
    assert!(score.trainable, "the head trains in full");
    let (ids, logits) = (&want["ids"].1, &want["logits"].1);
    let probabilities = softmax_rows(logits, 3);
    assert_close(
        "PEFT's classifier",
        &model.predict(ctx, ids, 4).unwrap(),
        &probabilities,
        1e-6,
        1e-5,
    );
    // Written back as a PEFT classifier adapter (SEQ_CLS, the head saved) and
    // read onto the plain GPT-2 again: PEFT's logits still.
    let out = fresh_dir("peft-cls-write");
    let path = out.join("classifier.safetensors");
    let bytes = wgml::data::text::Vocabulary::Bytes;
    checkpoint::save_functional_tensors(&path, "gpt2", &imported.architecture, &imported.tensors, &bytes)
        .unwrap();
    let c = checkpoint::load(&path).unwrap();
    let line = wgml::peft::write_adapter(&c, &path, &out.join("peft")).unwrap();
    assert!(
        line.contains("the head score of 3 classes") && line.contains("num_labels=3, pad_token_id=299"),
        "{line}"
    );
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("peft/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(settings["task_type"], "SEQ_CLS");
    assert_eq!(
        settings["modules_to_save"],
        serde_json::json!(["classifier", "score"])
    );
    let written = tensors(&out.join("peft/adapter_model.safetensors"));
    let head = "base_model.model.score.weight";
    assert_eq!(
        written[head],
        tensors(&dir.join("adapter_model.safetensors"))[head]
    );
    let mut reread = plain("peft-cls-reread", 16);
    wgml::peft::add_adapter(&mut reread, &out.join("peft")).unwrap();
    let mut again = reread
        .architecture
        .functional
        .compile_supervised(ctx, Optimizer::sgd(0.1, 0.0), 1)
        .unwrap();
    again.load_params(ctx, &reread.tensors).unwrap();
    assert_close(
        "written and read again",
        &again.predict(ctx, ids, 4).unwrap(),
        &probabilities,
        1e-6,
        1e-5,
    );
}

#[test]
fn a_peft_adapter_gives_pefts_probabilities_and_gradients() {
    let (_g, ctx) = gpu();
    let want = tensors(&adapter().join("expected.safetensors"));
    let ids = tensors(&base().join("expected.safetensors"))["ids"].1.clone();
    assert_eq!(ids.len(), 32);

    let imported = adapted("peft-probs", 32);
    let lora = imported.architecture.functional.lora.clone().unwrap();
    assert_eq!(
        lora.targets,
        [
            "attn.key",
            "attn.output",
            "attn.query",
            "attn.value",
            "mlp.c_fc",
            "mlp.c_proj"
        ]
    );
    let path = fresh_dir("peft-probs-ckpt").join("adapted.safetensors");
    checkpoint::save_functional_tensors(
        &path,
        &imported.kind,
        &imported.architecture,
        &imported.tensors,
        &imported.vocabulary,
    )
    .unwrap();
    let (mut model, _) = checkpoint::load_model(ctx, &path).unwrap();
    let probs = model.predict(ctx, &ids, 1).unwrap();
    log_probs_match(
        "log probabilities against PEFT",
        &probs,
        &want["log_probs"].1,
        9000,
    );
    // The key/value-cached decoder runs the adapters too (the adapted key and value
    // projections feed its cache): stepped, and prefilled as CPU adapters and GPUs
    // plan it, each position's probabilities are the whole window's.
    let mut decoder = wgml::graph::decode::Decoder::new(ctx, &model.graph, &model.store, model.output)
        .unwrap()
        .expect("an adapted GPT-2 decodes with a key/value cache");
    let ids_u32: Vec<u32> = ids.iter().map(|&v| v as u32).collect();
    let softmax = |logits: &[f32]| {
        let mut p = vec![0.0; logits.len()];
        wgml::reference::softmax::softmax(logits, logits.len(), &mut p);
        p
    };
    for (p, &id) in ids_u32.iter().enumerate().take(6) {
        let cached = softmax(&decoder.step(ctx, id).unwrap());
        assert_close(
            &format!("cached position {p}"),
            &cached,
            &probs[p * 300..(p + 1) * 300],
            1e-7,
            1e-5,
        );
    }
    let _restore = PlanAs(ctx);
    for (class, n) in [(AdapterClass::Native, 13), (AdapterClass::GpuWithoutSubgroups, 9)] {
        ctx.set_adapter_class(class);
        decoder.reset();
        decoder.prefill(ctx, &ids_u32[..n]).unwrap();
        let cached = softmax(&decoder.step(ctx, ids_u32[n]).unwrap());
        assert_close(
            &format!("{class:?}: position {n} after a prefill"),
            &cached,
            &probs[n * 300..(n + 1) * 300],
            1e-7,
            1e-5,
        );
    }

    // PEFT's loss over 32 ids reads positions 0..=30 against ids 1..=31.
    let imported = adapted("peft-grads", 31);
    let lr = 1.0;
    let mut model = imported
        .architecture
        .functional
        .compile_supervised(ctx, Optimizer::sgd(lr, 0.0), 1)
        .unwrap();
    model.load_params(ctx, &imported.tensors).unwrap();
    let labels: Vec<u32> = ids[1..].iter().map(|&v| v as u32).collect();
    let before = model.store.download(ctx).unwrap();
    model.acc.reset(ctx).unwrap();
    let batch = Batch {
        x: &ids[..31],
        labels: &labels,
        values: &[],
        len: 1,
    };
    model.train_step(ctx, &batch, lr, |_, _| {}).unwrap();
    let loss = model.acc.read(ctx).unwrap().0 / 31.0;
    let rel = (loss - want["loss"].1[0] as f64).abs() / loss;
    assert!(rel < 1e-5, "loss {loss} vs PEFT's {}", want["loss"].1[0]);
    let after = model.store.download(ctx).unwrap();
    let grad: HashMap<String, Vec<f32>> = before
        .iter()
        .zip(&after)
        .map(|((name, _, b), (_, _, a))| (name.clone(), b.iter().zip(a).map(|(b, a)| (b - a) / lr).collect()))
        .collect();
    for (name, g) in &grad {
        if !name.contains(".lora_") {
            assert!(g.iter().all(|&v| v == 0.0), "{name} is frozen but moved");
        }
    }
    let mut compared = 0;
    for i in 0..2 {
        let peft = |m: &str, t: &str| &want[&format!("transformer.h.{i}.{m}.lora_{t}.weight")].1;
        let ours = |m: &str, t: &str| &grad[&format!("h.{i}.{m}.lora_{t}.weight")];
        for (m, p) in [
            ("attn.output", "attn.c_proj"),
            ("mlp.c_fc", "mlp.c_fc"),
            ("mlp.c_proj", "mlp.c_proj"),
        ] {
            for t in ["A", "B"] {
                assert_close(&format!("h.{i}.{p} {t}"), ours(m, t), peft(p, t), 1e-5, 1e-4);
                compared += 1;
            }
        }
        let parts = ["attn.query", "attn.key", "attn.value"];
        let a_sum: Vec<f32> = (0..ours("attn.query", "A").len())
            .map(|k| parts.iter().map(|m| ours(m, "A")[k]).sum())
            .collect();
        let b_side_by_side: Vec<f32> = parts.iter().flat_map(|m| ours(m, "B").clone()).collect();
        assert_close(
            &format!("h.{i} c_attn A"),
            &a_sum,
            peft("attn.c_attn", "A"),
            1e-5,
            1e-4,
        );
        assert_close(
            &format!("h.{i} c_attn B"),
            &b_side_by_side,
            peft("attn.c_attn", "B"),
            1e-5,
            1e-4,
        );
        compared += 2;
    }
    assert_eq!(
        compared,
        want.len() - 2,
        "every adapter tensor of PEFT's compared"
    );
}

#[test]
fn a_written_adapter_merges_into_the_weights_export_merges() {
    let (_g, ctx) = gpu();
    let imported = adapted("peft-write", 16);
    let mut model = imported
        .architecture
        .functional
        .compile_supervised(ctx, Optimizer::adam(1e-2), 1)
        .unwrap();
    model.load_params(ctx, &imported.tensors).unwrap();
    // Two Adam steps move the query's, key's and value's A apart.
    let ids: Vec<f32> = (0..16).map(|i| (i * 7 % 300) as f32).collect();
    let labels: Vec<u32> = (1..17).map(|i| i * 7 % 300).collect();
    for _ in 0..2 {
        let batch = Batch {
            x: &ids,
            labels: &labels,
            values: &[],
            len: 1,
        };
        model.train_step(ctx, &batch, 1e-2, |_, _| {}).unwrap();
    }
    let trained = model.store.download(ctx).unwrap();
    // As trained, and with the key's adapters left out: c_attn of rank 3·4, then 2·4
    // (the query's and value's blocks of B in their places, the key's rows zero).
    // Third, the value's adapters with α 10 of their own: c_attn takes the query's
    // scaling, the value's block of B scaled by 10/6.
    for (case, (parts, rank, alpha, value_alpha)) in
        [(3, 12, 18.0, None), (2, 8, 12.0, None), (3, 12, 18.0, Some(10.0))]
            .into_iter()
            .enumerate()
    {
        let mut architecture = imported.architecture.clone();
        let mut tensors = trained.clone();
        if let Some(a) = value_alpha {
            let lora = architecture.functional.lora.as_mut().unwrap();
            lora.alpha_pattern.insert("attn.value".into(), a);
        }
        if parts == 2 {
            tensors.retain(|(n, ..)| !n.contains("attn.key.lora_"));
            let lora = architecture.functional.lora.as_mut().unwrap();
            lora.targets.retain(|t| t != "attn.key");
        }
        let dir = fresh_dir(&format!("peft-write-{case}"));
        written_adapter_merges_as_export(&architecture, &tensors, (rank, alpha), &dir);
        // Read back (c_attn's rank and α from the patterns, on the query, key and
        // value), the adapter gives the outputs of the model it was written from.
        let mut reread = plain(&format!("peft-reread-{case}"), 16);
        let line = wgml::peft::add_adapter(&mut reread, &dir.join("peft")).unwrap();
        assert!(
            line.contains("rank 4, alpha 6") && line.contains("6 modules of their own rank or alpha"),
            "{line}"
        );
        let lora = reread.architecture.functional.lora.as_ref().unwrap();
        assert_eq!(lora.rank_of("h.1.attn.key"), rank, "{line}");
        assert_eq!(lora.scaling_of("h.1.attn.value"), 1.5, "{line}");
        let outputs = |architecture: &wgml::checkpoint::FunctionalArchitecture, values: &[_]| {
            let mut m = architecture
                .functional
                .compile_supervised(ctx, Optimizer::sgd(0.1, 0.0), 1)
                .unwrap();
            m.load_params(ctx, values).unwrap();
            m.predict(ctx, &ids, 1).unwrap()
        };
        let want = outputs(&architecture, &tensors);
        let got = outputs(&reread.architecture, &reread.tensors);
        assert_close(&format!("case {case} re-read"), &got, &want, 1e-6, 1e-5);
    }
}

/// Writes `values` of a GPT-2 with adapters into `dir` as a PEFT adapter and as
/// a merged Hugging Face model: PEFT's merge of the adapter (c_attn's of rank and
/// α `c_attn`) into the base weights gives the merged model's.
fn written_adapter_merges_as_export(
    architecture: &wgml::checkpoint::FunctionalArchitecture,
    values: &[wgml::graph::params::NamedValues],
    c_attn: (usize, f32),
    dir: &Path,
) {
    let path = dir.join("tuned.safetensors");
    let bytes = wgml::data::text::Vocabulary::Bytes;
    checkpoint::save_functional_tensors(&path, "gpt2", architecture, values, &bytes).unwrap();
    let c = checkpoint::load(&path).unwrap();
    let line = wgml::peft::write_adapter(&c, &path, &dir.join("peft")).unwrap();
    assert!(line.contains("on 8 GPT-2 modules"), "{line}");
    let merged_dir = dir.join("hf");
    wgml::export::export_gpt2(&c, &path, &merged_dir).unwrap();

    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("peft/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(settings["r"], 4);
    assert_eq!(settings["rank_pattern"]["transformer.h.1.attn.c_attn"], c_attn.0);
    assert_eq!(settings["alpha_pattern"]["transformer.h.1.attn.c_attn"], c_attn.1);
    let written = tensors(&dir.join("peft/adapter_model.safetensors"));
    let hf_base = tensors(&base().join("model.safetensors"));
    let hf_merged = tensors(&merged_dir.join("model.safetensors"));
    // PEFT merges a Conv1D's adapter as W[in, out] += s·(B·A)ᵀ.
    for i in 0..2 {
        for (module, rank, alpha) in [
            ("attn.c_attn", c_attn.0, c_attn.1),
            ("attn.c_proj", 4, 6.0),
            ("mlp.c_fc", 4, 6.0),
        ] {
            let key = |t: &str| format!("base_model.model.transformer.h.{i}.{module}.lora_{t}.weight");
            let ((sa, a), (sb, b)) = (&written[&key("A")], &written[&key("B")]);
            let (r, n_in, n_out) = (sa[0], sa[1], sb[0]);
            assert_eq!((r, sb[1]), (rank, rank), "{module}");
            let weight = format!("transformer.h.{i}.{module}.weight");
            let mut w = hf_base[&weight].1.clone();
            let s = alpha / rank as f32;
            for x in 0..n_in {
                for o in 0..n_out {
                    let dot: f64 = (0..r).map(|k| b[o * r + k] as f64 * a[k * n_in + x] as f64).sum();
                    w[x * n_out + o] += s * dot as f32;
                }
            }
            assert_close(&weight, &w, &hf_merged[&weight].1, 1e-5, 1e-5);
            assert!(w != hf_base[&weight].1, "{weight}: the adapter changed it");
        }
    }
}

/// A copy of the golden adapter in a fresh folder, its tensors passed through
/// `tensors` (name, shape, values) and its settings through `settings`.
fn edited_adapter(
    name: &str,
    tensors: impl Fn(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
    settings: impl Fn(&mut serde_json::Value),
) -> PathBuf {
    let dir = fresh_dir(name);
    let mut all: Vec<(String, Vec<usize>, Vec<f32>)> = tensors_of(&adapter().join(wgml::peft::TENSORS_FILE));
    tensors(&mut all);
    let bytes: Vec<Vec<u8>> = all
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = all
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap();
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join(wgml::peft::TENSORS_FILE)).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter().join(wgml::peft::CONFIG_FILE)).unwrap()).unwrap();
    settings(&mut config);
    std::fs::write(dir.join(wgml::peft::CONFIG_FILE), config.to_string()).unwrap();
    dir
}

/// Every tensor of safetensors file `path` (f32), sorted by name.
fn tensors_of(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut all: Vec<(String, Vec<usize>, Vec<f32>)> =
        tensors(path).into_iter().map(|(n, (s, v))| (n, s, v)).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Broken or foreign adapter folders are errors naming the file and what is
/// wrong, never a panic, and leave the imported model as it was.
#[test]
fn adapters_wgml_cannot_read_are_refused_by_name() {
    let refused = |dir: &Path| {
        let mut imported = import_gpt2(&base(), Some(16), 1e-4).unwrap();
        let e = wgml::peft::add_adapter(&mut imported, dir)
            .unwrap_err()
            .to_string();
        assert!(imported.architecture.functional.lora.is_none(), "{e}");
        e
    };
    let keep = |_: &mut Vec<(String, Vec<usize>, Vec<f32>)>| {};
    let same = |_: &mut serde_json::Value| {};
    let e = refused(&fresh_dir("peft-empty"));
    assert!(e.contains("adapter_config.json"), "{e}");
    let dir = edited_adapter("peft-ia3", keep, |c| c["peft_type"] = "IA3".into());
    assert!(refused(&dir).contains("IA3"));
    let dir = edited_adapter("peft-alpha", keep, |c| c["lora_alpha"] = (-1.0).into());
    let e = refused(&dir);
    assert!(e.contains("alpha") && e.contains("adapter_config.json"), "{e}");
    let dir = edited_adapter("peft-dora", keep, |c| c["use_dora"] = true.into());
    assert!(refused(&dir).contains("use_dora"));
    // B of the wrong height.
    let dir = edited_adapter(
        "peft-shape",
        |t| {
            let b = t
                .iter_mut()
                .find(|t| t.0.ends_with("h.0.mlp.c_fc.lora_B.weight"))
                .unwrap();
            b.1 = vec![100, 4];
            b.2.truncate(400);
        },
        same,
    );
    let e = refused(&dir);
    assert!(e.contains("h.0.mlp.c_fc") && e.contains("[128, 4]"), "{e}");
    // A block the model has not.
    let dir = edited_adapter(
        "peft-block",
        |t| {
            for x in t.iter_mut().filter(|t| t.0.contains("h.1.mlp.c_fc")) {
                x.0 = x.0.replace("h.1.", "h.7.");
            }
        },
        same,
    );
    assert!(refused(&dir).contains("h.7.mlp.c_fc"));
    // A without its B.
    let dir = edited_adapter(
        "peft-half",
        |t| t.retain(|t| !t.0.ends_with("h.0.attn.c_proj.lora_B.weight")),
        same,
    );
    assert!(refused(&dir).contains("only one of"));
    // A pickle instead of safetensors.
    let dir = edited_adapter("peft-pickle", keep, same);
    std::fs::rename(dir.join(wgml::peft::TENSORS_FILE), dir.join("adapter_model.bin")).unwrap();
    assert!(refused(&dir).contains("safetensors"));
    // Not a safetensors file at all.
    let dir = edited_adapter("peft-garbage", keep, same);
    std::fs::write(dir.join(wgml::peft::TENSORS_FILE), b"not a tensor file").unwrap();
    assert!(refused(&dir).contains("is not a safetensors file"));
}
