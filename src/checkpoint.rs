//! Checkpoints in safetensors, laid out as the `state_dict` of the equivalent
//! PyTorch `nn.Sequential`: the same tensor names and shapes (Linear weights
//! `[out, in]`, Conv2d weights `[out, in, kh, kw]`, Flatten in C,H,W order), f32
//! little-endian, so `safetensors.torch.load_file` gives a dict `load_state_dict`
//! accepts. Metadata names the model and the wgml version; files written by
//! [`save_model`] also describe the model (layers, loss, optimizer: the
//! `architecture` entry, JSON), so [`load_model`] rebuilds it without the code that
//! built it, as Keras' `load_model` does. Batch normalizations
//! also get PyTorch's `num_batches_tracked` (i64, the training batches taken: forward
//! passes, more than the optimizer steps when gradients were accumulated), so a
//! strict `load_state_dict` finds every key; reading ignores it.
//!
//! Saving is atomic: the bytes go to a temporary file in the same folder, which is
//! flushed to disk and then renamed over the target, so a crash mid-save leaves
//! either the old checkpoint or the new one, never a broken file.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::data::text::Vocabulary;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::graph::params::NamedValues;
use crate::kernels::optim::Optimizer;
use crate::nn::functional::FunctionalObjective;
use crate::nn::model::ModelSpec;
use crate::nn::{Functional, FunctionalModel, Loss, Model, Sequential};

/// Metadata key naming the model (e.g. `cnn`).
pub const MODEL_KEY: &str = "model";
/// Metadata key holding the wgml version that wrote the file.
pub const VERSION_KEY: &str = "wgml_version";
/// Metadata key holding the model's [`Architecture`] as JSON.
pub const ARCHITECTURE_KEY: &str = "architecture";
/// Metadata key holding a language model's tokenizer (`tokenizer.json` text); a
/// language model without it reads bytes.
pub const TOKENIZER_KEY: &str = "tokenizer";
/// Metadata key holding the tokenizer's chat template, special tokens' texts and
/// stop ids ([`crate::data::chat::ChatSettings`] as JSON), when it has any.
pub const CHAT_KEY: &str = "chat";

/// The metadata entries of `vocabulary`: its tokenizer, and its chat settings
/// when it has any (nothing for bytes).
fn vocabulary_entries(vocabulary: &Vocabulary) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    if let Some(json) = vocabulary.to_json()? {
        out.push((TOKENIZER_KEY, json));
    }
    if let Some(chat) = vocabulary.chat() {
        let json = serde_json::to_string(chat)
            .map_err(|e| Error::invalid(format!("writing the chat settings: {e}")))?;
        out.push((CHAT_KEY, json));
    }
    Ok(out)
}

/// What it takes to rebuild a model: its layers, its loss and its optimizer (the
/// optimizer's settings; its state is a backup's business, see
/// [`crate::train::Backup`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Architecture {
    /// The layers.
    pub model: Sequential,
    /// The training loss.
    pub loss: Loss,
    /// The optimizer's settings.
    pub optimizer: Optimizer,
    /// The names of the classes by label, when the training data named them (a
    /// folder of images); `wgml predict` prints them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
}

/// A functional model's description: its layers and loss terms, and the optimizer's
/// settings. `wgml train --model FILE.json` reads it when the file has a
/// `functional` entry (see `examples/models/vae.json`); [`save_functional`] writes it
/// into the checkpoint's metadata under [`FUNCTIONAL_KEY`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionalArchitecture {
    /// The model.
    pub functional: Functional,
    /// The optimizer's settings.
    pub optimizer: Optimizer,
    /// The names of the classes by label, when the training data named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
}

/// Metadata key holding a functional model's [`FunctionalArchitecture`] as JSON.
pub const FUNCTIONAL_KEY: &str = "functional_architecture";

