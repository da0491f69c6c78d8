//! Text as a language model's data (`--data text:FILE`). A [`Vocabulary`] turns
//! the text into token ids: bytes by default (a vocabulary of [`BYTE_VOCAB`] that
//! reads any file, UTF-8 or not, with nothing to ship beside a checkpoint), or a
//! Hugging Face tokenizer (a `tokenizer.json`: GPT-2's, Llama's, or a byte-level
//! BPE trained here on the training text with [`Vocabulary::train_bpe`]).
//!
//! `text:PATH` names a file or a folder of files (a [`Corpus`]). Each file's
//! last tenth is the test split (as nanoGPT splits its character data; under a
//! tokenizer the cut moves forward to a character boundary); each part is
//! tokenised on its own, and the parts of all files are joined in path order,
//! so no window crosses from training text into test text. Each part is
//! cut into windows of T + 1 tokens, T the model's input length: the first T are
//! a sample's token ids, the last T its labels (each token's next), so a causal
//! model learns every position's next token at once. Windows start every T
//! tokens, so each token is a label once per epoch.

use std::path::Path;

use tokenizers::Tokenizer;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;

use crate::data::chat::ChatSettings;
use crate::data::{Dataset, Split, Targets};
use crate::error::{Error, Result};

/// Token ids of byte-level text: every byte value.
pub const BYTE_VOCAB: usize = 256;

/// Fraction of the text (its end) held out as the test split.
pub const TEST_FRACTION: f64 = 0.1;

/// The most tokens [`Vocabulary::train_bpe`] builds (GPT-2 has 50,257; Llama 3
/// 128,256): the trainer reserves memory for the size asked.
pub const MAX_BPE_VOCAB: usize = 1 << 20;

/// A tokenizer reads text in pieces of about this many bytes, cut after a
/// newline followed by a non-space (where GPT-2-style pre-tokenization cuts
/// anyway), so a large corpus never becomes one huge encoding.
const ENCODE_PIECE: usize = 1 << 20;

/// A tokenizer's frames of one text and of a pair of texts
/// ([`Vocabulary::text_frames`]), computed once to read many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextFrames {
    /// Before and after one text ([`Vocabulary::document_frame`]).
    pub single: (Vec<u32>, Vec<u32>),
    /// Around and between two texts, if the tokenizer joins pairs.
    pub pair: Option<PairFrame>,
}

/// The special tokens framing a pair of texts ([`Vocabulary::pair_frame`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairFrame {
    /// Before the first text (`[CLS]`).
    pub before: Vec<u32>,
    /// Between the texts (`[SEP]`; RoBERTa's `</s></s>`).
    pub between: Vec<u32>,
    /// After the second text (`[SEP]`).
    pub after: Vec<u32>,
    /// The tokenizer's ids and token types of the pair ("a", "b"): what a model
    /// computing the token types from the ids must reproduce.
    pub probe: (Vec<u32>, Vec<u32>),
}

/// The lengths two token sequences of `n1` and `n2` ids are cut to so that they
/// fit in `room` together, as the Hugging Face tokenizers' `longest_first`
/// truncation (which `tokenizer(a, b, truncation=True)` applies) cuts them:
/// nothing when they fit; else the longer down to what the shorter leaves, or,
/// when the shorter alone takes more than half, the shorter to half of `room`
/// and the longer to the rest. The tests hold it equal to the crate's own
/// `truncate_encodings`, which builds every cut-off piece and so costs far more.
pub fn longest_first(n1: usize, n2: usize, room: usize) -> (usize, usize) {
    if n1 + n2 <= room {
        return (n1, n2);
    }
    let short = n1.min(n2);
    let (keep_short, keep_long) = if 2 * short > room {
        (room / 2, room / 2 + room % 2)
    } else {
        (short, room - short)
    };
    let (k1, k2) = if n1 <= n2 {
        (keep_short, keep_long)
    } else {
        (keep_long, keep_short)
    };
    (k1.min(n1), k2.min(n2))
}

/// A token of a text read into words ([`Vocabulary::encode_with_words`]): its
/// id, the index of its word, and its span of characters in the text.
pub type WordPiece = (u32, u32, (usize, usize));

/// A Hugging Face tokenizer and what its folder adds for chat: the template,
/// the special tokens' texts, the ids that end a reply ([`ChatSettings`]).
/// Dereferences to the tokenizer.
#[derive(Clone, Debug)]
pub struct HfTokenizer {
    /// The tokenizer (`tokenizer.json`).
    pub tokenizer: Tokenizer,
    /// Its chat template and stop ids (empty when it came without them).
    pub chat: ChatSettings,
}

impl std::ops::Deref for HfTokenizer {
    type Target = Tokenizer;
    fn deref(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

impl std::ops::DerefMut for HfTokenizer {
    fn deref_mut(&mut self) -> &mut Tokenizer {
        &mut self.tokenizer
    }
}

impl From<Tokenizer> for HfTokenizer {
    fn from(tokenizer: Tokenizer) -> Self {
        HfTokenizer {
            tokenizer,
            chat: ChatSettings::default(),
        }
    }
}

/// How text becomes token ids and back.
#[derive(Clone, Debug, Default)]
pub enum Vocabulary {
    /// Each byte is a token: ids 0–255.
    #[default]
    Bytes,
    /// A Hugging Face tokenizer; reads UTF-8 text only.
    Tokenizer(Box<HfTokenizer>),
}

/// The stream decoder of a Hugging Face tokenizer.
type TokenizerStream<'a> = tokenizers::DecodeStream<
    'a,
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Turns generated token ids into text as they come (see [`Vocabulary::stream`]):
/// bytes one by one (a character of several bytes in several steps), a
/// tokenizer's tokens as whole characters.
pub struct TextStream<'a>(Option<TokenizerStream<'a>>);

impl TextStream<'_> {
    /// The bytes token `id` adds to the text. A tokenizer holds back the bytes
    /// of a character still incomplete until the next tokens complete it (what is
    /// held back when generation stops is not given); bytes pass as they come.
    pub fn step(&mut self, id: u32) -> Result<Vec<u8>> {
        match &mut self.0 {
            None => u8::try_from(id)
                .map(|b| vec![b])
                .map_err(|_| Error::invalid(format!("token {id} is not a byte"))),
            Some(stream) => stream
                .step(id)
                .map(|text| text.map(String::into_bytes).unwrap_or_default())
                .map_err(|e| Error::invalid(format!("decoding token {id}: {e}"))),
        }
    }
}

fn tokenizer_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{what}: {e}"))
}

