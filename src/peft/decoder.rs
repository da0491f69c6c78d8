//! PEFT LoRA adapters of Llama-family decoders (Llama, Mistral, Qwen2, as
//! [`crate::import::llama`] reads them; `task_type` `CAUSAL_LM`), read into and
//! written from wgml's low-rank adapters.
//!
//! Each PEFT module is one wgml module: the attention's projections under
//! wgml's names (`self_attn.q_proj` is wgml's `self_attn.query`, and so on), the
//! MLP's and `lm_head` under their own. Adapters keep PyTorch's layout (A `[r,
//! in]`, B `[out, r]`) on both sides. Nothing is trained in full beside them:
//! an adapter that saves modules whole (`modules_to_save`) is refused, and so is
//! writing one for a model that trained a layer in full.

use std::path::Path;

use super::encoder::{AdapterModel, read_onto, write_from};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::import::llama::PROJECTIONS;

/// A Llama-family decoder as its adapters see it.
fn llama_model() -> AdapterModel<'static> {
    AdapterModel {
        name: "Llama-family",
        task: "CAUSAL_LM",
        heads: Vec::new(),
        beside: &[],
        renamed: PROJECTIONS
            .iter()
            .map(|(theirs, ours)| (format!("self_attn.{ours}"), format!("self_attn.{theirs}")))
            .collect(),
    }
}

/// Puts the PEFT adapter in folder `dir` on `imported`, a Llama-family decoder
/// [`crate::import::llama::import_llama`] read: its model gets the adapters,
/// every other tensor frozen. Returns one line on what was read.
pub fn add_adapter(imported: &mut crate::import::Imported, dir: &Path) -> Result<String> {
    let (lora, modules, _) = read_onto(imported, dir, &llama_model(), "a language model")?;
    Ok(format!(
        "LoRA adapter: rank {}, alpha {}, dropout {}, on {modules} modules; every other tensor frozen",
        lora.rank, lora.alpha, lora.dropout
    ))
}

/// Writes the adapters of Llama-family checkpoint `c` (read from `path`, named
/// in errors) as a PEFT adapter folder `dir` (created if missing) that
/// `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), dir)`
/// loads; returns one line on what was written.
pub fn write_adapter(c: &Checkpoint, path: &Path, dir: &Path) -> Result<String> {
    let a = c.functional_architecture(path)?.ok_or_else(|| Error::Data {
        path: path.display().to_string(),
        message: "holds no functional model, so no Llama".into(),
    })?;
    let (lora, modules, _) = write_from((c, &a.functional), path, dir, &llama_model(), &[])?;
    Ok(format!(
        "LoRA adapter: rank {}, alpha {}, on {modules} modules (PEFT's CAUSAL_LM: load it onto \
         AutoModelForCausalLM.from_pretrained(BASE))",
        lora.rank, lora.alpha
    ))
}
