//! A model's summary, as Keras' `model.summary()`: one row per layer with its
//! output shape (per sample, channels first), its parameter count and the
//! PyTorch `state_dict` names its parameters have in checkpoints.

use std::fmt;

use crate::error::Result;
use crate::graph::{Graph, Op};
use crate::nn::functional::LayerOrOp;
use crate::nn::{Functional, Layer, LayerActivation, Loss, Sequential};

/// One layer of a [`Summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSummary {
    /// The layer's name in messages, e.g. `Dense #4`.
    pub name: String,
    /// Its activation, when it has one that is not linear.
    pub activation: Option<LayerActivation>,
    /// Output shape of one sample.
    pub output_shape: Vec<usize>,
    /// Every value it holds, trainable or not (as Keras' `Param #`).
    pub params: usize,
    /// Of those, the ones no optimizer updates (moving statistics).
    pub non_trainable: usize,
    /// Checkpoint names of its parameters (`4.weight`, `4.bias`).
    pub param_names: Vec<String>,
    /// Checkpoint names of the earlier layers' parameters it reads as its own
    /// (tied: `wte.weight` for a head tied to the token embedding); counted in
    /// their own layers' rows, not here.
    pub tied: Vec<String>,
    /// The layers it reads, in a functional model (empty in a `Sequential`).
    pub inputs: Vec<String>,
}

/// Every layer of a model, in order, with the totals.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Shape of one input sample.
    pub input_shape: Vec<usize>,
    /// One row per layer, in order.
    pub layers: Vec<LayerSummary>,
}

