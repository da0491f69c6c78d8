//! `wgml export`: a wgml checkpoint written as another program's files (a GPT-2
//! as a Hugging Face folder), the way back of `wgml import`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use wgml::Result;
use wgml::checkpoint;
use wgml::import::bert::Task;

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// A wgml checkpoint of a GPT-2 (one `wgml import` wrote, fine-tuned or not,
    /// or one trained from examples/models/gpt2_small.json) or of a BERT, RoBERTa,
    /// DistilBERT or ELECTRA classifier (written as its *ForSequenceClassification).
    pub checkpoint: PathBuf,
    /// The folder to write config.json, model.safetensors and tokenizer.json to
    /// (created if missing), which transformers' GPT2LMHeadModel.from_pretrained
    /// reads. A checkpoint with LoRA adapters is written with the adapters merged
    /// into the weights (PEFT's merge_and_unload). A FILE.safetensors instead: the
    /// wgml checkpoint of any model trained with --lora, its adapters merged (a
    /// plain model, which PyTorch's strict load_state_dict reads).
    #[arg(long)]
    pub save: PathBuf,
    /// Write the checkpoint's LoRA adapters alone, as a PEFT adapter folder
    /// (adapter_config.json, adapter_model.safetensors) that
    /// PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(BASE), FOLDER)
    /// loads, instead of the whole merged model.
    #[arg(long)]
    pub peft: bool,
}

pub fn run(args: &ExportArgs) -> Result<ExitCode> {
    let start = std::time::Instant::now();
    if args.save.extension().is_some_and(|e| e == "safetensors") {
        if args.peft {
            return Err(wgml::Error::invalid(
                "--peft writes an adapter folder: give --save a folder, not a .safetensors file",
            ));
        }
        checkpoint::save_merged_adapters(&args.checkpoint, &args.save)?;
        println!(
            "saved {} in {:.1} s: the model with its LoRA adapters merged into the weights",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let c = checkpoint::load(&args.checkpoint)?;
    let head = c
        .functional_architecture(&args.checkpoint)?
        .and_then(|a| wgml::import::bert::encoder_head_of(&a.functional));
    let bert = head.is_some();
    // The Auto class that loads the folder: a classifier of texts or of
    // tokens, or a question answerer.
    let auto = head.map_or(Task::TextClassification, |h| h.task).auto_class();
    let llama = c
        .functional_architecture(&args.checkpoint)?
        .is_some_and(|a| a.functional.layers.iter().any(|l| l.name == "model.embed_tokens"));
    if llama {
        if args.peft {
            let summary = wgml::peft::decoder::write_adapter(&c, &args.checkpoint, &args.save)?;
            println!("{summary}");
            println!(
                "saved {} in {:.1} s: in Python, PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), \"{0}\")",
                args.save.display(),
                start.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let summary = wgml::export::llama::export_llama(&c, &args.checkpoint, &args.save)?;
        println!("{summary}");
        println!(
            "saved {} in {:.1} s: in Python, AutoModelForCausalLM.from_pretrained(\"{0}\")",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.peft && bert {
        let summary = wgml::peft::encoder::write_adapter(&c, &args.checkpoint, &args.save)?;
        println!("{summary}");
        println!(
            "saved {} in {:.1} s: in Python, PeftModel.from_pretrained({auto}.from_pretrained(BASE, num_labels=N), \"{0}\")",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.peft {
        let summary = wgml::peft::write_adapter(&c, &args.checkpoint, &args.save)?;
        println!("{summary}");
        println!(
            "saved {} in {:.1} s: in Python, PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(BASE), \"{0}\")",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if bert {
        let summary = wgml::export::bert::export_bert(&c, &args.checkpoint, &args.save)?;
        println!("{summary}");
        println!(
            "saved {} in {:.1} s: in Python, {auto}.from_pretrained(\"{0}\")",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let exported = wgml::export::export_gpt2(&c, &args.checkpoint, &args.save)?;
    println!("{}", exported.summary);
    println!(
        "saved {} in {:.1} s: in Python, {}.from_pretrained(\"{0}\")",
        args.save.display(),
        start.elapsed().as_secs_f64(),
        if exported.classifier {
            "AutoModelForSequenceClassification"
        } else {
            "GPT2LMHeadModel"
        }
    );
    Ok(ExitCode::SUCCESS)
}
