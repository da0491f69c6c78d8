//! `wgml predict` for a token classifier: tags each word of sentences read as
//! training reads them (CoNLL text, or JSON Lines of `tokens`; tags optional),
//! and writes CoNLL text, `conlleval`'s input: a line per word with the word,
//! its given tag (where the file has tags) and the predicted tag, a blank line
//! between sentences. With `--sentences`, it reads plain text instead, a
//! sentence per line, and writes each one's entities as JSON Lines, as Hugging
//! Face's token-classification pipeline groups them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use wgml::data::tagged_words::{WordReader, read_sentences};
use wgml::data::text::Vocabulary;
use wgml::train::entities::spans;
use wgml::{Error, Result};

use super::eval::best_class;

/// Sentences encoded and predicted at a time (bounds the ids held).
const CHUNK: usize = 4096;

/// A token classifier and how it reads: `tokens` ids padded with `pad`, of
/// `vocabulary`, its tags named `names`.
pub struct Tagger<'a> {
    pub ctx: &'a wgml::Context,
    pub model: &'a mut wgml::nn::Model,
    pub tokens: usize,
    pub pad: u32,
    pub vocabulary: &'a Vocabulary,
    pub names: &'a [String],
}

/// Where the tags of `files` go: `output`, or standard output when `None`,
/// with its name for messages. The files must exist, and the output must not
/// be one of them; it opens before any prediction, so a bad path costs none.
fn open_output(files: &[PathBuf], output: Option<&PathBuf>) -> Result<(Box<dyn Write>, String)> {
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(Error::invalid(format!(
            "{} is not a file of words to tag",
            missing.display()
        )));
    }
    let same = |a: &PathBuf, b: &PathBuf| matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y);
    match output {
        Some(path) if files.iter().any(|f| same(f, path)) => Err(Error::invalid(format!(
            "--output {} is a file being read: give another file",
            path.display()
        ))),
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            Ok((
                Box::new(std::io::BufWriter::new(file)),
                path.display().to_string(),
            ))
        }
        None => Ok((
            Box::new(std::io::BufWriter::new(std::io::stdout())),
            "standard output".into(),
        )),
    }
}

