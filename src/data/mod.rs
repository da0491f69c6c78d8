//! Datasets: the IDX reader, MNIST-style folders, the embedded MNIST subset,
//! Fashion-MNIST, text for byte-level language models, folders of labelled text
//! documents (text classification), and the small synthetic sets of the seed
//! examples.

pub mod augment;
pub mod chat;
pub mod dataset;
pub mod idx;
pub mod image_folder;
pub mod split_files;
pub mod squad;
pub mod subset;
pub mod tagged_words;
pub mod text;
pub mod text_classes;
pub mod text_table;

pub use dataset::{Dataset, FASHION_MNIST_DIR, NO_LABEL, Split, Targets};