impl Vocabulary {
    /// Number of token ids: 256 for bytes, otherwise one past the tokenizer's
    /// largest id (added tokens included; a vocabulary whose ids have gaps counts
    /// them).
    pub fn size(&self) -> usize {
        match self {
            Vocabulary::Bytes => BYTE_VOCAB,
            Vocabulary::Tokenizer(t) => {
                let top = t
                    .get_vocab(true)
                    .into_values()
                    .max()
                    .map_or(0, |id| id as usize + 1);
                top.max(t.get_vocab_size(true))
            }
        }
    }

    /// The id of the tokenizer's end-of-text token, where it has one: a special
    /// added token named as GPT-2 (`<|endoftext|>`), Llama 3 (`<|end_of_text|>`,
    /// `<|eot_id|>`) or SentencePiece models (`</s>`, `<eos>`) name it; the lowest
    /// such id. `None` for bytes.
    pub fn end_of_text(&self) -> Option<u32> {
        self.special_token(&["<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "</s>", "<eos>"])
    }

    /// The ids that end a generated text: the chat settings' stop ids (an
    /// instruct model's end of turn among them) when the tokenizer came with
    /// some, else its end of text ([`Vocabulary::end_of_text`]), else none.
    pub fn stop_ids(&self) -> Vec<u32> {
        match self.chat() {
            Some(c) if !c.stop_ids.is_empty() => c.stop_ids.clone(),
            _ => self.end_of_text().into_iter().collect(),
        }
    }

    /// The tokenizer's chat settings (template, special tokens, stop ids), if
    /// it has any.
    pub fn chat(&self) -> Option<&ChatSettings> {
        match self {
            Vocabulary::Tokenizer(t) if !t.chat.is_empty() => Some(&t.chat),
            _ => None,
        }
    }

    /// Gives the tokenizer `chat` (replacing what it had); an error for bytes
    /// unless `chat` is empty.
    pub fn set_chat(&mut self, chat: ChatSettings) -> Result<()> {
        match self {
            Vocabulary::Tokenizer(t) => {
                t.chat = chat;
                Ok(())
            }
            Vocabulary::Bytes if chat.is_empty() => Ok(()),
            Vocabulary::Bytes => Err(Error::invalid(
                "a model reading bytes has no tokenizer to hold a chat template or stop tokens",
            )),
        }
    }

    /// The id padding takes when text is padded to a model's tokens (text
    /// classification): byte 0 (NUL) for bytes; a tokenizer's padding token
    /// (`<pad>`, `[PAD]`, `<|padding|>`), else its end of text, as Hugging Face
    /// users pad GPT-2 with `<|endoftext|>`. `None` for a tokenizer with neither.
    pub fn padding_id(&self) -> Option<u32> {
        match self {
            Vocabulary::Bytes => Some(0),
            Vocabulary::Tokenizer(_) => self
                .special_token(&["<pad>", "[PAD]", "<|padding|>"])
                .or_else(|| self.end_of_text()),
        }
    }

    /// The lowest id of a special added token named one of `names`.
    fn special_token(&self, names: &[&str]) -> Option<u32> {
        match self {
            Vocabulary::Bytes => None,
            Vocabulary::Tokenizer(t) => t
                .get_added_tokens_decoder()
                .into_iter()
                .filter(|(_, token)| token.special && names.contains(&token.content.as_str()))
                .map(|(id, _)| id)
                .min(),
        }
    }

    /// A short description, e.g. `bytes` or `tokenizer of 1024 tokens`.
    pub fn describe(&self) -> String {
        match self {
            Vocabulary::Bytes => "bytes".into(),
            Vocabulary::Tokenizer(_) => format!("tokenizer of {} tokens", self.size()),
        }
    }

    /// A tokenizer from the JSON of a `tokenizer.json` file. Errors say what
    /// the file lacks (a model this build reads, valid JSON). Truncation and
    /// padding settings are dropped: text is cut into windows here, and a
    /// tokenizer that truncates would silently keep only its first tokens.
    pub fn from_json(json: &str) -> Result<Vocabulary> {
        let mut t = json
            .parse::<Tokenizer>()
            .map_err(|e| tokenizer_error("not a tokenizer.json wgml reads", e))?;
        t.with_truncation(None)
            .map_err(|e| tokenizer_error("dropping the tokenizer's truncation", e))?;
        t.with_padding(None);
        Ok(Vocabulary::Tokenizer(Box::new(t.into())))
    }

    /// The tokenizer read from the `tokenizer.json` file at `path`.
    pub fn from_file(path: &Path) -> Result<Vocabulary> {
        let json = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Vocabulary::from_json(&json).map_err(|e| Error::Data {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// The tokenizer as `tokenizer.json` text (`None` for bytes, which need none).
    pub fn to_json(&self) -> Result<Option<String>> {
        match self {
            Vocabulary::Bytes => Ok(None),
            Vocabulary::Tokenizer(t) => t
                .to_string(false)
                .map(Some)
                .map_err(|e| tokenizer_error("writing the tokenizer", e)),
        }
    }

    /// A byte-level BPE tokenizer (GPT-2's scheme: the 256 bytes, then the most
    /// frequent adjacent pairs merged, within words split as GPT-2 splits them)
    /// of at most `vocab_size` tokens, trained on `text`. Fewer tokens when the
    /// text has too few pairs seen twice. Deterministic: the same text gives the
    /// same tokenizer.
    pub fn train_bpe(text: &str, vocab_size: usize) -> Result<Vocabulary> {
        Vocabulary::train_bpe_on(&[text], vocab_size)
    }

    /// [`Vocabulary::train_bpe`] on several texts (a corpus' documents): pairs
    /// are counted within each text, none across two.
    pub fn train_bpe_on(texts: &[&str], vocab_size: usize) -> Result<Vocabulary> {
        if vocab_size > MAX_BPE_VOCAB {
            return Err(Error::invalid(format!(
                "a BPE of {vocab_size} tokens is more than wgml builds ({MAX_BPE_VOCAB}; GPT-2 \
                 has 50,257)"
            )));
        }
        if vocab_size <= BYTE_VOCAB {
            return Err(Error::invalid(format!(
                "a byte-level BPE of {vocab_size} tokens would merge nothing: it starts from the \
                 {BYTE_VOCAB} bytes, so give more (e.g. bpe:1024), or use bytes"
            )));
        }
        let mut tokenizer = Tokenizer::new(BPE::default());
        tokenizer
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
            .with_decoder(Some(ByteLevel::default()));
        let mut trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .show_progress(false)
            .build()
            .into();
        tokenizer
            .train(&mut trainer, texts.iter())
            .map_err(|e| tokenizer_error("training the BPE tokenizer", e))?;
        Ok(Vocabulary::Tokenizer(Box::new(tokenizer.into())))
    }

    /// The token ids of `text`: its bytes, or what the tokenizer makes of it
    /// (then `text` must be UTF-8). A tokenizer reads text over about a MiB in
    /// pieces cut after a newline followed by a non-space, which GPT-2-style
    /// pre-tokenization splits at anyway.
    pub fn encode(&self, text: &[u8]) -> Result<Vec<u32>> {
        match self {
            Vocabulary::Bytes => Ok(text.iter().map(|&b| u32::from(b)).collect()),
            Vocabulary::Tokenizer(t) => {
                let text = std::str::from_utf8(text).map_err(|e| {
                    Error::invalid(format!(
                        "the text is not UTF-8 ({e}); a tokenizer reads UTF-8 only, bytes read any file"
                    ))
                })?;
                let mut ids = Vec::new();
                for piece in pieces(text, ENCODE_PIECE) {
                    let e = t
                        .encode(piece, false)
                        .map_err(|e| tokenizer_error("tokenizing", e))?;
                    ids.extend_from_slice(e.get_ids());
                }
                Ok(ids)
            }
        }
    }

    /// The token ids the tokenizer puts before and after one text of its own
    /// (its post-processor's template for a single sequence: BERT's `[CLS]` and
    /// `[SEP]`); none for bytes and for tokenizers without such a template (GPT-2's).
    pub fn document_frame(&self) -> Result<(Vec<u32>, Vec<u32>)> {
        let Vocabulary::Tokenizer(t) = self else {
            return Ok((Vec::new(), Vec::new()));
        };
        if t.get_post_processor().is_none() {
            return Ok((Vec::new(), Vec::new()));
        }
        // A probe text, framed: the special tokens before its first token of
        // text and after its last.
        let probe = t
            .encode("a", true)
            .map_err(|e| tokenizer_error("tokenizing", e))?;
        let (ids, special) = (probe.get_ids(), probe.get_special_tokens_mask());
        let Some(first) = special.iter().position(|&s| s == 0) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let last = special.iter().rposition(|&s| s == 0).unwrap_or(first);
        Ok((ids[..first].to_vec(), ids[last + 1..].to_vec()))
    }

    /// One document (a text to classify) as at most `tokens` ids, as Hugging
    /// Face's tokenizer reads it with `truncation=True, max_length=tokens`: its
    /// ids, cut to leave room for the tokenizer's frame
    /// ([`Vocabulary::document_frame`]), framed. Also the length it would have
    /// uncut, which exceeds `tokens` when the text was cut.
    pub fn encode_document(&self, text: &[u8], tokens: usize) -> Result<(Vec<u32>, usize)> {
        self.encode_framed(text, tokens, &self.document_frame()?)
    }

    /// [`Vocabulary::encode_document`] with the frame computed once by the
    /// caller (reading many documents).
    pub fn encode_framed(
        &self,
        text: &[u8],
        tokens: usize,
        (before, after): &(Vec<u32>, Vec<u32>),
    ) -> Result<(Vec<u32>, usize)> {
        let ids = self.encode(text)?;
        let whole = before.len() + ids.len() + after.len();
        let room = tokens.saturating_sub(before.len() + after.len());
        let mut out = before.clone();
        out.extend_from_slice(&ids[..ids.len().min(room)]);
        out.extend_from_slice(after);
        out.truncate(tokens);
        Ok((out, whole))
    }

    /// The special tokens the tokenizer puts around and between two texts read
    /// as one sample (its post-processor's pair template: BERT's `[CLS] A [SEP]
    /// B [SEP]`, RoBERTa's `<s> A </s></s> B </s>`); `None` for bytes and for
    /// tokenizers that put nothing between two texts (GPT-2's).
    pub fn pair_frame(&self) -> Result<Option<PairFrame>> {
        let Vocabulary::Tokenizer(t) = self else {
            return Ok(None);
        };
        if t.get_post_processor().is_none() {
            return Ok(None);
        }
        let probe = t
            .encode(("a", "b"), true)
            .map_err(|e| tokenizer_error("tokenizing a pair", e))?;
        let (ids, sequence) = (probe.get_ids(), probe.get_sequence_ids());
        let first = |which: usize| sequence.iter().position(|&s| s == Some(which));
        let last = |which: usize| sequence.iter().rposition(|&s| s == Some(which));
        let (Some(a0), Some(a1), Some(b0), Some(b1)) = (first(0), last(0), first(1), last(1)) else {
            return Ok(None);
        };
        if b0 <= a1 + 1 {
            return Ok(None);
        }
        Ok(Some(PairFrame {
            before: ids[..a0].to_vec(),
            between: ids[a1 + 1..b0].to_vec(),
            after: ids[b1 + 1..].to_vec(),
            probe: (ids.to_vec(), probe.get_type_ids().to_vec()),
        }))
    }

    /// Two texts as one sample of at most `tokens` ids, as Hugging Face's
    /// tokenizer reads `tokenizer(first, second, truncation=True,
    /// max_length=tokens)`: both encoded, the longer cut first until they fit
    /// beside the frame (`longest_first`), then framed by `frame`
    /// ([`Vocabulary::pair_frame`]). Also the length they would have uncut.
    /// Errors when the frame alone does not fit in `tokens`.
    pub fn encode_pair(
        &self,
        first: &[u8],
        second: &[u8],
        tokens: usize,
        frame: &PairFrame,
    ) -> Result<(Vec<u32>, usize)> {
        let (a, b) = (self.encode(first)?, self.encode(second)?);
        let added = frame.before.len() + frame.between.len() + frame.after.len();
        let Some(room) = tokens.checked_sub(added) else {
            return Err(Error::invalid(format!(
                "a pair of texts takes {added} tokens of frame, more than the {tokens} the model \
                 reads"
            )));
        };
        let (n1, n2) = longest_first(a.len(), b.len(), room);
        let mut out = Vec::with_capacity(tokens);
        out.extend_from_slice(&frame.before);
        out.extend_from_slice(&a[..n1]);
        out.extend_from_slice(&frame.between);
        out.extend_from_slice(&b[..n2]);
        out.extend_from_slice(&frame.after);
        Ok((out, added + a.len() + b.len()))
    }

    /// The frames of one text and of a pair ([`Vocabulary::document_frame`],
    /// [`Vocabulary::pair_frame`]).
    pub fn text_frames(&self) -> Result<TextFrames> {
        Ok(TextFrames {
            single: self.document_frame()?,
            pair: self.pair_frame()?,
        })
    }

    /// One text (`second` `None`) or a pair of texts as one sample of at most
    /// `tokens` ids, as Hugging Face's tokenizer reads `tokenizer(text,
    /// second, truncation=True, max_length=tokens)` ([`Vocabulary::encode_framed`],
    /// [`Vocabulary::encode_pair`]); also the length uncut. A pair needs a
    /// tokenizer that joins pairs.
    pub fn encode_text(
        &self,
        text: &[u8],
        second: Option<&[u8]>,
        tokens: usize,
        frames: &TextFrames,
    ) -> Result<(Vec<u32>, usize)> {
        match (second, &frames.pair) {
            (None, _) => self.encode_framed(text, tokens, &frames.single),
            (Some(second), Some(frame)) => self.encode_pair(text, second, tokens, frame),
            (Some(_), None) => Err(Error::invalid(format!(
                "a pair of texts, but the model reads text as {}, which puts nothing between two \
                 texts; classify single texts, or fine-tune a model whose tokenizer joins pairs \
                 (BERT's [SEP], RoBERTa's </s></s>)",
                self.describe()
            ))),
        }
    }

    /// This vocabulary as it reads words already split (a token classifier's
    /// data), as Hugging Face's tokenizer reads `tokenizer(words,
    /// is_split_into_words=True)`: itself, except a byte-level BPE (RoBERTa's)
    /// that adds no space before a text, which reads each word as after a space
    /// (Hugging Face requires `add_prefix_space=True` of it for split words).
    /// Errors for bytes, which have no words.
    pub fn for_split_words(&self) -> Result<std::borrow::Cow<'_, Vocabulary>> {
        let Vocabulary::Tokenizer(t) = self else {
            return Err(Error::invalid(
                "words tagged one by one need a tokenizer that splits words into tokens (BERT's \
                 WordPiece, RoBERTa's BPE); bytes have no words",
            ));
        };
        match t.get_pre_tokenizer() {
            Some(PreTokenizerWrapper::ByteLevel(b)) if !b.add_prefix_space => {
                let mut words = t.clone();
                let mut b = *b;
                b.add_prefix_space = true;
                words.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(b)));
                Ok(std::borrow::Cow::Owned(Vocabulary::Tokenizer(words)))
            }
            _ => Ok(std::borrow::Cow::Borrowed(self)),
        }
    }

    /// `words` as token ids (no special tokens) and, for each id, the index of
    /// the word it comes from: each word tokenized on its own, as Hugging Face's
    /// `tokenizer(words, is_split_into_words=True)` does (call it on
    /// [`Vocabulary::for_split_words`]). A word the tokenizer makes no token of
    /// (a lone control character) has none. Errors for bytes.
    pub fn encode_words(&self, words: &[&str]) -> Result<(Vec<u32>, Vec<u32>)> {
        let Vocabulary::Tokenizer(t) = self else {
            return Err(Error::invalid(
                "words tagged one by one need a tokenizer; bytes have no words",
            ));
        };
        let e = t
            .encode(tokenizers::InputSequence::from(words), false)
            .map_err(|e| tokenizer_error("tokenizing words", e))?;
        let word_of = e
            .get_word_ids()
            .iter()
            .map(|w| {
                w.ok_or_else(|| Error::invalid("the tokenizer made a token of no word out of split words"))
            })
            .collect::<Result<Vec<u32>>>()?;
        Ok((e.get_ids().to_vec(), word_of))
    }

    /// `text` as Hugging Face's token-classification pipeline reads it: token ids
    /// (no special tokens), each with the index of the word the tokenizer's
    /// pre-tokenization made it of and its span of characters in `text`
    /// (`start..end`, counted in chars as Python counts them). Errors for bytes.
    pub fn encode_with_words(&self, text: &str) -> Result<Vec<WordPiece>> {
        let Vocabulary::Tokenizer(t) = self else {
            return Err(Error::invalid(
                "words of a text need a tokenizer; bytes have no words",
            ));
        };
        let e = t
            .encode_char_offsets(text, false)
            .map_err(|e| tokenizer_error("tokenizing", e))?;
        Ok(e.get_ids()
            .iter()
            .zip(e.get_word_ids())
            .zip(e.get_offsets())
            .filter_map(|((&id, w), &span)| w.map(|w| (id, w, span)))
            .collect())
    }

    /// The text of token ids `ids` (invalid UTF-8 shown as U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Vocabulary::Bytes => {
                let bytes = ids
                    .iter()
                    .map(|&id| {
                        u8::try_from(id).map_err(|_| Error::invalid(format!("token {id} is not a byte")))
                    })
                    .collect::<Result<Vec<u8>>>()?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Vocabulary::Tokenizer(t) => t.decode(ids, false).map_err(|e| tokenizer_error("decoding", e)),
        }
    }

