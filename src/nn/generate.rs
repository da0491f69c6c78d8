//! Sampling from a causal language model: a model whose input is `[T]` token ids
//! and whose output is `[T, V]` next-token classes (sparse categorical
//! cross-entropy with a label per position, e.g. `examples/models/byte_lm.json`
//! trained on `text:FILE`). While the context fits in T, a key/value cache
//! ([`Decoder`]) holds every position's keys and values: a prompt with at least
//! [`PREFILL_FROM`] tokens before its last gets them in one pass, a shorter one a
//! step per token,
//! and each new token costs one position's work; past T (or
//! without a cache) each new token runs the model on the last T tokens (padded
//! after the context's end while shorter: a causal model's position i reads
//! positions ≤ i only). Either way it draws from the probabilities at the
//! context's last position, the only ones read back. A [`Session`] keeps the
//! cache between texts that share their start (a chat's turns).

use std::ops::ControlFlow;

use rand::Rng;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::graph::decode::{self, Decoder};
use crate::nn::Model;

/// How the next token is drawn from the model's probabilities.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Probabilities raised to `1 / temperature` and renormalised: below 1
    /// sharper, above 1 flatter; 0 takes the most probable token (greedy).
    pub temperature: f32,
    /// Draw among the `k` most probable tokens only (`None`: all).
    pub top_k: Option<usize>,
    /// Nucleus sampling: draw among the most probable tokens whose probabilities
    /// (after the temperature and `top_k`) first add up to at least `p`, in
    /// `(0, 1]` (`None`: all), as Hugging Face's `top_p`.
    pub top_p: Option<f32>,
    /// Draw only token ids below this: a tokenizer's size when the model has
    /// more outputs than it has tokens (`None`: every output).
    pub vocabulary: Option<usize>,
    /// Hugging Face's `repetition_penalty` θ > 0: before the softmax, the logit of
    /// every token already in the text (prompt included) is divided by θ when
    /// positive and multiplied by it otherwise, so θ > 1 makes repeats less likely
    /// (`None`: no penalty).
    pub repetition_penalty: Option<f32>,
    /// Hugging Face's `no_repeat_ngram_size` n ≥ 1: a token that would complete an
    /// n-gram the text already holds is never drawn (unless every token would; then
    /// the rule is skipped for that token). `None`: no rule.
    pub no_repeat_ngram: Option<usize>,
    /// Hugging Face's `min_p`, in `(0, 1]`: draw only among the tokens at
    /// least `p` times as probable as the most probable one (after the
    /// temperature, `top_k` and `top_p`). `None`: no floor.
    pub min_p: Option<f32>,
}

