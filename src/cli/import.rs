//! `wgml import`: a pretrained model from another program's files, saved as a
//! wgml checkpoint that `generate`, `eval` and `train` (fine-tuning) take.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use wgml::Result;
use wgml::checkpoint;

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// A Hugging Face GPT-2 folder: config.json, model.safetensors and
    /// tokenizer.json (what `save_pretrained` writes; the Hub's gpt2, gpt2-medium,
    /// gpt2-large, gpt2-xl and distilgpt2).
    pub folder: PathBuf,
    /// The wgml checkpoint to write.
    #[arg(long)]
    pub save: PathBuf,
    /// Positions the wgml model reads (default: GPT-2's own, 1,024); fewer keep
    /// the first rows of the position embedding and cost less per token.
    #[arg(long, value_name = "N")]
    pub context: Option<usize>,
    /// Learning rate of the model's Adam when it is fine-tuned without --lr.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// A PEFT LoRA adapter folder for this GPT-2 (adapter_config.json and
    /// adapter_model.safetensors, what PeftModel.save_pretrained writes): the
    /// checkpoint keeps the adapters beside the frozen base, so `generate` runs the
    /// adapted model and `train` goes on training the adapters.
    #[arg(long, value_name = "DIR")]
    pub peft: Option<PathBuf>,
}

pub fn run(args: &ImportArgs) -> Result<ExitCode> {
    let start = std::time::Instant::now();
    let mut imported = wgml::import::import_gpt2(&args.folder, args.context, args.lr)?;
    let adapter = match &args.peft {
        Some(dir) => Some(wgml::peft::add_adapter(&mut imported, dir)?),
        None => None,
    };
    checkpoint::save_functional_tensors(
        &args.save,
        &imported.kind,
        &imported.architecture,
        &imported.tensors,
        &imported.vocabulary,
    )?;
    println!("{}", imported.summary);
    if let Some(line) = adapter {
        println!("{line}");
    }
    let classifier = wgml::export::gpt2_classifier_of(&imported.architecture.functional).is_some();
    if classifier {
        println!(
            "saved {} in {:.1} s: classify texts with `wgml predict --weights {0} FILE.txt`, fine-tune \
             it with `wgml train --model {0} --data DIR|FILE.csv`",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "saved {} in {:.1} s: continue a text with `wgml generate --weights {0}`, fine-tune it \
             with `wgml train --model {0} --data text:PATH`",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