    /// A decoder for tokens generated one at a time.
    pub fn stream(&self) -> TextStream<'_> {
        TextStream(match self {
            Vocabulary::Bytes => None,
            Vocabulary::Tokenizer(t) => Some(t.decode_stream(false)),
        })
    }
}

/// `text` in pieces of at least `size` bytes (the last may be shorter), each cut
/// just after a newline that a non-whitespace character follows.
fn pieces(text: &str, size: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let bytes = rest.as_bytes();
        let cut = (size..bytes.len())
            .find(|&i| bytes[i - 1] == b'\n' && !bytes[i].is_ascii_whitespace() && rest.is_char_boundary(i))
            .unwrap_or(bytes.len());
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// The text of `text:PATH`: one file, or every file under a folder (sorted by
/// path; hidden files and folders, whose names start with a dot, skipped). Each
/// document is split on its own (its last tenth to the test split) and the
/// parts are joined in path order, so windows may run from one document into
/// the next, as language-model corpora are read.
///
/// A folder whose top-level entries name a training and a test split (a name
/// part `train` and one `test`, and optionally `valid`/`validation`/`val`/`dev`, as
/// WikiText's `wiki.train.raw`, `wiki.valid.raw`, `wiki.test.raw` or Hugging Face's
/// `train.txt`, `validation.txt`, `test.txt`, files or folders) is split by those
/// names instead: every file under such an entry goes whole to its split, and
/// the entries naming no split (a README beside them) are left out, listed in
/// [`Corpus::ignored`].
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The file's or folder's name.
    pub name: String,
    /// Each document's path and bytes.
    pub documents: Vec<(std::path::PathBuf, Vec<u8>)>,
    /// Where each document goes, in the order of `documents`.
    parts: Vec<Part>,
    /// Files of a folder split by name that name no split, left out.
    pub ignored: Vec<std::path::PathBuf>,
}