impl Sampling {
    /// The most probable token every time.
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_k: None,
        top_p: None,
        vocabulary: None,
        repetition_penalty: None,
        no_repeat_ngram: None,
        min_p: None,
    };

    /// Checks the settings: the temperature finite and not negative, `top_k` at
    /// least 1, `top_p` in `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid(format!(
                "temperature {} must be 0 (greedy) or a positive number",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(Error::invalid("top-k must be at least 1"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(Error::invalid(format!(
                "top-p {p} must be in (0, 1]: the share of probability the drawn tokens cover"
            )));
        }
        if self.vocabulary == Some(0) {
            return Err(Error::invalid("a vocabulary of 0 tokens leaves nothing to draw"));
        }
        if let Some(r) = self.repetition_penalty
            && !(r > 0.0 && r.is_finite())
        {
            return Err(Error::invalid(format!(
                "repetition penalty {r} must be a positive number (1 is none; above 1 discourages \
                 repeats)"
            )));
        }
        if self.no_repeat_ngram == Some(0) {
            return Err(Error::invalid("no-repeat n-gram size must be at least 1"));
        }
        if let Some(p) = self.min_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(Error::invalid(format!(
                "min-p {p} must be in (0, 1]: the least probability a drawn token has, as a share \
                 of the most probable one's"
            )));
        }
        Ok(())
    }

    /// The probabilities of the next token after `context` from the model's
    /// `logits` for it: the repetition penalty on the logits, a softmax, then the
    /// n-grams that may not repeat taken out (their tokens at probability 0).
    pub fn probabilities(&self, logits: &[f32], context: &[u32]) -> Vec<f32> {
        let mut logits = logits.to_vec();
        if let Some(theta) = self.repetition_penalty {
            let mut seen = vec![false; logits.len()];
            for &id in context {
                if let Some(done) = seen.get_mut(id as usize).filter(|d| !**d) {
                    *done = true;
                    let l = &mut logits[id as usize];
                    *l = if *l > 0.0 { *l / theta } else { *l * theta };
                }
            }
        }
        let mut probs = vec![0.0; logits.len()];
        crate::reference::softmax::softmax(&logits, logits.len(), &mut probs);
        if let Some(n) = self.no_repeat_ngram {
            let banned = repeated_ngram_ends(context, n);
            let open = probs
                .iter()
                .enumerate()
                .any(|(i, &p)| p > 0.0 && !banned.contains(&(i as u32)));
            if open {
                for &id in &banned {
                    if let Some(p) = probs.get_mut(id as usize) {
                        *p = 0.0;
                    }
                }
            }
        }
        probs
    }

    /// Draws an index of `probs` (non-negative, summing to about 1) with `rng`.
    pub fn draw(&self, probs: &[f32], rng: &mut impl Rng) -> usize {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        if self.temperature == 0.0 || probs.len() <= 1 {
            return order.first().copied().unwrap_or(0);
        }
        order.truncate(self.top_k.unwrap_or(probs.len()).min(probs.len()));
        // p^(1/T) in log space, shifted by the largest so nothing overflows.
        let logs: Vec<f64> = order
            .iter()
            .map(|&i| (probs[i].max(0.0) as f64).ln() / self.temperature as f64)
            .collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !top.is_finite() {
            return order[0];
        }
        let mut weights: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
        if let Some(p) = self.top_p {
            // The most probable tokens (in order) until their share reaches p.
            let total: f64 = weights.iter().sum();
            let mut covered = 0.0;
            let keep = weights
                .iter()
                .position(|w| {
                    covered += w / total;
                    covered >= p as f64
                })
                .map_or(weights.len(), |i| i + 1);
            weights.truncate(keep);
        }
        if let Some(p) = self.min_p {
            // The weights are relative to the most probable token's (1), as
            // renormalised probabilities keep their ratios.
            let keep = weights.iter().take_while(|&&w| w >= p as f64).count().max(1);
            weights.truncate(keep);
        }
        let mut pick = rng.random::<f64>() * weights.iter().sum::<f64>();
        for (w, &i) in weights.iter().zip(&order) {
            if pick < *w {
                return i;
            }
            pick -= w;
        }
        order[order.len() - 1]
    }
}

/// The tokens that would complete, after `context`, an n-gram `context` already
/// holds: for each earlier occurrence of its last n − 1 tokens, the token that
/// followed (for n = 1, every token of `context`), as Hugging Face's
/// `NoRepeatNGramLogitsProcessor` bans them.
pub fn repeated_ngram_ends(context: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || context.len() + 1 < n {
        return Vec::new();
    }
    let prefix = &context[context.len() + 1 - n..];
    let mut ends: Vec<u32> = context
        .windows(n)
        .filter(|w| w[..n - 1] == *prefix)
        .map(|w| w[n - 1])
        .collect();
    ends.sort_unstable();
    ends.dedup();
    ends
}

/// The sequence length T and vocabulary V of `model` as a causal language
/// model, or an error saying why it is not one.
pub fn lm_shape(model: &Model) -> Result<(usize, usize)> {
    let input = model.spec.input_shape();
    let positions = model.label_positions();
    match input {
        &[t] if t == positions && t > 1 => Ok((t, model.output_dim() / t)),
        _ => Err(Error::invalid(format!(
            "generating needs a language model: input [tokens] and output [tokens, vocabulary] \
             under sparse categorical cross-entropy (e.g. examples/models/byte_lm.json); this \
             model takes {input:?} and gives {:?} ({})",
            model.graph.shape(model.output),
            model.loss.name()
        ))),
    }
}