/// Saves functional model `model` as `name`: its parameters, the steps taken and its
/// [`FunctionalArchitecture`], atomically. [`load_functional`] reads it back; PyTorch
/// loads the tensors into a module with the layers' names as attributes.
pub fn save_functional(path: &Path, ctx: &Context, model: &FunctionalModel, name: &str) -> Result<()> {
    let architecture = FunctionalArchitecture {
        functional: model.spec.clone(),
        optimizer: model.net.optimizer.clone(),
        class_names: Vec::new(),
    };
    let json = architecture_json(&architecture)?;
    let tensors = model.net.store.download(ctx)?;
    write_atomic(
        path,
        &checkpoint_bytes(
            name,
            &tensors,
            model.net.step as u64,
            vec![(FUNCTIONAL_KEY, json)],
        )?,
    )
}

/// Reads a [`save_functional`] file and rebuilds its model on `ctx` with the file's
/// weights (the optimizer's state starts from zero, the step count from the file
/// is not restored); returns it with the file's contents.
pub fn load_functional(ctx: &Context, path: &Path) -> Result<(FunctionalModel, Checkpoint)> {
    let c = load(path)?;
    let a = c.functional_architecture(path)?.ok_or_else(|| Error::Data {
        path: path.display().to_string(),
        message: "does not describe a functional model (no 'functional_architecture' entry)".into(),
    })?;
    if matches!(a.functional.objective, FunctionalObjective::Supervised { .. }) {
        return Err(Error::Data {
            path: path.display().to_string(),
            message: "holds a functional model with a supervised loss; load it with checkpoint::load_model"
                .into(),
        });
    }
    let model = a.functional.compile(ctx, a.optimizer, 0)?;
    model
        .net
        .store
        .load(ctx, &c.tensors)
        .map_err(|e| e.in_file(path, "does not match the model it describes"))?;
    Ok((model, c))
}

