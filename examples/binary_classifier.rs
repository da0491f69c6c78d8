//! The seed binary classifier: 2 inputs → Dense(10, sigmoid) → Dense(1, sigmoid),
//! binary cross-entropy, Adam, on 100 samples of two Gaussian blobs (80 train /
//! 20 test). Prints accuracy, precision, recall and F1 on the test samples.
//!
//! `cargo run --release --example binary_classifier`

use wgml::data::Dataset;
use wgml::nn::zoo;
use wgml::{Context, ContextOptions, train};

fn main() -> wgml::Result<()> {
    let ctx = Context::new(&ContextOptions::default())?;
    let data = Dataset::two_blobs(7);
    let mut recipe = zoo::binary();
    recipe.fit.verbose = false;
    let mut model = recipe.model.compile(&ctx, recipe.loss, recipe.optimizer, 42)?;
    let h = train::fit(&mut model, &ctx, &data.train, &recipe.fit)?;
    if let Some(last) = h.epochs.last() {
        println!("after {} epochs: training loss {:.4}", last.epoch, last.loss);
    }
    let e = train::evaluate(&mut model, &ctx, &data.test, 32)?;
    // Class 1 is the positive class.
    let pos = &e.per_class[1];
    println!("accuracy:  {:.4}", e.accuracy.unwrap_or(0.0));
    println!("precision: {:.4}", pos.precision);
    println!("recall:    {:.4}", pos.recall);
    println!("f1:        {:.4}", pos.f1);
    Ok(())
}