/// The split a document of a [`Corpus`] goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Its last [`TEST_FRACTION`] to the test split, the rest to training.
    Both,
    /// All of it to training.
    Train,
    /// All of it to validation.
    Validation,
    /// All of it to the test split.
    Test,
}

impl Part {
    /// The split a folder's entry of this name holds, if its name says: a part of
    /// the name between dots, dashes and underscores, ignoring case.
    fn named(name: &str) -> Option<Part> {
        name.to_ascii_lowercase()
            .split(['.', '-', '_'])
            .find_map(|word| match word {
                "train" => Some(Part::Train),
                "valid" | "validation" | "val" | "dev" => Some(Part::Validation),
                "test" => Some(Part::Test),
                _ => None,
            })
    }
}

impl Corpus {
    /// The file or folder at `path`. Errors name it: unreadable, or a folder
    /// holding no file.
    pub fn read(path: &Path) -> Result<Corpus> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut files = Vec::new();
        if path.is_dir() {
            collect_files(path, &mut files)?;
            files.sort();
            if files.is_empty() {
                return Err(Error::Data {
                    path: path.display().to_string(),
                    message: "holds no text file (hidden ones are skipped)".into(),
                });
            }
        } else {
            files.push(path.to_path_buf());
        }
        let named = if path.is_dir() {
            parts_by_name(path, &files)
        } else {
            None
        };
        let (mut parts, mut ignored, mut kept) = (Vec::new(), Vec::new(), Vec::new());
        for (i, f) in files.into_iter().enumerate() {
            match named.as_ref().map(|n| n[i]) {
                Some(None) => ignored.push(f),
                Some(Some(part)) => {
                    parts.push(part);
                    kept.push(f);
                }
                None => {
                    parts.push(Part::Both);
                    kept.push(f);
                }
            }
        }
        let documents = kept
            .into_iter()
            .map(|f| read_bytes(&f).map(|b| (f, b)))
            .collect::<Result<_>>()?;
        Ok(Corpus {
            name,
            documents,
            parts,
            ignored,
        })
    }

    /// Where each document goes, in the order of `documents`.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// One document of `bytes`, named `name`.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Corpus {
        Corpus {
            name: name.to_string(),
            documents: vec![(name.into(), bytes.to_vec())],
            parts: vec![Part::Both],
            ignored: Vec::new(),
        }
    }

    /// Bytes of text in all documents.
    pub fn len(&self) -> usize {
        self.documents.iter().map(|(_, b)| b.len()).sum()
    }

    /// Whether the documents hold no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each document's training part as a tokenizer splits it (all but its last
    /// [`TEST_FRACTION`], ending on a character boundary): what a tokenizer
    /// should be trained on, so the test split stays unseen. Errors name a
    /// document that is not UTF-8.
    pub fn training_texts(&self) -> Result<Vec<&str>> {
        self.documents
            .iter()
            .zip(&self.parts)
            .filter_map(|((path, bytes), part)| {
                let text = match part {
                    Part::Both => training_text(bytes),
                    Part::Train => bytes,
                    Part::Validation | Part::Test => return None,
                };
                Some(std::str::from_utf8(text).map_err(|e| Error::Data {
                    path: path.display().to_string(),
                    message: format!("is not UTF-8 text ({e}); a tokenizer reads UTF-8, bytes read any file"),
                }))
            })
            .collect()
    }

    /// The token ids of every document's parts under `vocabulary`, joined in
    /// order by split, and the bytes of the test parts.
    fn split_ids(&self, vocabulary: &Vocabulary) -> Result<SplitIds> {
        let utf8 = matches!(vocabulary, Vocabulary::Tokenizer(_));
        let mut ids = SplitIds::default();
        for ((path, bytes), part) in self.documents.iter().zip(&self.parts) {
            let named = |e| in_file(path, e);
            let cut = match part {
                Part::Both => split_point(bytes, utf8),
                Part::Train => bytes.len(),
                Part::Validation => {
                    ids.validation.extend(vocabulary.encode(bytes).map_err(named)?);
                    continue;
                }
                Part::Test => 0,
            };
            let (a, b) = bytes.split_at(cut);
            ids.train.extend(vocabulary.encode(a).map_err(named)?);
            ids.test.extend(vocabulary.encode(b).map_err(named)?);
            ids.test_bytes += b.len();
        }
        Ok(ids)
    }

    /// Bytes of text per token in the test split under `vocabulary` (1 for
    /// bytes): a per-token loss divided by this and by ln 2 is in bits per byte,
    /// which compares models whatever their tokenizers.
    pub fn test_bytes_per_token(&self, vocabulary: &Vocabulary) -> Result<f64> {
        let ids = self.split_ids(vocabulary)?;
        Ok(ids.test_bytes as f64 / ids.test.len().max(1) as f64)
    }

    /// The corpus as windows of `sample_shape = [T]` tokens of `vocabulary` (see
    /// the module docs).
    pub fn dataset(&self, sample_shape: &[usize], vocabulary: &Vocabulary) -> Result<Dataset> {
        self.dataset_and_bytes_per_token(sample_shape, vocabulary)
            .map(|(d, _)| d)
    }

    /// [`Corpus::dataset`] and [`Corpus::test_bytes_per_token`] from one
    /// tokenisation.
    pub fn dataset_and_bytes_per_token(
        &self,
        sample_shape: &[usize],
        vocabulary: &Vocabulary,
    ) -> Result<(Dataset, f64)> {
        let tokens = match sample_shape {
            &[t] if t > 0 => t,
            other => {
                return Err(Error::invalid(format!(
                    "text data needs a model whose input is [tokens] (token ids, e.g. an \
                     Embedding of {} rows); this one takes {other:?}",
                    vocabulary.size()
                )));
            }
        };
        let SplitIds {
            train,
            validation,
            test,
            test_bytes,
        } = self.split_ids(vocabulary)?;
        let need = tokens + 1;
        let by_name = self.parts.iter().any(|p| *p != Part::Both);
        if self.parts.contains(&Part::Validation) && validation.len() < need {
            return Err(Error::Data {
                path: self.name.clone(),
                message: format!(
                    "the validation text holds {} tokens: windows of {need} (the model's {tokens} \
                     tokens and the next) need {need}",
                    validation.len()
                ),
            });
        }
        if train.len() < need || test.len() < need {
            let unit = match vocabulary {
                Vocabulary::Bytes => "bytes",
                Vocabulary::Tokenizer(_) => "tokens",
            };
            return Err(Error::Data {
                path: self.name.clone(),
                message: format!(
                    "{} training and {} test {unit} are too few: windows of {need} {unit} (the \
                     model's {tokens} tokens and the next) need {need} {unit} in each split{}",
                    train.len(),
                    test.len(),
                    match vocabulary {
                        _ if by_name => ", from the files named for it".to_string(),
                        Vocabulary::Bytes => format!(
                            ", the test split being the text's last tenth (at least {} bytes of text)",
                            (need as f64 / TEST_FRACTION).ceil() as usize
                        ),
                        Vocabulary::Tokenizer(_) =>
                            ", the test split being the text's last tenth".to_string(),
                    }
                ),
            });
        }
        let classes = vocabulary.size();
        let dataset = Dataset {
            name: self.name.clone(),
            sample_shape: vec![tokens],
            train: windows(&train, tokens, classes),
            test: windows(&test, tokens, classes),
            class_names: Vec::new(),
            validation: (!validation.is_empty()).then(|| windows(&validation, tokens, classes)),
        };
        Ok((dataset, test_bytes as f64 / test.len() as f64))
    }
}

