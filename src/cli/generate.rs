//! `wgml generate` (continue a text, or answer one message with `--chat`) and
//! `wgml chat` (a conversation read line by line from standard input).

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use wgml::data::chat::{ChatSettings, Message};
use wgml::data::text::{TextStream, Vocabulary};
use wgml::nn::generate::{Sampling, Session, lm_shape};
use wgml::{Error, Result};

use super::GpuArgs;
use super::eval::{Loaded, load_model};

/// How the next token is drawn, and from which seed.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature: 0 takes the most probable token every time; below 1
    /// sharper, above 1 more varied. Default: the model's generation_config.json
    /// (imported with it; do_sample false is 0), else 0.8.
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Draw among the K most probable tokens only.
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Nucleus sampling: draw among the most probable tokens whose probabilities
    /// first add up to P (after the temperature and top-k), in (0, 1].
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,
    /// Hugging Face's repetition_penalty: the logit of every token already in the
    /// text is divided by R when positive, multiplied by it otherwise (R > 1
    /// discourages repeats; 1.2 is a common choice).
    #[arg(long, value_name = "R")]
    pub repetition_penalty: Option<f32>,
    /// Hugging Face's no_repeat_ngram_size: never draw a token that would repeat an
    /// N-gram of the text.
    #[arg(long, value_name = "N")]
    pub no_repeat_ngram: Option<usize>,
    /// Hugging Face's min_p: draw only among the tokens at least P times as
    /// probable as the most probable one (after the temperature, top-k and
    /// top-p), in (0, 1]; 0.05 to 0.1 are common choices.
    #[arg(long, value_name = "P")]
    pub min_p: Option<f32>,
    /// Seed of the draws.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Go on past the tokens that end a text (the stop ids imported from
    /// generation_config.json, e.g. Llama 3's <|eot_id|>, else the tokenizer's
    /// end of text, GPT-2's <|endoftext|>), where generation otherwise stops
    /// (without printing them).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Run the whole window for every token instead of keeping each attention's
    /// keys and values (the same tokens, slower; for comparing the two).
    #[arg(long)]
    pub no_cache: bool,
}

/// The temperature where neither an option nor the model says one.
const TEMPERATURE: f32 = 0.8;

impl SamplingArgs {
    /// The draw's settings for `vocabulary`'s tokens, checked: the options,
    /// and where one is not given what the model's `generation_config.json`
    /// says (`do_sample: false` draws greedily), as transformers' `generate`
    /// takes them; a note on stderr names the model's.
    fn sampling(&self, vocabulary: &Vocabulary) -> Result<Sampling> {
        let model = vocabulary.chat().map(|c| c.sampling).unwrap_or_default();
        let greedy = (model.do_sample == Some(false)).then_some(0.0);
        let sampling = Sampling {
            temperature: self
                .temperature
                .or(greedy)
                .or(model.temperature)
                .unwrap_or(TEMPERATURE),
            top_k: self.top_k.or(model.top_k),
            top_p: self.top_p.or(model.top_p),
            vocabulary: Some(vocabulary.size()),
            repetition_penalty: self.repetition_penalty.or(model.repetition_penalty),
            no_repeat_ngram: self.no_repeat_ngram,
            min_p: self.min_p.or(model.min_p),
        };
        sampling.validate()?;
        if !model.is_empty() {
            eprintln!(
                "note: the model's generation_config.json says {} (options override it)",
                model.to_json()
            );
        }
        Ok(sampling)
    }
}

#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    /// Safetensors checkpoint of a language model, written by `wgml train --data
    /// text:FILE --save` or `wgml import` (its tokenizer comes with it).
    #[arg(long)]
    pub weights: PathBuf,
    /// The text to continue.
    #[arg(long, default_value = "The ")]
    pub prompt: String,
    /// Tokens to generate (bytes, or the tokenizer's tokens).
    #[arg(long, default_value_t = 200)]
    pub tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop once the generated text contains TEXT (which is printed); may be
    /// given several times.
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Read the prompt as a user's message to an instruct model: write it in the
    /// tokenizer's chat template (imported with it), open the assistant's turn,
    /// and print the reply alone.
    #[arg(long)]
    pub chat: bool,
    /// With --chat: a system message before the user's.
    #[arg(long, value_name = "TEXT", requires = "chat")]
    pub system: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    /// Safetensors checkpoint of an instruct model imported with its chat
    /// template (`wgml import FOLDER`).
    #[arg(long)]
    pub weights: PathBuf,
    /// A system message before the conversation.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Most tokens of one reply.
    #[arg(long, default_value_t = 512)]
    pub tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// The language model in `weights` and its vocabulary, checked to give every