fn architecture_json(a: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(a).map_err(|e| Error::invalid(format!("architecture: {e}")))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// PyTorch's batch-normalization step counter, written next to each running mean.
const BATCHES_TRACKED: &str = "num_batches_tracked";

/// Serialises `tensors` with metadata `model`; `steps` is the number of training
/// batches taken (each batch normalization's `num_batches_tracked`).
pub fn to_bytes(model: &str, tensors: &[NamedValues], steps: u64) -> Result<Vec<u8>> {
    checkpoint_bytes(model, tensors, steps, Vec::new())
}

/// [`to_bytes`], with more metadata entries (the model's description, its
/// tokenizer: a key and its JSON each).
fn checkpoint_bytes(
    model: &str,
    tensors: &[NamedValues],
    steps: u64,
    more: Vec<(&str, String)>,
) -> Result<Vec<u8>> {
    let mut entries: Vec<Entry> = Vec::new();
    for (name, shape, v) in tensors {
        entries.push(f32_entry(name.clone(), shape, v));
        if let Some(prefix) = name.strip_suffix(".running_mean") {
            let counter = format!("{prefix}.{BATCHES_TRACKED}");
            entries.push((
                counter,
                Dtype::I64,
                Vec::new(),
                (steps as i64).to_le_bytes().to_vec(),
            ));
        }
    }
    let mut metadata = HashMap::from([(MODEL_KEY.to_string(), model.to_string())]);
    for (key, json) in more {
        metadata.insert(key.to_string(), json);
    }
    serialize(&entries, metadata)
}

/// One tensor to serialise: name, dtype, shape, little-endian bytes.
pub(crate) type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

/// The entry of an f32 tensor.
pub(crate) fn f32_entry(name: String, shape: &[usize], values: &[f32]) -> Entry {
    let bytes = values.iter().flat_map(|f| f.to_le_bytes()).collect();
    (name, Dtype::F32, shape.to_vec(), bytes)
}

/// Serialises `entries` with `metadata`, to which the wgml version is added.
pub(crate) fn serialize(entries: &[Entry], mut metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    metadata.insert(VERSION_KEY.to_string(), env!("CARGO_PKG_VERSION").to_string());
    let views = entries
        .iter()
        .map(|(name, dtype, shape, b)| {
            TensorView::new(*dtype, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::invalid(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::invalid(format!("serialising: {e}")))
}

/// Writes a checkpoint atomically (see [`to_bytes`]).
pub fn save(path: &Path, model: &str, tensors: &[NamedValues], steps: u64) -> Result<()> {
    write_atomic(path, &to_bytes(model, tensors, steps)?)
}

/// Saves `model` as `name`: every parameter (moving statistics included), the
/// steps taken, and its [`Architecture`] (a [`FunctionalArchitecture`] for a
/// functional model; with the data's `class_names`, if any),
/// atomically. [`load_model`] reads it back; PyTorch loads it as any other
/// checkpoint.
pub fn save_model(
    path: &Path,
    ctx: &Context,
    model: &Model,
    name: &str,
    class_names: &[String],
) -> Result<()> {
    save_model_with(path, ctx, model, name, class_names, &Vocabulary::Bytes)
}

/// Saves a language model as [`save_model`] does, with the tokenizer its token
/// ids come from (under [`TOKENIZER_KEY`], as `tokenizer.json` text; nothing for
/// [`Vocabulary::Bytes`]), so `wgml generate` and [`Checkpoint::vocabulary`] read
/// text as it was read in training.
pub fn save_language_model(
    path: &Path,
    ctx: &Context,
    model: &Model,
    name: &str,
    vocabulary: &Vocabulary,
) -> Result<()> {
    save_model_with(path, ctx, model, name, &[], vocabulary)
}

/// Saves a classifier of text as [`save_model`] does, with its class names and
/// the tokenizer its token ids come from (as [`save_language_model`]).
pub fn save_text_classifier(
    path: &Path,
    ctx: &Context,
    model: &Model,
    name: &str,
    class_names: &[String],
    vocabulary: &Vocabulary,
) -> Result<()> {
    save_model_with(path, ctx, model, name, class_names, vocabulary)
}

fn save_model_with(
    path: &Path,
    ctx: &Context,
    model: &Model,
    name: &str,
    class_names: &[String],
    vocabulary: &Vocabulary,
) -> Result<()> {
    let description = match &model.spec {
        ModelSpec::Sequential(s) => (
            ARCHITECTURE_KEY,
            architecture_json(&Architecture {
                model: s.clone(),
                loss: model.loss,
                optimizer: model.optimizer.clone(),
                class_names: class_names.to_vec(),
            })?,
        ),
        ModelSpec::Functional(f) => (
            FUNCTIONAL_KEY,
            architecture_json(&FunctionalArchitecture {
                functional: f.clone(),
                optimizer: model.optimizer.clone(),
                class_names: class_names.to_vec(),
            })?,
        ),
    };
    let mut more = vec![description];
    more.extend(vocabulary_entries(vocabulary)?);
    let tensors = model.store.download(ctx)?;
    write_atomic(path, &checkpoint_bytes(name, &tensors, model.draws as u64, more)?)
}

/// Saves tensors with the functional model they belong to and its tokenizer,
/// without a compiled model (what [`crate::import`] writes): [`load_model`]
/// rebuilds the model with these weights, `wgml generate` reads its text with
/// `vocabulary`.
pub fn save_functional_tensors(
    path: &Path,
    name: &str,
    architecture: &FunctionalArchitecture,
    tensors: &[NamedValues],
    vocabulary: &Vocabulary,
) -> Result<()> {
    let mut more = vec![(FUNCTIONAL_KEY, architecture_json(architecture)?)];
    more.extend(vocabulary_entries(vocabulary)?);
    write_atomic(path, &checkpoint_bytes(name, tensors, 0, more)?)
}

/// Writes the checkpoint file at `path` to `out` (atomically) with its low-rank
/// adapters merged into the weights ([`Checkpoint::merge_adapters`]): the same
/// model as a plain one, which PyTorch's strict `load_state_dict` and wgml read
/// alike. Every other entry (the tokenizer, the class names, batch
/// normalizations' counters) is kept. Errors when the file describes no adapters.
pub fn save_merged_adapters(path: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let mut c = from_bytes(&path.display().to_string(), &bytes)?;
    if !c.merge_adapters(path)? {
        return Err(Error::Data {
            path: path.display().to_string(),
            message: "describes no LoRA adapters to merge (a model trained with --lora does)".into(),
        });
    }
    let mut entries: Vec<Entry> = c
        .tensors
        .iter()
        .map(|(name, shape, v)| f32_entry(name.clone(), shape, v))
        .collect();
    // The entries that are not f32 weights (batch normalizations' counters), as they are.
    let file = SafeTensors::deserialize(&bytes).map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: format!("is not a safetensors file: {e}"),
    })?;
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            entries.push((name, view.dtype(), view.shape().to_vec(), view.data().to_vec()));
        }
    }
    write_atomic(out, &serialize(&entries, c.metadata)?)
}