impl Tagger<'_> {
    /// Outputs per token.
    fn classes(&self) -> usize {
        self.model.output_dim() / self.tokens
    }

    /// The name of tag `c`.
    fn name(&self, c: usize) -> String {
        self.names.get(c).cloned().unwrap_or_else(|| c.to_string())
    }

    /// Tags the words of `files` into `output` (standard output when `None`).
    /// Words past the model's window are not read; they are written with the
    /// tag `O` and counted in a note.
    pub fn tag_words(&mut self, files: &[PathBuf], output: Option<&PathBuf>) -> Result<ExitCode> {
        let (mut sink, shown) = open_output(files, output)?;
        let io = |source| Error::Io {
            path: shown.clone(),
            source,
        };
        let (tokens, classes) = (self.tokens, self.classes());
        let mut reader = WordReader::new(&[tokens], self.vocabulary, self.pad)?;
        let (mut sentences_seen, mut words_cut, mut sentences_cut) = (0usize, 0usize, 0usize);
        for file in files {
            let sentences = read_sentences(file, false)?;
            let tagged = sentences.iter().any(|s| s.tags.iter().any(|t| !t.is_empty()));
            for chunk in sentences.chunks(CHUNK) {
                let (mut x, mut firsts) = (Vec::new(), Vec::new());
                for s in chunk {
                    let (ids, first) = reader.sample(&s.words).map_err(|e| {
                        Error::invalid(format!("{}: sentence at line {}: {e}", file.display(), s.line))
                    })?;
                    x.extend(ids);
                    firsts.push(first);
                }
                let probs = self.model.predict(self.ctx, &x, chunk.len())?;
                for ((s, first), p) in chunk.iter().zip(&firsts).zip(probs.chunks(tokens * classes)) {
                    let mut tags = vec![None; s.words.len()];
                    for (position, w) in first.iter().enumerate() {
                        if let Some(w) = *w {
                            let (best, _) = best_class(&p[position * classes..(position + 1) * classes]);
                            tags[w] = Some(self.name(best));
                        }
                    }
                    let cut = tags.iter().filter(|t| t.is_none()).count();
                    words_cut += cut;
                    sentences_cut += usize::from(cut > 0);
                    for ((word, given), tag) in s.words.iter().zip(&s.tags).zip(tags) {
                        let tag = tag.unwrap_or_else(|| "O".into());
                        let line = if tagged {
                            format!("{word} {} {tag}", if given.is_empty() { "O" } else { given })
                        } else {
                            format!("{word} {tag}")
                        };
                        writeln!(sink, "{line}").map_err(io)?;
                    }
                    writeln!(sink).map_err(io)?;
                }
                sentences_seen += chunk.len();
            }
        }
        sink.flush().map_err(io)?;
        if words_cut > 0 {
            eprintln!(
                "note: {words_cut} words of {sentences_cut} sentences lie past the model's {tokens} \
                 tokens (or make no token): not read, written with the tag O"
            );
        }
        if let Some(path) = output {
            eprintln!("{sentences_seen} sentences tagged into {}", path.display());
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Tags the plain text of `files`, a sentence per non-empty line, and
    /// writes JSON Lines of each sentence's entities into `output` (standard
    /// output when `None`): `{"line", "text", "entities": [{"entity", "word",
    /// "start", "end", "score"}]}`, grouped as Hugging Face's
    /// token-classification pipeline groups them with
    /// `aggregation_strategy="first"`: each word (the tokenizer's
    /// pre-tokenization) takes the tag of its first token, the spans of entity
    /// tags group words ([`spans`]), `start`/`end` are character offsets into
    /// the line and `score` is the mean of the words' probabilities. Words past
    /// the window are not read (a note counts them).
    pub fn tag_sentences(&mut self, files: &[PathBuf], output: Option<&PathBuf>) -> Result<ExitCode> {
        let (mut sink, shown) = open_output(files, output)?;
        let io = |source| Error::Io {
            path: shown.clone(),
            source,
        };
        let mut lines: Vec<(usize, String)> = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
                path: file.display().to_string(),
                source,
            })?;
            lines.extend(
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .map(|(i, l)| (i + 1, l.to_string())),
            );
        }
        let (before, after) = self.vocabulary.document_frame()?;
        let (tokens, classes) = (self.tokens, self.classes());
        let room = tokens.saturating_sub(before.len() + after.len());
        if room == 0 {
            return Err(Error::invalid(format!(
                "a window of {tokens} tokens leaves no room for words beside the tokenizer's frame"
            )));
        }
        let mut words_cut = 0usize;
        for chunk in lines.chunks(CHUNK) {
            let mut x = Vec::with_capacity(chunk.len() * tokens);
            let mut encoded = Vec::with_capacity(chunk.len());
            for (_, line) in chunk {
                let pieces = self.vocabulary.encode_with_words(line)?;
                let ids: Vec<u32> = before
                    .iter()
                    .copied()
                    .chain(pieces.iter().take(room).map(|p| p.0))
                    .chain(after.iter().copied())
                    .collect();
                x.extend(wgml::data::text_classes::cut_and_pad(&ids, tokens, self.pad));
                // The words with a token past the window (the first of them may
                // be cut between its tokens; its first token was read).
                let kept = pieces.len().min(room);
                let last_read = kept.checked_sub(1).map(|i| pieces[i].1);
                words_cut += count_words(&pieces[kept..], last_read);
                encoded.push(pieces);
            }
            let probs = self.model.predict(self.ctx, &x, chunk.len())?;
            for (((number, line), pieces), p) in
                chunk.iter().zip(&encoded).zip(probs.chunks(tokens * classes))
            {
                // Each word read: (tag, its probability, first char, last char).
                let mut words: Vec<(String, f32, usize, usize)> = Vec::new();
                let mut previous = None;
                for (i, &(_, w, (start, end))) in pieces.iter().take(room).enumerate() {
                    let row = &p[(before.len() + i) * classes..(before.len() + i + 1) * classes];
                    match words.last_mut() {
                        // A later token of the word: it widens the word's span.
                        Some(word) if previous == Some(w) => word.3 = end,
                        _ => {
                            let (best, probability) = best_class(row);
                            words.push((self.name(best), probability, start, end));
                        }
                    }
                    previous = Some(w);
                }
                let tags: Vec<&str> = words.iter().map(|w| w.0.as_str()).collect();
                let chars: Vec<char> = line.chars().collect();
                let entities: Vec<serde_json::Value> = spans(&tags)
                    .into_iter()
                    .map(|(kind, a, b)| {
                        let (start, end) = (words[a].2, words[b].3);
                        let score = words[a..=b].iter().map(|w| f64::from(w.1)).sum::<f64>() / (b - a + 1) as f64;
                        serde_json::json!({
                            "entity": kind,
                            "word": chars[start.min(chars.len())..end.min(chars.len())].iter().collect::<String>(),
                            "start": start,
                            "end": end,
                            "score": (score * 1e6).round() / 1e6,
                        })
                    })
                    .collect();
                let row = serde_json::json!({ "line": number, "text": line, "entities": entities });
                writeln!(sink, "{row}").map_err(io)?;
            }
        }
        sink.flush().map_err(io)?;
        if words_cut > 0 {
            eprintln!(
                "note: {words_cut} words lie past the model's {tokens} tokens: not read, so not tagged"
            );
        }
        if let Some(path) = output {
            eprintln!("{} sentences tagged into {}", lines.len(), path.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The words that `pieces` start (a piece whose word differs from the one
/// before it; the first piece continues word `before`, if that is its word).
fn count_words(pieces: &[wgml::data::text::WordPiece], before: Option<u32>) -> usize {
    let mut previous = before;
    pieces
        .iter()
        .filter(|p| {
            let new = previous != Some(p.1);
            previous = Some(p.1);
            new
        })
        .count()
}