/// The token ids `model` both takes and gives: below its outputs per position
/// (`vocab`) and below the rows of an Embedding reading its input.
fn token_limit(model: &Model, vocab: usize) -> usize {
    model
        .input_embedding_rows()
        .map_or(vocab, |(rows, _)| rows.min(vocab))
}

/// Whether `model`'s ops prove it causal ([`decode::causal_ops`]): every op
/// from its token input to its output acts on each position alone or is
/// attention under a causal mask.
pub fn causal_by_construction(model: &Model) -> bool {
    decode::causal_ops(&model.graph, model.output)
}

/// Most windows [`check_causal`] runs when the model's ops do not prove it causal.
const MAX_PROBES: usize = 16;

/// Checks that `model` is causal: that no position's output reads a later
/// position, which generation relies on (it pads the window after the context's
/// end). A model whose ops prove it ([`causal_by_construction`]) passes at once;
/// any other is run ([`probe_causal`]).
pub fn check_causal(model: &mut Model, ctx: &Context) -> Result<()> {
    lm_shape(model)?;
    if causal_by_construction(model) {
        return Ok(());
    }
    probe_causal(model, ctx)
}

/// Checks that `model` is causal by running it on windows that each change one
/// token k (every k for up to 16 positions, else 16 spread
/// over the window, the last included) against a fixed window: every position
/// before k must give the same probabilities (to 1e-4 relative). A model whose
/// outputs read a later token at a probed position fails it, whatever its layers
/// are. (A model taking a single token id has nothing to probe.)
pub fn probe_causal(model: &mut Model, ctx: &Context) -> Result<()> {
    let (t, vocab) = lm_shape(model)?;
    let ids = token_limit(model, vocab);
    if ids < 2 {
        return Ok(());
    }
    let probes: Vec<usize> = if t - 1 <= MAX_PROBES {
        (1..t).collect()
    } else {
        let mut p: Vec<usize> = (1..=MAX_PROBES).map(|i| i * (t - 1) / MAX_PROBES).collect();
        p.dedup();
        p
    };
    let base: Vec<u32> = (0..t).map(|i| ((i * 7919 + 13) % ids) as u32).collect();
    let mut x: Vec<f32> = base.iter().map(|&id| id as f32).collect();
    for &k in &probes {
        x.extend(base.iter().enumerate().map(|(i, &id)| {
            let id = if i == k { (id + 1) % ids as u32 } else { id };
            id as f32
        }));
    }
    let probs = model.predict(ctx, &x, probes.len() + 1)?;
    let (fixed, changed) = probs.split_at(t * vocab);
    for (n, &k) in probes.iter().enumerate() {
        let other = &changed[n * t * vocab..(n + 1) * t * vocab];
        let moved = fixed[..k * vocab]
            .iter()
            .zip(&other[..k * vocab])
            .position(|(&p, &q)| (p - q).abs() > 1e-4 * p.abs().max(q.abs()) + 1e-12);
        if let Some(i) = moved {
            return Err(Error::invalid(format!(
                "the model is not causal: changing its token {k} changes the probabilities at \
                 position {} (from {} to {}), so its outputs read later tokens and it cannot \
                 continue a text (train it with causal attention: \"causal\": true in \
                 MultiHeadAttention)",
                i / vocab,
                fixed[i],
                other[i]
            )));
        }
    }
    Ok(())
}