impl Summary {
    /// Number of parameters, trainable or not.
    pub fn total_params(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// Number of non-trainable parameters (moving statistics).
    pub fn non_trainable_params(&self) -> usize {
        self.layers.iter().map(|l| l.non_trainable).sum()
    }
}

/// The row of layer `name` of `graph`: its nodes' parameters, and its output's
/// shape (`input_shape` for a layer with no node of its own: a linear Activation,
/// or a final softmax or sigmoid folded into the loss).
fn row(graph: &Graph, name: String, layer: Option<&Layer>, input_shape: &[usize]) -> LayerSummary {
    let ids = || {
        (0..graph.nodes.len())
            .filter(|&i| graph.nodes[i].layer == name && !matches!(graph.nodes[i].op, Op::LossTerm { .. }))
    };
    let nodes = || ids().map(|i| &graph.nodes[i]);
    let output_shape = nodes()
        .rfind(|n| n.batched())
        .map_or_else(|| input_shape.to_vec(), |n| n.shape.clone());
    let params = nodes()
        .filter(|n| !n.batched())
        .map(|n| n.shape.iter().product::<usize>())
        .sum();
    let non_trainable = nodes()
        .filter(|n| matches!(n.op, Op::Param { trainable: false, .. }))
        .map(|n| n.shape.iter().product::<usize>())
        .sum();
    let param_names = nodes()
        .filter_map(|n| match &n.op {
            Op::Param { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    // Parameters of other layers this one's ops read.
    let mut tied: Vec<String> = Vec::new();
    for i in ids().flat_map(|id| graph.inputs(id)) {
        let owner = &graph.nodes[i];
        if let Op::Param { name: full, .. } = &owner.op
            && owner.layer != name
            && !tied.contains(full)
        {
            tied.push(full.clone());
        }
    }
    let activation = match layer {
        Some(
            Layer::Dense { activation, .. }
            | Layer::Conv2D { activation, .. }
            | Layer::Conv2DTranspose { activation, .. }
            | Layer::Activation(activation),
        ) => Some(*activation),
        _ => None,
    }
    .filter(|a| *a != LayerActivation::Linear);
    LayerSummary {
        name,
        activation,
        output_shape,
        params,
        non_trainable,
        param_names,
        tied,
        inputs: Vec::new(),
    }
}

impl Sequential {
    /// The layers with their output shapes and parameter counts, for training
    /// with `loss`. Errors as [`Sequential::graph`] does, naming the layer whose
    /// shapes do not fit.
    pub fn summary(&self, loss: Loss) -> Result<Summary> {
        let (graph, _) = self.graph(loss)?;
        let mut shape = self.input_shape.clone();
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let r = row(
                    &graph,
                    format!("{} #{}", layer.kind(), i + 1),
                    Some(layer),
                    &shape,
                );
                shape = r.output_shape.clone();
                r
            })
            .collect();
        Ok(Summary {
            input_shape: self.input_shape.clone(),
            layers,
        })
    }
}

impl Functional {
    /// The layers with the layers they read, their output shapes and parameter
    /// counts. Errors as [`Functional::graph`] does, naming the layer at fault.
    pub fn summary(&self) -> Result<Summary> {
        let built = self.graph()?;
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let layer = match &l.what {
                    LayerOrOp::Layer(layer) => Some(layer),
                    LayerOrOp::Op(_) => None,
                };
                let input_shape = l
                    .inputs
                    .first()
                    .and_then(|i| built.nodes.get(i))
                    .map_or(&[][..], |&id| built.graph.shape(id));
                LayerSummary {
                    inputs: l.inputs.clone(),
                    ..row(&built.graph, l.name.clone(), layer, input_shape)
                }
            })
            .collect();
        Ok(Summary {
            input_shape: self.input.shape.clone(),
            layers,
        })
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count for people: `164 B`, `1.5 KiB`, `1.32 MiB`.
fn size(bytes: usize) -> String {
    const KIB: f64 = 1024.0;
    match bytes as f64 {
        b if b < KIB => format!("{bytes} B"),
        b if b < KIB * KIB => format!("{:.1} KiB", b / KIB),
        b => format!("{:.2} MiB", b / (KIB * KIB)),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 4]> = self
            .layers
            .iter()
            .map(|l| {
                let mut name = match l.activation {
                    Some(a) => format!("{} ({})", l.name, format!("{a:?}").to_lowercase()),
                    None => l.name.clone(),
                };
                if !l.inputs.is_empty() {
                    name = format!("{name} ← {}", l.inputs.join(", "));
                }
                [
                    name,
                    format!("{:?}", l.output_shape),
                    grouped(l.params),
                    l.param_names
                        .iter()
                        .cloned()
                        .chain(l.tied.iter().map(|t| format!("{t} (tied)")))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        let header = ["Layer", "Output shape", "Params", "Checkpoint names"];
        let width = |c: usize| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        writeln!(f, "Input shape {:?} per sample", self.input_shape)?;
        let line = |r: [&str; 4]| format!("{:<w0$}  {:<w1$}  {:>w2$}  {}", r[0], r[1], r[2], r[3]);
        writeln!(f, "{}", line(header).trim_end())?;
        for r in &rows {
            writeln!(f, "{}", line([&r[0], &r[1], &r[2], &r[3]]).trim_end())?;
        }
        let total = self.total_params();
        let fixed = self.non_trainable_params();
        write!(
            f,
            "Total params: {} ({} of f32), ",
            grouped(total),
            size(total * 4)
        )?;
        if fixed == 0 {
            write!(f, "all trainable")
        } else {
            write!(
                f,
                "{} trainable, {} non-trainable",
                grouped(total - fixed),
                grouped(fixed)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::zoo;

    /// The summary of an example model's JSON.
    fn example(text: &str) -> Summary {
        let a: crate::checkpoint::FunctionalArchitecture = serde_json::from_str(text).unwrap();
        a.functional.summary().unwrap()
    }

    /// The row of the layer called `name`.
    fn layer<'s>(s: &'s Summary, name: &str) -> &'s LayerSummary {
        s.layers.iter().find(|l| l.name == name).unwrap()
    }

    /// (name, output shape, parameters) of every row.
    fn rows(s: &Summary) -> Vec<(&str, &[usize], usize)> {
        s.layers
            .iter()
            .map(|l| (l.name.as_str(), l.output_shape.as_slice(), l.params))
            .collect()
    }

    #[test]
    fn the_seed_cnn_summarises_as_keras_counts_it() {
        let r = zoo::cnn();
        let s = r.model.summary(r.loss).unwrap();
        let shapes: Vec<&[usize]> = s.layers.iter().map(|l| l.output_shape.as_slice()).collect();
        assert_eq!(
            shapes,
            vec![&[32, 26, 26][..], &[32, 13, 13], &[5408], &[64], &[10]]
        );
        // Keras' summary of the same model: 320, 0, 0, 346,176, 650; 347,146 in all.
        let params: Vec<usize> = s.layers.iter().map(|l| l.params).collect();
        assert_eq!(params, vec![320, 0, 0, 346_176, 650]);
        assert_eq!(s.total_params(), 347_146);
        assert_eq!(s.layers[3].param_names, vec!["4.weight", "4.bias"]);
        let text = s.to_string();
        assert!(
            text.contains("Dense #4 (relu)") && text.contains("346,176"),
            "{text}"
        );
        assert!(
            text.ends_with("Total params: 347,146 (1.32 MiB of f32), all trainable"),
            "{text}"
        );
    }

    #[test]
    fn batch_normalization_counts_as_keras_does() {
        // Keras: Conv2D(8, 3) 80; BatchNormalization 32 (16 trainable, 16 not);
        // Flatten; Dense(10) 5,130; BatchNormalization 40 (20 + 20); Dense(3) 33.
        let m = Sequential::new(&[1, 10, 10])
            .add(Layer::conv2d(8, 3, LayerActivation::Linear))
            .add(Layer::batch_norm())
            .add(Layer::Activation(LayerActivation::Relu))
            .add(Layer::Flatten)
            .add(Layer::dense(10, LayerActivation::Linear))
            .add(Layer::batch_norm())
            .add(Layer::dense(3, LayerActivation::Softmax));
        let s = m.summary(Loss::SparseCategoricalCrossentropy).unwrap();
        let params: Vec<usize> = s.layers.iter().map(|l| l.params).collect();
        assert_eq!(params, vec![80, 32, 0, 0, 5_130, 40, 33]);
        assert_eq!(s.non_trainable_params(), 36);
        assert_eq!(s.layers[1].output_shape, vec![8, 8, 8]);
        assert_eq!(
            s.layers[1].param_names,
            vec!["1.weight", "1.bias", "1.running_mean", "1.running_var"]
        );
        assert_eq!(s.layers[5].param_names[0], "5.weight");
        let text = s.to_string();
        assert!(
            text.ends_with("Total params: 5,315 (20.8 KiB of f32), 5,279 trainable, 36 non-trainable"),
            "{text}"
        );
    }

    #[test]
    fn a_functional_model_summarises_each_layer_with_what_it_reads() {
        let s = example(include_str!("../../examples/models/residual.json"));
        assert_eq!(
            rows(&s),
            [
                ("flat", &[784][..], 0),
                ("stem", &[128], 100_480),
                ("block.0", &[128], 16_512),
                ("block.2", &[128], 16_512),
                ("skip", &[128], 0),
                ("act", &[128], 0),
                ("head", &[10], 1_290),
            ]
        );
        let out = s.to_string();
        assert!(out.contains("skip ← stem, block.2"), "{out}");
        assert!(out.contains("head (softmax) ← act"), "{out}");
        // The VAE's loss term named like a layer does not count as that layer.
        let vae = crate::nn::Vae::MNIST.functional().summary().unwrap();
        assert_eq!(layer(&vae, "reconstruction").output_shape, [784]);
    }

    #[test]
    fn the_example_conv_vae_counts_as_keras_does() {
        let s = example(include_str!("../../examples/models/conv_vae.json"));
        // Keras' convolutional VAE example: encoder 69,076, decoder 65,089.
        assert_eq!(s.total_params(), 69_076 + 65_089);
        assert_eq!(layer(&s, "encoder.2").output_shape, [64, 7, 7]);
        assert_eq!(layer(&s, "decoder.3").output_shape, [64, 14, 14]);
        assert_eq!(layer(&s, "decoder.7").output_shape, [1, 28, 28]);
        let t = layer(&s, "decoder.5");
        assert_eq!((t.params, t.activation), (18_464, Some(LayerActivation::Relu)));
    }

    #[test]
    fn the_example_transformer_counts_as_keras_does() {
        let s = example(include_str!("../../examples/models/transformer.json"));
        // Keras: MultiHeadAttention(4, 16) on 64 features holds four 64·64 + 64
        // projections; LayerNormalization a scale and a shift per feature.
        assert_eq!(
            rows(&s),
            [
                ("rows", &[28, 28][..], 0),
                ("embed", &[28, 64], 1_856),
                ("pos", &[28, 64], 1_792),
                ("att", &[28, 64], 16_640),
                ("res1", &[28, 64], 0),
                ("ln1", &[28, 64], 128),
                ("ff.0", &[28, 128], 8_320),
                ("ff.1", &[28, 64], 8_256),
                ("res2", &[28, 64], 0),
                ("ln2", &[28, 64], 128),
                ("pool", &[64], 0),
                ("head", &[10], 650),
            ]
        );
        assert_eq!(
            layer(&s, "att").param_names,
            [
                "att.query.weight",
                "att.query.bias",
                "att.key.weight",
                "att.key.bias",
                "att.value.weight",
                "att.value.bias",
                "att.output.weight",
                "att.output.bias"
            ]
        );
        assert_eq!(s.total_params(), 37_770);
    }

    #[test]
    fn the_example_vit_counts_as_keras_does() {
        let s = example(include_str!("../../examples/models/vit.json"));
        let row = |name: &str| {
            let l = layer(&s, name);
            (l.output_shape.clone(), l.params)
        };
        // 4x4 patches of one channel into 64 filters; 49 tokens of 64 features.
        assert_eq!(row("patches"), (vec![64, 7, 7], 1_088));
        assert_eq!(row("tokens"), (vec![49, 64], 0));
        assert_eq!(row("pos"), (vec![49, 64], 3_136));
        assert_eq!(row("att"), (vec![49, 64], 16_640));
        assert_eq!(row("mlp.0"), (vec![49, 128], 8_320));
        assert_eq!(row("pool"), (vec![64], 0));
        assert_eq!(s.total_params(), 38_474);
        assert!(s.to_string().contains("mlp.0 (gelu) ← ln2"), "{s}");
    }

    /// GPT-2 small: Hugging Face's 124,439,808 parameters; the head reads the
    /// token embedding (tied), counted once, in its own row.
    #[test]
    fn the_example_gpt2_small_counts_as_hugging_face_does() {
        let s = example(include_str!("../../examples/models/gpt2_small.json"));
        assert_eq!(s.total_params(), 124_439_808);
        assert_eq!(layer(&s, "wte").params, 50_257 * 768);
        assert_eq!(
            (layer(&s, "lm_head").params, &layer(&s, "lm_head").tied[..]),
            (0, &["wte.weight".to_string()][..])
        );
        assert!(s.to_string().contains("wte.weight (tied)"), "{s}");
        assert_eq!(layer(&s, "h.11.attn").params, 4 * (768 * 768 + 768));
        assert!(
            s.to_string().contains("h.0.mlp.c_fc (gelutanh) ← h.0.ln_2"),
            "{s}"
        );
    }

    #[test]
    fn digits_group_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(size(44), "44 B");
        assert_eq!(size(164 * 1024 + 512), "164.5 KiB");
    }
}
