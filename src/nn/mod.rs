//! Keras-style layers and models on top of the graph executor.

pub(crate) mod build;
pub mod dynamic_padding;
pub mod functional;
pub mod gan;
pub mod generate;
pub mod graph_model;
pub mod layers;
pub mod lora;
pub mod model;
pub mod summary;
pub mod transfer;
pub mod vae;
pub mod zoo;

pub use functional::{Functional, FunctionalModel, GraphOp};
pub use gan::{Gan, GanModel, GanStats};
pub use graph_model::GraphModel;
pub use layers::{Layer, LayerActivation, RopeScaling};
pub use lora::LoraConfig;
pub use model::{Model, Sequential};
pub use summary::{LayerSummary, Summary};
pub use transfer::{Freeze, InitReport};
pub use vae::{Vae, VaeLosses, VaeModel};

/// Training losses (defined by the graph, which lowers them; see
/// [`crate::graph::Loss`]).
pub use crate::graph::Loss;