/// The token ids of a corpus by split.
#[derive(Default)]
struct SplitIds {
    train: Vec<u32>,
    validation: Vec<u32>,
    test: Vec<u32>,
    /// Bytes of text the test ids came from.
    test_bytes: usize,
}

/// The split each of `files` (under the folder `dir`, sorted) names by its entry
/// at `dir`'s top level, when those entries name both a training and a test
/// split (`None` for a file naming none); `None` when they do not (the folder is
/// then split file by file, as any corpus).
fn parts_by_name(dir: &Path, files: &[std::path::PathBuf]) -> Option<Vec<Option<Part>>> {
    let top = |f: &std::path::PathBuf| {
        f.strip_prefix(dir)
            .ok()
            .and_then(|r| r.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let named: Vec<Option<Part>> = files.iter().map(|f| Part::named(&top(f))).collect();
    let has = |part| named.contains(&Some(part));
    (has(Part::Train) && has(Part::Test)).then_some(named)
}

/// Every file under `dir` (not following links to folders), hidden ones
/// skipped, into `files`.
fn collect_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let io = |e: std::io::Error| Error::Data {
        path: dir.display().to_string(),
        message: format!("cannot read the folder: {e}"),
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            collect_files(&path, files)?;
        } else if path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

/// The text file (or folder of files, see [`Corpus`]) at `path` as windows of
/// `sample_shape = [T]` byte tokens (see the module docs). Errors name the file:
/// unreadable, or too short for one window in each split.
pub fn read_text(path: &Path, sample_shape: &[usize]) -> Result<Dataset> {
    read_text_with(path, sample_shape, &Vocabulary::Bytes)
}

/// The text file (or folder of files, see [`Corpus`]) at `path` as windows of
/// `sample_shape = [T]` tokens of `vocabulary` (see the module docs). Errors
/// name the file.
pub fn read_text_with(path: &Path, sample_shape: &[usize], vocabulary: &Vocabulary) -> Result<Dataset> {
    read_text_data(path, sample_shape, vocabulary).map(|(d, _)| d)
}

/// [`read_text_with`], with the test split's bytes per token (see
/// [`Corpus::test_bytes_per_token`]) from the same tokenisation.
pub fn read_text_data(
    path: &Path,
    sample_shape: &[usize],
    vocabulary: &Vocabulary,
) -> Result<(Dataset, f64)> {
    read_corpus_data(&Corpus::read(path)?, path, sample_shape, vocabulary)
}

/// [`read_text_data`] of a corpus already read from `path` (errors name `path`).
pub fn read_corpus_data(
    corpus: &Corpus,
    path: &Path,
    sample_shape: &[usize],
    vocabulary: &Vocabulary,
) -> Result<(Dataset, f64)> {
    corpus
        .dataset_and_bytes_per_token(sample_shape, vocabulary)
        .map_err(|e| in_file(path, e))
}

/// The whole file at `path`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: format!("cannot read the text: {e}"),
    })
}

