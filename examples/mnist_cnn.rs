//! The seed CNN on the embedded MNIST subset:
//! Conv2D(32, 3×3, relu) → MaxPool(2×2) → Flatten → Dense(64, relu) → Dense(10, softmax),
//! Adam lr 0.001, batch 32, validation split 0.2, early stopping (patience 5,
//! restore best), up to 10 epochs. Prints test loss, accuracy and the confusion matrix.
//!
//! `cargo run --release --example mnist_cnn`

use wgml::data::Dataset;
use wgml::nn::zoo;
use wgml::{Context, ContextOptions, train};

fn main() -> wgml::Result<()> {
    let ctx = Context::new(&ContextOptions::default())?;
    let data = Dataset::mnist_10k()?;
    let recipe = zoo::cnn();
    println!("{}", recipe.model.summary(recipe.loss)?);
    let mut model = recipe.model.compile(&ctx, recipe.loss, recipe.optimizer, 42)?;
    train::fit(&mut model, &ctx, &data.train, &recipe.fit)?;
    let e = train::evaluate(&mut model, &ctx, &data.test, 256)?;
    println!("test loss: {:.4}", e.loss);
    println!("test accuracy: {:.4}", e.accuracy.unwrap_or(0.0));
    println!("confusion matrix (rows: true, columns: predicted):");
    for row in &e.confusion {
        println!("{}", row.iter().map(|c| format!("{c:>5}")).collect::<String>());
    }
    Ok(())
}