/// Reads a [`save_model`] file and rebuilds the model it describes, compiled on
/// `ctx` with the file's weights (the optimizer's state starts from zero, as after
/// [`Sequential::compile`]); returns it with the file's contents.
pub fn load_model(ctx: &Context, path: &Path) -> Result<(Model, Checkpoint)> {
    let c = load(path)?;
    let (model, _) = c.build(ctx, path)?.ok_or_else(|| Error::Data {
        path: path.display().to_string(),
        message: "does not describe its model (no 'architecture' entry: an older wgml \
                  checkpoint or another program's); build the model in code and load the \
                  weights with Model::load_params"
            .into(),
    })?;
    Ok((model, c))
}

/// Writes `bytes` to `path` atomically: to a temporary file in the same folder,
/// flushed to disk, then renamed over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file name", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A loaded checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The `model` metadata entry (the model's name), if any.
    pub model: Option<String>,
    /// The `wgml_version` metadata entry, if any.
    pub version: Option<String>,
    /// Every f32 tensor as `(name, shape, values)`, sorted by name.
    pub tensors: Vec<NamedValues>,
    /// Every metadata entry of the file, `model` and `wgml_version` included.
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// The supervised model the file describes (a `Sequential` or a functional
    /// model with a supervised loss), compiled on `ctx` with the file's weights, and
    /// the class names it records; `None` when the file does not describe one
    /// (`path` names it in errors).
    pub fn build(&self, ctx: &Context, path: &Path) -> Result<Option<(Model, Vec<String>)>> {
        let (model, class_names) = if let Some(a) = self.architecture(path)? {
            (
                a.model.compile(ctx, a.loss, a.optimizer.clone(), 0)?,
                a.class_names,
            )
        } else if let Some(a) = self.functional_architecture(path)? {
            if let FunctionalObjective::Terms(_) = a.functional.objective {
                return Err(Error::Data {
                    path: path.display().to_string(),
                    message: "holds a functional model trained on its own loss terms, which has no \
                              targets to evaluate against (wgml train --model FILE.json trains it; \
                              checkpoint::load_functional loads it in Rust)"
                        .into(),
                });
            }
            (
                a.functional.compile_supervised(ctx, a.optimizer.clone(), 0)?,
                a.class_names,
            )
        } else {
            return Ok(None);
        };
        model
            .load_params(ctx, &self.tensors)
            .map_err(|e| e.in_file(path, "does not match the model it describes"))?;
        Ok(Some((model, class_names)))
    }

    /// The class names the file records by label (empty when its training data
    /// named none; `path` names the file in errors).
    pub fn class_names(&self, path: &Path) -> Result<Vec<String>> {
        if let Some(a) = self.architecture(path)? {
            return Ok(a.class_names);
        }
        Ok(self
            .functional_architecture(path)?
            .map(|a| a.class_names)
            .unwrap_or_default())
    }

    /// How the model's token ids read text: the tokenizer the file holds, with
    /// its chat settings, else bytes (`path` names the file in errors).
    pub fn vocabulary(&self, path: &Path) -> Result<Vocabulary> {
        let bad = |key: &str, message: String| Error::Data {
            path: path.display().to_string(),
            message: format!("its '{key}' entry: {message}"),
        };
        let mut vocabulary = match self.metadata.get(TOKENIZER_KEY) {
            None => Vocabulary::Bytes,
            Some(json) => Vocabulary::from_json(json).map_err(|e| bad(TOKENIZER_KEY, e.to_string()))?,
        };
        if let Some(json) = self.metadata.get(CHAT_KEY) {
            let chat = serde_json::from_str(json)
                .map_err(|e| bad(CHAT_KEY, format!("not chat settings wgml reads: {e}")))?;
            vocabulary
                .set_chat(chat)
                .map_err(|e| bad(CHAT_KEY, e.to_string()))?;
        }
        Ok(vocabulary)
    }

    /// The functional model the file describes, if it does (`path` names it in errors).
    pub fn functional_architecture(&self, path: &Path) -> Result<Option<FunctionalArchitecture>> {
        let Some(json) = self.metadata.get(FUNCTIONAL_KEY) else {
            return Ok(None);
        };
        serde_json::from_str(json).map(Some).map_err(|e| Error::Data {
            path: path.display().to_string(),
            message: format!("its '{FUNCTIONAL_KEY}' entry is not a model description wgml reads: {e}"),
        })
    }

    /// Merges the low-rank adapters of the model the file describes into its weights
    /// (PEFT's `merge_and_unload`, see [`crate::nn::lora`]) and drops them from its
    /// tensors and its description: the same model, plain, computing the same up to
    /// f32 rounding with fewer dispatches, as inference wants it. Returns false,
    /// changing nothing, when the model has no adapters (`path` names the file in
    /// errors).
    pub fn merge_adapters(&mut self, path: &Path) -> Result<bool> {
        let (key, json, lora) = if let Some(mut a) = self.architecture(path)? {
            let Some(lora) = a.model.lora.take() else {
                return Ok(false);
            };
            (ARCHITECTURE_KEY, architecture_json(&a)?, lora)
        } else if let Some(mut a) = self.functional_architecture(path)? {
            let Some(lora) = a.functional.lora.take() else {
                return Ok(false);
            };
            (FUNCTIONAL_KEY, architecture_json(&a)?, lora)
        } else {
            return Ok(false);
        };
        self.tensors =
            crate::nn::lora::merged(&self.tensors, &lora).map_err(|e| e.in_file(path, "its adapters"))?;
        self.metadata.insert(key.into(), json);
        Ok(true)
    }

    /// The `Sequential` model the file describes, if it does (`path` names it in errors).
    pub fn architecture(&self, path: &Path) -> Result<Option<Architecture>> {
        let Some(json) = self.metadata.get(ARCHITECTURE_KEY) else {
            return Ok(None);
        };
        serde_json::from_str(json).map(Some).map_err(|e| Error::Data {
            path: path.display().to_string(),
            message: format!("its '{ARCHITECTURE_KEY}' entry is not a model description wgml reads: {e}"),
        })
    }
}