/// `e` as an error about the file at `path` (data and argument errors).
fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::Data { message, .. } | Error::InvalidArgument(message) => Error::Data {
            path: path.display().to_string(),
            message,
        },
        other => other,
    }
}

/// The training part of `text` as a tokenizer splits it: all but its last
/// [`TEST_FRACTION`], ending on a character boundary. Train a tokenizer on this
/// part only, so the test split stays unseen.
pub fn training_text(text: &[u8]) -> &[u8] {
    text.split_at(split_point(text, true)).0
}

/// Where the test split starts: [`TEST_FRACTION`] from the end; under a tokenizer
/// (`utf8`) moved forward past any UTF-8 continuation bytes so no character is
/// cut.
fn split_point(text: &[u8], utf8: bool) -> usize {
    let mut cut = ((text.len() as f64) * (1.0 - TEST_FRACTION)).round() as usize;
    while utf8 && cut < text.len() && (text[cut] & 0xC0) == 0x80 {
        cut += 1;
    }
    cut
}

/// Bytes of text per token in the test split of `text` under `vocabulary` (see
/// [`Corpus::test_bytes_per_token`]).
pub fn test_bytes_per_token(text: &[u8], vocabulary: &Vocabulary) -> Result<f64> {
    Corpus::from_bytes("text", text).test_bytes_per_token(vocabulary)
}

/// `bytes` as windows of `sample_shape = [T]` byte tokens, named `name` (see the
/// module docs).
pub fn text_dataset(name: &str, bytes: &[u8], sample_shape: &[usize]) -> Result<Dataset> {
    text_dataset_with(name, bytes, sample_shape, &Vocabulary::Bytes)
}

/// `bytes` as windows of `sample_shape = [T]` tokens of `vocabulary`, named
/// `name` (see the module docs).
pub fn text_dataset_with(
    name: &str,
    bytes: &[u8],
    sample_shape: &[usize],
    vocabulary: &Vocabulary,
) -> Result<Dataset> {
    Corpus::from_bytes(name, bytes).dataset(sample_shape, vocabulary)
}

