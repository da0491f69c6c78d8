//! The seed MLP on the embedded MNIST subset: Flatten → Dense(128, relu) →
//! Dense(10, softmax), Adam, batch 128, 21 epochs.
//!
//! `cargo run --release --example mnist_mlp`

use wgml::data::Dataset;
use wgml::nn::zoo;
use wgml::{Context, ContextOptions, train};

fn main() -> wgml::Result<()> {
    let ctx = Context::new(&ContextOptions::default())?;
    let data = Dataset::mnist_10k()?;
    let recipe = zoo::mlp();
    println!("{}", recipe.model.summary(recipe.loss)?);
    let mut model = recipe.model.compile(&ctx, recipe.loss, recipe.optimizer, 42)?;
    train::fit(&mut model, &ctx, &data.train, &recipe.fit)?;
    let e = train::evaluate(&mut model, &ctx, &data.test, 256)?;
    println!(
        "test loss: {:.4} - test accuracy: {:.4}",
        e.loss,
        e.accuracy.unwrap_or(0.0)
    );
    Ok(())
}