/// Continues `prompt` (token ids, at least one) by up to `count` tokens drawn
/// with `sampling` from `rng`, among the ids the model both takes and gives (its
/// outputs, the rows of its input Embedding, and `sampling.vocabulary`).
/// `on_token` sees each new token as it is drawn and may stop the generation
/// (`ControlFlow::Break`). Returns the new tokens. The model must be causal
/// ([`check_causal`], run first).
pub fn generate(
    model: &mut Model,
    ctx: &Context,
    prompt: &[u32],
    count: usize,
    sampling: Sampling,
    rng: &mut impl Rng,
    on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Vec<u32>> {
    generate_with(model, ctx, prompt, count, sampling, rng, on_token, true)
}

/// Prompt tokens before the last from which [`generate_with`] computes their keys
/// and values in one pass ([`Decoder::prefill`]) rather than a step each: a
/// shorter prompt's few steps cost less than lowering (and, on GPUs, tuning)
/// another plan.
pub const PREFILL_FROM: usize = 4;

/// [`generate`], with a key/value cache ([`Decoder`]) while the context fits in
/// the model's T when `use_cache` and the model's ops allow one, else (and past T
/// tokens) by running the whole window for each token. Both draw the same tokens
/// from the same probabilities up to f32 rounding.
#[allow(clippy::too_many_arguments)]
pub fn generate_with(
    model: &mut Model,
    ctx: &Context,
    prompt: &[u32],
    count: usize,
    sampling: Sampling,
    rng: &mut impl Rng,
    on_token: impl FnMut(u32) -> ControlFlow<()>,
    use_cache: bool,
) -> Result<Vec<u32>> {
    Session::new(model, ctx, use_cache)?.generate(model, ctx, prompt, count, sampling, rng, on_token)
}

/// A text a model continues, turn after turn (a chat), and the key/value cache
/// of what it has read: each [`Session::generate`] is given the whole text so
/// far and reuses the cache for the tokens it shares, from its start, with what
/// the model read before (a chat's earlier turns), so only the new tokens cost
/// a step each.
pub struct Session {
    decoder: Option<Decoder>,
    /// The tokens the decoder holds the keys and values of, in order.
    cached: Vec<u32>,
}

impl Session {
    /// A session of `model` (checked causal: [`check_causal`]), with a
    /// key/value cache when `use_cache` and the model's ops allow one.
    pub fn new(model: &mut Model, ctx: &Context, use_cache: bool) -> Result<Session> {
        check_causal(model, ctx)?;
        let decoder = if use_cache {
            Decoder::new(ctx, &model.graph, &model.store, model.output)?
        } else {
            None
        };
        Ok(Session {
            decoder,
            cached: Vec::new(),
        })
    }

    /// Continues `text` (token ids, at least one; the whole text so far) by up
    /// to `count` tokens, as [`generate`] does; the model must be the session's.
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        &mut self,
        model: &mut Model,
        ctx: &Context,
        text: &[u32],
        count: usize,
        sampling: Sampling,
        rng: &mut impl Rng,
        mut on_token: impl FnMut(u32) -> ControlFlow<()>,
    ) -> Result<Vec<u32>> {
        sampling.validate()?;
        let (t, vocab) = lm_shape(model)?;
        let limit = token_limit(model, vocab);
        let drawn = sampling.vocabulary.map_or(limit, |v| v.min(limit));
        if text.is_empty() {
            return Err(Error::invalid("the prompt holds no token"));
        }
        if let Some(&id) = text.iter().find(|&&id| id as usize >= drawn) {
            return Err(Error::invalid(format!(
                "prompt token {id} is outside the model's vocabulary of {drawn}"
            )));
        }
        // What the cache holds of this text: the shared start, short of the
        // text's last token, whose step gives the first logits.
        let shared = self
            .cached
            .iter()
            .zip(text)
            .take_while(|(a, b)| a == b)
            .count()
            .min(text.len() - 1);
        if let Some(decoder) = &mut self.decoder {
            decoder.rewind(shared)?;
        }
        self.cached.truncate(shared);
        let mut context = text.to_vec();
        let mut new = Vec::with_capacity(count);
        let mut x = vec![0f32; t];
        for _ in 0..count {
            let logits = match self.decoder.as_mut().filter(|_| context.len() <= t) {
                // Every token not yet cached (the prompt, prefilled but for its
                // last token when it is long enough and the cache empty; then the
                // last one drawn), at its own position.
                Some(decoder) => {
                    if decoder.position() == 0 && context.len() > PREFILL_FROM {
                        decoder.prefill(ctx, &context[..context.len() - 1])?;
                    }
                    let mut logits = Vec::new();
                    for &id in &context[decoder.position()..] {
                        logits = decoder.step(ctx, id)?;
                    }
                    self.cached = context.clone();
                    logits
                }
                // Past T tokens the window slides: every position moves, so the
                // whole window runs again.
                None => {
                    let window = &context[context.len().saturating_sub(t)..];
                    x.fill(0.0);
                    for (slot, &id) in x.iter_mut().zip(window) {
                        *slot = id as f32;
                    }
                    model.logits_at_position(ctx, &x, window.len() - 1)?
                }
            };
            let probs = sampling.probabilities(&logits, &context);
            let next = sampling.draw(&probs[..drawn], rng) as u32;
            context.push(next);
            new.push(next);
            if on_token(next).is_break() {
                break;
            }
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn greedy_takes_the_most_probable_and_sampling_follows_the_probabilities() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let probs = [0.1, 0.6, 0.3];
        assert_eq!(Sampling::GREEDY.draw(&probs, &mut rng), 1);
        let plain = Sampling {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            vocabulary: None,
            repetition_penalty: None,
            no_repeat_ngram: None,
            min_p: None,
        };
        let mut counts = [0usize; 3];
        for _ in 0..10_000 {
            counts[plain.draw(&probs, &mut rng)] += 1;
        }
        for (c, p) in counts.iter().zip(probs) {
            assert!((*c as f32 / 10_000.0 - p).abs() < 0.02, "{counts:?}");
        }
        // Top-2 never draws the least probable; a low temperature nearly always
        // draws the most probable.
        let top2 = Sampling {
            temperature: 1.0,
            top_k: Some(2),
            top_p: None,
            vocabulary: None,
            repetition_penalty: None,
            no_repeat_ngram: None,
            min_p: None,
        };
        assert!((0..1000).all(|_| top2.draw(&probs, &mut rng) != 0));
        let cold = Sampling {
            temperature: 0.05,
            top_k: None,
            top_p: None,
            vocabulary: None,
            repetition_penalty: None,
            no_repeat_ngram: None,
            min_p: None,
        };
        assert!((0..1000).filter(|_| cold.draw(&probs, &mut rng) == 1).count() > 990);
        assert!(
            Sampling {
                temperature: -1.0,
                top_k: None,
                top_p: None,
                vocabulary: None,
                repetition_penalty: None,
                no_repeat_ngram: None,
                min_p: None,
            }
            .validate()
            .is_err()
        );
        assert!(
            Sampling {
                temperature: 1.0,
                top_k: Some(0),
                top_p: None,
                vocabulary: None,
                repetition_penalty: None,
                no_repeat_ngram: None,
                min_p: None,
            }
            .validate()
            .is_err()
        );
    }

    /// Top-p keeps the most probable tokens until their share reaches p, and
    /// draws among them in proportion; p outside (0, 1] is refused.
    /// Hugging Face's repetition penalty and n-gram rule, by hand.
    #[test]
    fn repetition_penalty_and_ngram_rule_follow_hugging_face() {
        // Logits [2, -1, 0.5, 1]; tokens 0 and 1 already in the text, θ = 2:
        // 2 → 1 (positive: divided), -1 → -2 (negative: multiplied).
        let s = Sampling {
            repetition_penalty: Some(2.0),
            ..Sampling::GREEDY
        };
        let probs = s.probabilities(&[2.0, -1.0, 0.5, 1.0], &[0, 1, 0]);
        let mut want = vec![0.0; 4];
        crate::reference::softmax::softmax(&[1.0, -2.0, 0.5, 1.0], 4, &mut want);
        assert_eq!(probs, want);
        // The n-grams of [1, 2, 3, 1, 2]: after "1 2", a 3 would repeat "1 2 3".
        assert_eq!(repeated_ngram_ends(&[1, 2, 3, 1, 2], 3), [3]);
        assert_eq!(repeated_ngram_ends(&[1, 2, 3, 1, 2], 2), [3]);
        assert_eq!(repeated_ngram_ends(&[4, 4, 5], 1), [4, 5]);
        assert_eq!(repeated_ngram_ends(&[1, 2], 4), Vec::<u32>::new());
        let rule = Sampling {
            no_repeat_ngram: Some(2),
            min_p: None,
            ..Sampling::GREEDY
        };
        let probs = rule.probabilities(&[0.0, 0.0, 5.0, 0.0], &[2, 2]);
        assert_eq!(probs[2], 0.0, "2 2 would repeat: {probs:?}");
        assert_eq!(
            Sampling::GREEDY.draw(&probs, &mut rand::rngs::StdRng::seed_from_u64(3)),
            0
        );
        // When every token is banned the rule steps aside.
        let probs = rule.probabilities(&[0.0, 5.0], &[0, 0, 1, 1, 0]);
        assert!(probs[1] > 0.9, "{probs:?}");
        for bad in [
            Sampling {
                repetition_penalty: Some(0.0),
                ..Sampling::GREEDY
            },
            Sampling {
                no_repeat_ngram: Some(0),
                min_p: None,
                ..Sampling::GREEDY
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn top_p_draws_from_the_smallest_set_covering_p() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let probs = [0.15, 0.5, 0.05, 0.3];
        let nucleus = |p| Sampling {
            temperature: 1.0,
            top_k: None,
            top_p: Some(p),
            vocabulary: None,
            repetition_penalty: None,
            no_repeat_ngram: None,
            min_p: None,
        };
        // 0.5 + 0.3 reach 0.75: tokens 1 and 3, drawn 5 : 3.
        let mut counts = [0usize; 4];
        for _ in 0..10_000 {
            counts[nucleus(0.75).draw(&probs, &mut rng)] += 1;
        }
        assert_eq!((counts[0], counts[2]), (0, 0), "{counts:?}");
        assert!((counts[1] as f64 / 10_000.0 - 0.625).abs() < 0.02, "{counts:?}");
        // A share the first token alone covers: always it; 1 keeps every token.
        assert!((0..1000).all(|_| nucleus(0.4).draw(&probs, &mut rng) == 1));
        let mut seen = [false; 4];
        for _ in 0..2000 {
            seen[nucleus(1.0).draw(&probs, &mut rng)] = true;
        }
        assert_eq!(seen, [true; 4]);
        // With top-k 1 first, only the most probable is left whatever p says.
        let both = Sampling {
            top_k: Some(1),
            ..nucleus(0.99)
        };
        assert!((0..100).all(|_| both.draw(&probs, &mut rng) == 1));
        for bad in [0.0, -0.5, 1.5, f32::NAN] {
            let e = nucleus(bad).validate().unwrap_err().to_string();
            assert!(e.contains("top-p"), "{e}");
        }
    }

    /// Min-p keeps the tokens at least p times as probable as the most
    /// probable, after the temperature, as Hugging Face's MinPLogitsWarper.
    #[test]
    fn min_p_keeps_the_tokens_near_the_most_probable() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let probs = [0.15, 0.5, 0.05, 0.3];
        let floor = |p, temperature| Sampling {
            temperature,
            min_p: Some(p),
            ..Sampling::GREEDY
        };
        // 0.3 / 0.5 = 0.6 and 0.15 / 0.5 = 0.3: a floor of 0.5 keeps tokens 1
        // and 3, drawn 5 : 3.
        let mut counts = [0usize; 4];
        for _ in 0..10_000 {
            counts[floor(0.5, 1.0).draw(&probs, &mut rng)] += 1;
        }
        assert_eq!((counts[0], counts[2]), (0, 0), "{counts:?}");
        assert!((counts[1] as f64 / 10_000.0 - 0.625).abs() < 0.02, "{counts:?}");
        // At temperature 2 the ratios are square roots: 0.3 / 0.5 → 0.77,
        // 0.15 / 0.5 → 0.55, 0.05 / 0.5 → 0.32; a floor of 0.5 keeps three.
        let mut seen = [false; 4];
        for _ in 0..4000 {
            seen[floor(0.5, 2.0).draw(&probs, &mut rng)] = true;
        }
        assert_eq!(seen, [true, true, false, true]);
        assert!((0..100).all(|_| floor(1.0, 1.0).draw(&probs, &mut rng) == 1));
        for bad in [0.0, -0.1, 1.5, f32::NAN] {
            let e = floor(bad, 1.0).validate().unwrap_err().to_string();
            assert!(e.contains("min-p"), "{e}");
        }
    }
}