/// Every window of `tokens + 1` ids of `ids` starting at a multiple of `tokens`:
/// the first `tokens` as inputs, the last `tokens` as labels of `classes`.
fn windows(ids: &[u32], tokens: usize, classes: usize) -> Split {
    let count = (ids.len() - 1) / tokens;
    let mut x = Vec::with_capacity(count * tokens);
    let mut labels = Vec::with_capacity(count * tokens);
    for w in 0..count {
        let start = w * tokens;
        x.extend(ids[start..start + tokens].iter().map(|&id| id as f32));
        labels.extend_from_slice(&ids[start + 1..start + tokens + 1]);
    }
    Split {
        x,
        sample_len: tokens,
        y: Targets::Classes {
            labels,
            classes,
            positions: tokens,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`longest_first`] against the tokenizers crate's own truncation on every
    /// pair of lengths up to 12 and every room up to 14.
    #[test]
    fn longest_first_is_the_tokenizers_truncation() {
        use tokenizers::utils::truncation::{
            TruncationDirection, TruncationParams, TruncationStrategy, truncate_encodings,
        };
        let blank = |n: usize| {
            tokenizers::Encoding::from_tokens(
                (0..n)
                    .map(|_| tokenizers::Token::new(0, String::new(), (0, 0)))
                    .collect(),
                0,
            )
        };
        for n1 in 0..=12 {
            for n2 in 0..=12 {
                for room in 0..=14 {
                    let params = TruncationParams {
                        direction: TruncationDirection::Right,
                        max_length: room,
                        strategy: TruncationStrategy::LongestFirst,
                        stride: 0,
                    };
                    let (a, b) = truncate_encodings(blank(n1), Some(blank(n2)), &params).unwrap();
                    let want = (a.len(), b.map_or(0, |b| b.len()));
                    assert_eq!(longest_first(n1, n2, room), want, "{n1} {n2} room {room}");
                }
            }
        }
    }

    #[test]
    fn windows_pair_each_byte_with_the_next() {
        let text: Vec<u8> = (0..=200u8).collect();
        let d = text_dataset("t", &text, &[4]).unwrap();
        // 201 bytes: 181 for training (45 windows of 4 + 1), 20 for testing (4).
        assert_eq!((d.train.len(), d.test.len()), (45, 4));
        assert_eq!(&d.train.x[4..8], &[4.0, 5.0, 6.0, 7.0]);
        let Targets::Classes {
            labels, positions, ..
        } = &d.train.y
        else {
            unreachable!()
        };
        assert_eq!((&labels[4..8], *positions), (&[5u32, 6, 7, 8][..], 4));
        // The test split starts after the training text: no window crosses.
        assert_eq!(d.test.x[0], 181.0);
    }

    #[test]
    fn short_text_and_non_sequence_models_are_refused() {
        let e = text_dataset("t", b"short", &[4]).unwrap_err().to_string();
        assert!(e.contains("too few") && e.contains("at least 50 bytes"), "{e}");
        let e = text_dataset("t", &[0; 1000], &[1, 28, 28])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[tokens]"), "{e}");
    }

    #[test]
    fn a_folder_is_a_corpus_of_its_files_split_one_by_one() {
        let dir = std::env::temp_dir().join(format!("wgml-corpus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        let a: Vec<u8> = (0..100u8).collect();
        let b: Vec<u8> = (100..200u8).collect();
        std::fs::write(dir.join("b.txt"), &a).unwrap();
        std::fs::write(dir.join("sub").join("c.txt"), &b).unwrap();
        std::fs::write(dir.join(".hidden"), b"no").unwrap();
        std::fs::write(dir.join(".git").join("HEAD"), b"no").unwrap();
        let corpus = Corpus::read(&dir).unwrap();
        let names: Vec<_> = corpus
            .documents
            .iter()
            .map(|(p, _)| p.strip_prefix(&dir).unwrap().to_path_buf())
            .collect();
        assert_eq!(names, [Path::new("b.txt"), &Path::new("sub").join("c.txt")]);
        // Each file gives its last tenth to the test split: bytes 90-99 and 190-199.
        let d = corpus.dataset(&[4], &Vocabulary::Bytes).unwrap();
        assert_eq!((d.train.len(), d.test.len()), (44, 4));
        assert_eq!(&d.test.x[..4], &[90.0, 91.0, 92.0, 93.0]);
        assert_eq!(&d.test.x[8..12], &[98.0, 99.0, 190.0, 191.0]);
        assert_eq!((d.train.x[89], d.train.x[90]), (89.0, 100.0));
        // A tokenizer needs UTF-8, and the error names the file that is not
        // (b.txt's bytes below 100 are ASCII; c.txt's are not).
        let vocab = Vocabulary::train_bpe(&PROSE.repeat(5), 300).unwrap();
        let e = corpus.dataset(&[4], &vocab).unwrap_err().to_string();
        assert!(e.contains("c.txt") && e.contains("not UTF-8"), "{e}");
        let e = corpus.training_texts().unwrap_err().to_string();
        assert!(e.contains("c.txt"), "{e}");
        let empty = dir.join("sub").join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = Corpus::read(&empty).unwrap_err().to_string();
        assert!(e.contains("holds no text file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A folder naming a training and a test split (WikiText's files, or Hugging
    /// Face's folders) gives each file whole to its split: no tenth cut off; the
    /// tokenizer's training texts are the training files only; a README beside
    /// them is left out and listed. Without both names it is a plain corpus.
    #[test]
    fn a_folder_naming_its_splits_is_split_by_name() {
        let dir = std::env::temp_dir().join(format!("wgml-named-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("Validation")).unwrap();
        let (a, b, c, d): (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) = (
            (0..41).collect(),
            (41..62).collect(),
            (62..83).collect(),
            (83..104).collect(),
        );
        std::fs::write(dir.join("wiki.train.raw"), &a).unwrap();
        std::fs::write(dir.join("wiki.test.raw"), &b).unwrap();
        std::fs::write(dir.join("Validation").join("part-1.txt"), &c).unwrap();
        std::fs::write(dir.join("Validation").join("part-2.txt"), &d).unwrap();
        std::fs::write(dir.join("README.md"), b"about the data").unwrap();
        let corpus = Corpus::read(&dir).unwrap();
        assert_eq!(
            corpus.parts(),
            [Part::Validation, Part::Validation, Part::Test, Part::Train]
        );
        assert_eq!(corpus.ignored, [dir.join("README.md")]);
        let data = corpus.dataset(&[4], &Vocabulary::Bytes).unwrap();
        // 41 training bytes: 10 windows; 21 test bytes: 5; 42 validation bytes: 10.
        let validation = data.validation.as_ref().unwrap();
        assert_eq!((data.train.len(), data.test.len(), validation.len()), (10, 5, 10));
        assert_eq!(&data.test.x[..4], &[41.0, 42.0, 43.0, 44.0]);
        assert_eq!(&validation.x[..4], &[62.0, 63.0, 64.0, 65.0]);
        assert_eq!(corpus.test_bytes_per_token(&Vocabulary::Bytes).unwrap(), 1.0);
        let texts = corpus.training_texts().unwrap();
        assert_eq!(texts.len(), 1);
        assert_eq!(texts[0].as_bytes(), &a[..]);
        // A validation part too short for a window is refused, not dropped.
        std::fs::write(dir.join("Validation").join("part-1.txt"), b"ab").unwrap();
        std::fs::write(dir.join("Validation").join("part-2.txt"), b"").unwrap();
        let e = Corpus::read(&dir)
            .unwrap()
            .dataset(&[4], &Vocabulary::Bytes)
            .unwrap_err()
            .to_string();
        assert!(e.contains("validation text holds 2 tokens"), "{e}");
        // Without a validation part the dataset has none.
        std::fs::remove_dir_all(dir.join("Validation")).unwrap();
        assert!(
            Corpus::read(&dir)
                .unwrap()
                .dataset(&[4], &Vocabulary::Bytes)
                .unwrap()
                .validation
                .is_none()
        );
        // Without a test part the folder is a plain corpus: every file split by tenths.
        std::fs::remove_file(dir.join("wiki.test.raw")).unwrap();
        let plain = Corpus::read(&dir).unwrap();
        assert!(plain.parts().iter().all(|p| *p == Part::Both) && plain.ignored.is_empty());
        // Words inside names do not count: "contest" is no test.
        assert_eq!(Part::named("contest.txt"), None);
        assert_eq!(Part::named("my-dev_set.TXT"), Some(Part::Validation));
        let _ = std::fs::remove_dir_all(&dir);
    }

    const PROSE: &str = "The cat sat on the mat. The cat ate the rat. A hat, a mat, a cat: \
        that is what the cat has. Naïve café crème, déjà vu. The rat ran; the cat sat.\n";

    #[test]
    fn bpe_is_deterministic_reversible_and_saved_whole() {
        let text = PROSE.repeat(20);
        let a = Vocabulary::train_bpe(&text, 300).unwrap();
        let b = Vocabulary::train_bpe(&text, 300).unwrap();
        assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
        let size = a.size();
        assert!(size > BYTE_VOCAB && size <= 300, "{size}");
        let ids = a.encode(text.as_bytes()).unwrap();
        let per_token = test_bytes_per_token(text.as_bytes(), &a).unwrap();
        assert!(per_token > 2.0, "{per_token} bytes per token");
        assert_eq!(
            test_bytes_per_token(text.as_bytes(), &Vocabulary::Bytes).unwrap(),
            1.0
        );
        // Merges make the text shorter in tokens than in bytes, and it decodes back.
        assert!(ids.len() * 2 < text.len(), "{} tokens", ids.len());
        assert!(ids.iter().all(|&id| (id as usize) < size));
        assert_eq!(a.decode(&ids).unwrap(), text);
        // Token by token, the stream gives the same text, multi-byte characters whole.
        let mut stream = a.stream();
        let mut streamed = Vec::new();
        for &id in &ids {
            streamed.extend(stream.step(id).unwrap());
        }
        assert_eq!(String::from_utf8(streamed).unwrap(), text);
        // The JSON reads back as the same tokenizer.
        let c = Vocabulary::from_json(&a.to_json().unwrap().unwrap()).unwrap();
        assert_eq!(c.encode(text.as_bytes()).unwrap(), ids);
        assert!(Vocabulary::from_json("{\"model\": 3}").is_err());
        // As a tokenizer.json file, and a broken file named in its error.
        let dir = std::env::temp_dir().join(format!("wgml-bpe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokenizer.json");
        std::fs::write(&file, a.to_json().unwrap().unwrap()).unwrap();
        let d = Vocabulary::from_file(&file).unwrap();
        assert_eq!(d.encode(text.as_bytes()).unwrap(), ids);
        std::fs::write(&file, "{").unwrap();
        let e = Vocabulary::from_file(&file).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("not a tokenizer"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        // An end-of-text token is a special added one of a known name.
        assert_eq!((Vocabulary::Bytes.end_of_text(), a.end_of_text()), (None, None));
        let mut json: serde_json::Value = serde_json::from_str(&a.to_json().unwrap().unwrap()).unwrap();
        let token = |id: usize, content: &str, special: bool| {
            serde_json::json!({ "id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special })
        };
        json["added_tokens"] =
            serde_json::json!([token(size, "</s>", false), token(size + 1, "<|endoftext|>", true)]);
        let with_end = Vocabulary::from_json(&json.to_string()).unwrap();
        assert_eq!(with_end.end_of_text(), Some(size as u32 + 1));
        let e = Vocabulary::train_bpe(&text, 256).unwrap_err().to_string();
        assert!(e.contains("merge nothing"), "{e}");
        let e = Vocabulary::train_bpe(&text, usize::MAX).unwrap_err().to_string();
        assert!(e.contains("more than wgml builds"), "{e}");
        // In pieces, the same ids (cut only after a newline before a word).
        let pieces: Vec<&str> = pieces(&text, 100).collect();
        assert!(pieces.len() > 10 && pieces.concat() == text);
        assert!(
            pieces[..pieces.len() - 1]
                .iter()
                .all(|p| p.ends_with('\n') && p.len() >= 100)
        );
        let Vocabulary::Tokenizer(t) = &a else {
            unreachable!()
        };
        let mut by_piece = Vec::new();
        for p in pieces {
            by_piece.extend_from_slice(t.encode(p, false).unwrap().get_ids());
        }
        assert_eq!(by_piece, ids);
        // A tokenizer.json that truncates (as many on the Hub do) reads all the text.
        let mut json: serde_json::Value = serde_json::from_str(&a.to_json().unwrap().unwrap()).unwrap();
        json["truncation"] = serde_json::json!({
            "direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0
        });
        let cut = Vocabulary::from_json(&json.to_string()).unwrap();
        assert_eq!(cut.encode(text.as_bytes()).unwrap(), ids);
    }

    #[test]
    fn tokenized_windows_split_on_a_character_and_refuse_other_bytes() {
        // 1010 bytes of two-byte characters: a tenth from the end is byte 909, the
        // middle of one; the cut moves on to 910.
        let text = "é".repeat(505);
        let vocab = Vocabulary::train_bpe(&text, 260).unwrap();
        assert_eq!(split_point(text.as_bytes(), true), 910);
        assert_eq!(training_text(text.as_bytes()).len(), 910);
        let d = text_dataset_with("t", text.as_bytes(), &[4], &vocab).unwrap();
        let Targets::Classes { labels, classes, .. } = &d.train.y else {
            unreachable!()
        };
        assert_eq!(*classes, vocab.size());
        // Inputs and labels are the same ids one position apart.
        assert_eq!(d.train.x[1], labels[0] as f32);
        let e = text_dataset_with("t", &[0xff; 1000], &[4], &vocab)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = text_dataset_with("t", b"short text", &[4], &vocab)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokens") && e.contains("too few"), "{e}");
    }
}
