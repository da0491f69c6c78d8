//! The seed regression: 3 inputs → Dense(2, relu) → Dense(1), mean squared error,
//! plain gradient descent over the whole training set, 1000 epochs; prints the loss
//! every 100 epochs, then the test loss.
//!
//! `cargo run --release --example regression`

use wgml::data::Dataset;
use wgml::nn::zoo;
use wgml::{Context, ContextOptions, train};

fn main() -> wgml::Result<()> {
    let ctx = Context::new(&ContextOptions::default())?;
    let data = Dataset::linear_regression(7);
    let mut recipe = zoo::regression();
    recipe.fit.verbose = false;
    let mut model = recipe.model.compile(&ctx, recipe.loss, recipe.optimizer, 42)?;
    let h = train::fit(&mut model, &ctx, &data.train, &recipe.fit)?;
    for s in h.epochs.iter().filter(|s| s.epoch % 100 == 0) {
        println!("epoch {:>4}: loss {:.6}", s.epoch, s.loss);
    }
    let e = train::evaluate(&mut model, &ctx, &data.test, 50)?;
    println!("test loss (MSE): {:.6}", e.loss);
    Ok(())
}