/// token the vocabulary has.
fn load_language_model(ctx: &wgml::Context, weights: &Path) -> Result<(wgml::nn::Model, Vocabulary)> {
    let Loaded {
        name,
        model,
        vocabulary,
        ..
    } = load_model(ctx, None, weights)?;
    let (_, outputs) = lm_shape(&model).map_err(|e| e.in_file(weights, ""))?;
    if outputs < vocabulary.size() {
        return Err(Error::invalid(format!(
            "model '{name}' has {outputs} outputs per position but reads text as {} \
             (the checkpoint's): it cannot give every token",
            vocabulary.describe()
        )));
    }
    Ok((model, vocabulary))
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::Io {
        path: "standard output".into(),
        source: e,
    }
}

/// Prints a generated text as its tokens come and says when it ends: at a stop
/// id (not printed), or once the text holds one of the stop texts (printed).
struct Printer<'v, W: Write> {
    out: W,
    stream: TextStream<'v>,
    stop_ids: Vec<u32>,
    stops: &'v [String],
    /// What was printed.
    text: Vec<u8>,
    /// The stop id that ended the text, if one did.
    ended: Option<u32>,
    /// The stop text that ended it, if one did.
    stopped: Option<String>,
    failed: Option<Error>,
}

impl<'v, W: Write> Printer<'v, W> {
    /// A printer of what follows `read` (token ids the stream decoder sees
    /// first and prints nothing of, so the first new token decodes as it follows
    /// them: a SentencePiece space, a character they began).
    fn new(
        vocabulary: &'v Vocabulary,
        read: &[u32],
        args: &SamplingArgs,
        stops: &'v [String],
        out: W,
    ) -> Result<Self> {
        let mut stream = vocabulary.stream();
        for &id in read {
            stream.step(id)?;
        }
        let stop_ids = if args.ignore_eos {
            Vec::new()
        } else {
            vocabulary.stop_ids()
        };
        Ok(Printer {
            out,
            stream,
            stop_ids,
            stops,
            text: Vec::new(),
            ended: None,
            stopped: None,
            failed: None,
        })
    }