/// Parses checkpoint bytes (`name` is used in messages).
pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Checkpoint> {
    let err = |message: String| Error::Data {
        path: name.to_string(),
        message,
    };
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| err(format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| err(format!("bad header: {e}")))?;
    let info = meta.metadata().clone().unwrap_or_default();
    let mut tensors = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    for n in names {
        let view = st.tensor(&n).map_err(|e| err(format!("tensor {n}: {e}")))?;
        if n.ends_with(&format!(".{BATCHES_TRACKED}")) && view.dtype() == Dtype::I64 {
            continue; // PyTorch's counter: nothing of the model depends on it
        }
        if view.dtype() != Dtype::F32 {
            return Err(err(format!(
                "tensor {n} is {:?}; wgml reads f32 checkpoints",
                view.dtype()
            )));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.push((n.clone(), view.shape().to_vec(), values));
    }
    Ok(Checkpoint {
        model: info.get(MODEL_KEY).cloned(),
        version: info.get(VERSION_KEY).cloned(),
        tensors,
        metadata: info,
    })
}

/// Reads a checkpoint file.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    from_bytes(&path.display().to_string(), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_names_shapes_values_and_metadata() {
        let t = vec![
            (
                "0.weight".to_string(),
                vec![2, 1, 1, 2],
                vec![1.0, -2.5, 3.25, 0.0],
            ),
            ("0.bias".to_string(), vec![2], vec![0.5, f32::MIN_POSITIVE]),
        ];
        let dir = std::env::temp_dir().join(format!("wgml-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.safetensors");
        save(&path, "cnn", &t, 7).unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.model.as_deref(), Some("cnn"));
        assert_eq!(c.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        let mut want = t.clone();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(c.tensors, want);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn batch_norms_carry_pytorchs_step_counter_which_reading_skips() {
        let t = vec![
            ("1.running_mean".to_string(), vec![2], vec![0.5, -0.5]),
            ("1.running_var".to_string(), vec![2], vec![1.5, 2.0]),
        ];
        let bytes = to_bytes("m", &t, 42).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let counter = st.tensor("1.num_batches_tracked").unwrap();
        assert_eq!(counter.dtype(), Dtype::I64);
        assert!(counter.shape().is_empty());
        assert_eq!(counter.data(), 42i64.to_le_bytes());
        assert_eq!(from_bytes("x", &bytes).unwrap().tensors, t);
        // Any other non-f32 tensor is refused, naming it.
        let other = TensorView::new(Dtype::I64, vec![], &[0u8; 8]).unwrap();
        let bytes = safetensors::serialize([("1.steps".to_string(), other)], None).unwrap();
        let e = from_bytes("x", &bytes).unwrap_err().to_string();
        assert!(e.contains("1.steps") && e.contains("I64"), "{e}");
    }

    /// Every kind of layer, padding, activation, loss and optimizer survives the
    /// trip through the `architecture` entry.
    #[test]
    fn architectures_round_trip_through_json() {
        use crate::kernels::conv::Padding;
        use crate::nn::{Layer, LayerActivation as A};
        let model = Sequential::new(&[3, 32, 32])
            .add(Layer::Conv2D {
                filters: 8,
                kernel: (3, 5),
                stride: (2, 1),
                padding: Padding::Same,
                activation: A::Tanh,
                use_bias: false,
                trainable: true,
            })
            .add(Layer::Conv2D {
                filters: 4,
                kernel: (3, 3),
                stride: (1, 1),
                padding: Padding::Explicit(1, 2),
                activation: A::Linear,
                use_bias: true,
                trainable: true,
            })
            .add(Layer::batch_norm())
            .add(Layer::Activation(A::Sigmoid))
            .add(Layer::max_pool(2))
            .add(Layer::avg_pool(2))
            .add(Layer::global_avg_pool())
            .add(Layer::dropout(0.25))
            .add(Layer::Flatten)
            .add(Layer::dense(7, A::Relu).without_bias())
            .add(Layer::dense(3, A::Softmax));
        for (loss, optimizer) in [
            (Loss::SparseCategoricalCrossentropy, Optimizer::adam(1e-3)),
            (Loss::BinaryCrossentropy, Optimizer::sgd(0.1, 0.9)),
            (Loss::MeanSquaredError, Optimizer::rmsprop(0.01)),
        ] {
            let a = Architecture {
                model: model.clone(),
                loss,
                optimizer,
                class_names: vec!["cat".into(), "dog".into()],
            };
            let bytes = checkpoint_bytes(
                "custom",
                &[],
                0,
                vec![(ARCHITECTURE_KEY, architecture_json(&a).unwrap())],
            )
            .unwrap();
            let c = from_bytes("x", &bytes).unwrap();
            assert_eq!(c.architecture(Path::new("x")).unwrap(), Some(a));
        }
        // Files without one say so; a broken one is an error naming the file.
        let plain = from_bytes("x", &to_bytes("m", &[], 0).unwrap()).unwrap();
        assert_eq!(plain.architecture(Path::new("x")).unwrap(), None);
        let mut broken = plain;
        broken
            .metadata
            .insert(ARCHITECTURE_KEY.into(), "{\"model\": 3}".into());
        let e = broken
            .architecture(Path::new("f.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.safetensors") && e.contains("architecture"), "{e}");
    }

    #[test]
    fn garbage_and_truncated_files_are_errors() {
        assert!(from_bytes("x", b"not a checkpoint").is_err());
        let bytes = to_bytes("m", &[("a".into(), vec![3], vec![1.0, 2.0, 3.0])], 0).unwrap();
        let e = from_bytes("x", &bytes[..bytes.len() - 4])
            .unwrap_err()
            .to_string();
        assert!(e.contains("x:"), "{e}");
    }
}