    fn token(&mut self, id: u32) -> ControlFlow<()> {
        if self.stop_ids.contains(&id) {
            self.ended = Some(id);
            return ControlFlow::Break(());
        }
        let written = self.stream.step(id).and_then(|bytes| {
            self.text.extend_from_slice(&bytes);
            self.out
                .write_all(&bytes)
                .and_then(|_| self.out.flush())
                .map_err(stdout_error)
                .map(|_| bytes.len())
        });
        match written {
            Ok(added) => {
                // A stop text not found before ends in this token's bytes.
                let text = &self.text;
                self.stopped = self
                    .stops
                    .iter()
                    .find(|s| {
                        let from = text.len().saturating_sub(added + s.len() - 1);
                        text[from..].windows(s.len()).any(|w| w == s.as_bytes())
                    })
                    .cloned();
                if self.stopped.is_some() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
            Err(e) => {
                self.failed = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    /// Ends the printed text with a newline; the error that stopped it, if any.
    fn finish(&mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        writeln!(self.out).map_err(stdout_error)
    }

    /// A note on stderr on why the text ended, if it ended before its tokens ran out.
    fn note_end(&self, vocabulary: &Vocabulary) {
        if let Some(id) = self.ended {
            let text = vocabulary.decode(&[id]).unwrap_or_default();
            eprintln!(
                "stopped at token {id} ({text:?}), an end-of-text or end-of-turn token \
                 (--ignore-eos goes on)"
            );
        }
        if let Some(stop) = &self.stopped {
            eprintln!("stopped at {stop:?}");
        }
    }
}

/// The conversation `messages` as `chat`'s template writes it with the
/// assistant's turn opened, tokenized as apply_chat_template does: the template
/// writes its own special tokens, so nothing is added around them.
fn conversation_ids(vocabulary: &Vocabulary, chat: &ChatSettings, messages: &[Message]) -> Result<Vec<u32>> {
    vocabulary.encode(chat.render(messages, true)?.as_bytes())
}

pub fn run_generate(gpu: &GpuArgs, args: &GenerateArgs) -> Result<ExitCode> {
    if args.stop.iter().any(String::is_empty) {
        return Err(Error::invalid("--stop is empty: give the text to stop at"));
    }
    if args.prompt.is_empty() {
        return Err(Error::invalid(
            "--prompt is empty: give the text to continue (with --chat, the message)",
        ));
    }
    let ctx = gpu.context()?;
    let (mut model, vocabulary) = load_language_model(&ctx, &args.weights)?;
    let sampling = args.sampling.sampling(&vocabulary)?;
    let (text_ids, prompt) = if args.chat {
        let messages: Vec<Message> = args
            .system
            .iter()
            .map(|s| Message::new("system", s))
            .chain([Message::new("user", &args.prompt)])
            .collect();
        let chat = vocabulary.chat().cloned().unwrap_or_default();
        let ids = conversation_ids(&vocabulary, &chat, &messages)?;
        (ids.clone(), ids)
    } else {
        // What the tokenizer puts before a text of its own (a Llama's <s> or
        // <|begin_of_text|>; nothing for GPT-2), as Hugging Face's
        // tokenizer(prompt) adds it before generate.
        let ids = vocabulary.encode(args.prompt.as_bytes())?;
        let (begin, _) = vocabulary.document_frame()?;
        (ids.clone(), [begin, ids].concat())
    };
    let mut out = std::io::stdout().lock();
    if !args.chat {
        out.write_all(args.prompt.as_bytes()).map_err(stdout_error)?;
    }
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(args.sampling.seed);
    let mut printer = Printer::new(&vocabulary, &text_ids, &args.sampling, &args.stop, out)?;
    let start = std::time::Instant::now();
    let mut first = None;
    let mut session = Session::new(&mut model, &ctx, !args.sampling.no_cache)?;
    let new = session.generate(&mut model, &ctx, &prompt, args.tokens, sampling, &mut rng, |id| {
        first.get_or_insert_with(std::time::Instant::now);
        printer.token(id)
    })?;
    printer.finish()?;
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "{} tokens in {seconds:.2} s: {:.1} tokens/s, reading the prompt's {} first included{}",
        new.len(),
        new.len() as f64 / seconds,
        prompt.len(),
        if args.sampling.no_cache {
            "; no key/value cache"
        } else {
            ""
        }
    );
    // Time to the first token (the model prepared and the prompt read), then the
    // pace of the rest.
    if let Some(first) = first.filter(|_| new.len() > 1) {
        let rest = first.elapsed().as_secs_f64();
        eprintln!(
            "first token after {:.2} s (the decoder built, the prompt read), then {} tokens at \
             {:.2} tokens/s",
            (first - start).as_secs_f64(),
            new.len() - 1,
            (new.len() - 1) as f64 / rest
        );
    }
    printer.note_end(&vocabulary);
    Ok(ExitCode::SUCCESS)
}

/// A conversation: each line of standard input is the user's next message; the
/// model's reply is printed as it comes, and joins the conversation. The key/value
/// cache keeps what the model has read, so each turn reads only its new tokens.
pub fn run_chat(gpu: &GpuArgs, args: &ChatArgs) -> Result<ExitCode> {
    let ctx = gpu.context()?;
    let (mut model, vocabulary) = load_language_model(&ctx, &args.weights)?;
    let sampling = args.sampling.sampling(&vocabulary)?;
    let chat = vocabulary.chat().cloned().unwrap_or_default();
    let mut messages: Vec<Message> = args.system.iter().map(|s| Message::new("system", s)).collect();
    // Refuse a model without a template before reading anything.
    chat.template()?;
    let (positions, _) = lm_shape(&model)?;
    let mut session = Session::new(&mut model, &ctx, !args.sampling.no_cache)?;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(args.sampling.seed);
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!("each line is a message; end with Ctrl-D");
    }
    let mut lines = stdin.lock();
    let mut outgrown = false;
    loop {
        if interactive {
            eprint!("> ");
        }
        let mut line = String::new();
        let read = lines.read_line(&mut line).map_err(|source| Error::Io {
            path: "standard input".into(),
            source,
        })?;
        if read == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        messages.push(Message::new("user", line));
        let ids = conversation_ids(&vocabulary, &chat, &messages)?;
        if ids.len() + args.tokens > positions && !outgrown {
            outgrown = true;
            eprintln!(
                "note: the conversation ({} tokens) and a reply of up to {} may outgrow the model's \
                 {positions} positions; past them it reads its last {positions} tokens, without the \
                 key/value cache",
                ids.len(),
                args.tokens
            );
        }
        let out = std::io::stdout().lock();
        let mut printer = Printer::new(&vocabulary, &ids, &args.sampling, &[], out)?;
        let start = std::time::Instant::now();
        let new = session.generate(&mut model, &ctx, &ids, args.tokens, sampling, &mut rng, |id| {
            printer.token(id)
        })?;
        printer.finish()?;
        if interactive {
            let seconds = start.elapsed().as_secs_f64();
            eprintln!(
                "({} tokens, {:.1} tokens/s)",
                new.len(),
                new.len() as f64 / seconds
            );
        }
        messages.push(Message::new(
            "assistant",
            String::from_utf8_lossy(&printer.text).trim(),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
