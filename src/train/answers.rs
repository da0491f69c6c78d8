//! A question answerer's answers and their scores, as Hugging Face's
//! `run_qa.py` picks them (`utils_qa.postprocess_qa_predictions`) and the SQuAD
//! metrics (`evaluate`'s `squad` and `squad_v2`) score them.
//!
//! For each example, every window's `n_best` highest start scores are paired
//! with its `n_best` highest end scores; a pair counts where both tokens are
//! in the context, the end is not before the start, and it spans at most
//! `max_answer_tokens` tokens; its score is the sum of the two logits (the
//! scores before the softmax, so that windows compare). The best-scored is the
//! answer, the context's characters from the start token's first to the end
//! token's last. Where questions may have no answer (SQuAD 2.0), the empty
//! answer's score is the lowest over the windows of the `[CLS]` token's start
//! and end logits, and it is the answer where it beats the best span's by more
//! than `null_threshold`.
//!
//! Exact match and F1 compare answers normalised as SQuAD's script does (lower
//! case; ASCII punctuation, the articles a, an, the and repeated spaces
//! removed): exact match whether the two are equal, F1 the harmonic mean of the
//! precision and recall of their words; each the best over the question's
//! answers, averaged over the questions, in percent.

use serde::Serialize;

use crate::data::Split;
use crate::data::squad::{Feature, QaExample, QaFeatures};

/// Questions read as a question answerer's windows: what picking and scoring
/// its answers needs besides the logits. A split of the questions (test,
/// validation) is one of these next to the windows' [`Split`]
/// ([`Questions::split`]), whose samples are the windows in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Questions {
    /// The questions, with their contexts and true answers.
    pub examples: Vec<QaExample>,
    /// Their windows, in the order of the questions.
    pub windows: QaFeatures,
    /// Tokens per window.
    pub tokens: usize,
    /// Whether a question may have no answer (SQuAD 2.0).
    pub unanswerable: bool,
}

impl Questions {
    /// The windows as a split (ids and start/end labels), as a model reads them.
    pub fn split(&self) -> Split {
        self.windows.split(self.tokens)
    }

    /// The number of windows: the samples of [`Questions::split`].
    pub fn len(&self) -> usize {
        self.windows.features.len()
    }

    /// Whether there are no windows.
    pub fn is_empty(&self) -> bool {
        self.windows.features.is_empty()
    }

    /// Each question's answer from `logits`, each window's start then end
    /// logits (`2 × tokens` values), windows in order.
    pub fn answers(&self, logits: &[f32]) -> Vec<Predicted> {
        let options = AnswerOptions {
            unanswerable: self.unanswerable,
            ..AnswerOptions::default()
        };
        best_answers(
            &self.examples,
            &self.windows.features,
            logits,
            self.tokens,
            &options,
        )
    }

    /// The exact match and F1 of the answers [`Questions::answers`] picks.
    pub fn scores(&self, logits: &[f32]) -> AnswerScores {
        let texts: Vec<String> = self.answers(logits).into_iter().map(|p| p.answer).collect();
        answer_scores(&self.examples, &texts, self.unanswerable)
    }
}

/// How answers are picked (Hugging Face's `run_qa.py` defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnswerOptions {
    /// Start and end candidates of each window (`n_best_size`, 20).
    pub n_best: usize,
    /// The most tokens an answer spans (`max_answer_length`, 30).
    pub max_answer_tokens: usize,
    /// Whether a question may have no answer (`version_2_with_negative`).
    pub unanswerable: bool,
    /// How much better the empty answer must score (`null_score_diff_threshold`, 0).
    pub null_threshold: f32,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions {
            n_best: 20,
            max_answer_tokens: 30,
            unanswerable: false,
            null_threshold: 0.0,
        }
    }
}

/// An example's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Predicted {
    /// The question's id.
    pub id: String,
    /// The answer ("" for none).
    pub answer: String,
    /// Its characters in the context (`None` for no answer).
    pub span: Option<(usize, usize)>,
    /// Its start and end logits' sum.
    pub score: f32,
    /// Its share of the softmax over the example's kept candidates (Hugging
    /// Face's `probability` in `nbest_predictions.json`).
    pub probability: f64,
}

/// A candidate answer: its characters (`None`: the empty answer), score and
/// logits.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    span: Option<(usize, usize)>,
    score: f32,
    start: f32,
    end: f32,
    /// Hugging Face's "empty" answer where no candidate fits.
    stand_in: bool,
}

/// The positions of `scores` from the highest, `n` of them.
fn top(scores: &[f32], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(n);
    order
}

/// Each example's answer (see the module docs) from its features' logits:
/// `logits` holds `[start logits (T), end logits (T)]` for each of `features`.
pub fn best_answers(
    examples: &[QaExample],
    features: &[Feature],
    logits: &[f32],
    tokens: usize,
    o: &AnswerOptions,
) -> Vec<Predicted> {
    let mut by_example: Vec<Vec<usize>> = vec![Vec::new(); examples.len()];
    for (i, f) in features.iter().enumerate() {
        if let Some(list) = by_example.get_mut(f.example) {
            list.push(i);
        }
    }
    examples
        .iter()
        .zip(by_example)
        .map(|(e, windows)| {
            let mut null: Option<Candidate> = None;
            let mut found = Vec::new();
            for f in windows {
                let row = &logits[f * 2 * tokens..(f + 1) * 2 * tokens];
                let (starts, ends) = row.split_at(tokens);
                let offsets = &features[f].offsets;
                let here = starts[0] + ends[0];
                if null.is_none_or(|n| n.score > here) {
                    null = Some(Candidate {
                        span: None,
                        score: here,
                        start: starts[0],
                        end: ends[0],
                        stand_in: false,
                    });
                }
                let best_ends = top(ends, o.n_best);
                for a in top(starts, o.n_best) {
                    for &b in &best_ends {
                        let (Some(Some(first)), Some(Some(last))) = (offsets.get(a), offsets.get(b)) else {
                            continue;
                        };
                        if b < a || b - a + 1 > o.max_answer_tokens {
                            continue;
                        }
                        found.push(Candidate {
                            span: Some((first.0, last.1)),
                            score: starts[a] + ends[b],
                            start: starts[a],
                            end: ends[b],
                            stand_in: false,
                        });
                    }
                }
            }
            let null = null.filter(|_| o.unanswerable);
            found.extend(null);
            // Stable, as Python's sorted: equal scores keep their order.
            found.sort_by(|a, b| b.score.total_cmp(&a.score));
            found.truncate(o.n_best);
            if let Some(n) = null
                && !found.iter().any(|c| c.span.is_none() && !c.stand_in)
            {
                found.push(n);
            }
            let text = |c: &Candidate| match c.span {
                // Hugging Face's stand-in where nothing fits.
                _ if c.stand_in => "empty",
                None => "",
                Some((a, b)) => e.context_span(a, b),
            };
            if found.is_empty() || (found.len() == 1 && text(&found[0]).is_empty()) {
                found.insert(
                    0,
                    Candidate {
                        span: None,
                        score: 0.0,
                        start: 0.0,
                        end: 0.0,
                        stand_in: true,
                    },
                );
            }
            let top_score = found.iter().map(|c| c.score).fold(f32::NEG_INFINITY, f32::max);
            let weights: Vec<f64> = found
                .iter()
                .map(|c| f64::from(c.score - top_score).exp())
                .collect();
            let total: f64 = weights.iter().sum();
            let pick = |i: usize| Predicted {
                id: e.id.clone(),
                answer: text(&found[i]).to_string(),
                span: found[i].span,
                score: found[i].score,
                probability: weights[i] / total,
            };
            let Some(n) = null else {
                return pick(0);
            };
            let best = found.iter().position(|c| !text(c).is_empty()).unwrap_or(0);
            if n.score - found[best].start - found[best].end > o.null_threshold {
                let i = found
                    .iter()
                    .position(|c| c.span.is_none() && !c.stand_in)
                    .unwrap_or(0);
                Predicted {
                    answer: String::new(),
                    span: None,
                    ..pick(i)
                }
            } else {
                pick(best)
            }
        })
        .collect()
}

/// Scores of answers against the data's (see the module docs), in percent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnswerScores {
    /// Exact match, averaged over the questions.
    pub exact_match: f64,
    /// Word F1, averaged over the questions.
    pub f1: f64,
    /// Questions scored.
    pub total: usize,
    /// Over the questions with an answer (SQuAD 2.0's `HasAns_*`), where the
    /// data has questions without.
    pub answerable: Option<Box<AnswerScores>>,
    /// Over the questions without one (`NoAns_*`).
    pub unanswerable: Option<Box<AnswerScores>>,
}

/// `s` as SQuAD's scripts compare it: lower case, without ASCII punctuation
/// and the articles a, an and the, words separated by one space.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let kept: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    kept.split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The word F1 of `predicted` against `truth`, both normalised; with
/// `empty_equal` (SQuAD 2.0's rule) two empty answers score 1.
fn word_f1(predicted: &str, truth: &str, empty_equal: bool) -> f64 {
    let p: Vec<&str> = predicted.split_whitespace().collect();
    let t: Vec<&str> = truth.split_whitespace().collect();
    if empty_equal && (p.is_empty() || t.is_empty()) {
        return f64::from(u8::from(p == t));
    }
    let mut left = t.clone();
    let mut same = 0usize;
    for w in &p {
        if let Some(i) = left.iter().position(|x| x == w) {
            left.swap_remove(i);
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let (precision, recall) = (same as f64 / p.len() as f64, same as f64 / t.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// Exact match and F1 (0 or 1, and 0 to 1) of `predicted` against an example's
/// `answers`: the best over them. With `unanswerable` (SQuAD 2.0's rules),
/// answers that normalise to nothing are left out, and a question left
/// without any is answered by "" alone.
pub fn answer_score(predicted: &str, answers: &[String], unanswerable: bool) -> (f64, f64) {
    let p = normalize_answer(predicted);
    let mut truths: Vec<String> = answers.iter().map(|a| normalize_answer(a)).collect();
    if unanswerable {
        truths.retain(|t| !t.is_empty());
        if truths.is_empty() {
            truths.push(String::new());
        }
    }
    truths.iter().fold((0.0, 0.0), |(em, f1), t| {
        (
            em.max(f64::from(u8::from(*t == p))),
            f1.max(word_f1(&p, t, unanswerable)),
        )
    })
}

/// The scores of `predicted` (each example's answer, in order) on `examples`.
pub fn answer_scores(examples: &[QaExample], predicted: &[String], unanswerable: bool) -> AnswerScores {
    let each: Vec<(bool, (f64, f64))> = examples
        .iter()
        .zip(predicted)
        .map(|(e, p)| {
            let answers: Vec<String> = e.answers.iter().map(|a| a.text.clone()).collect();
            (!e.answers.is_empty(), answer_score(p, &answers, unanswerable))
        })
        .collect();
    let mean = |keep: &dyn Fn(bool) -> bool| -> AnswerScores {
        let chosen: Vec<(f64, f64)> = each.iter().filter(|(a, _)| keep(*a)).map(|(_, s)| *s).collect();
        let n = chosen.len().max(1) as f64;
        AnswerScores {
            exact_match: 100.0 * chosen.iter().map(|s| s.0).sum::<f64>() / n,
            f1: 100.0 * chosen.iter().map(|s| s.1).sum::<f64>() / n,
            total: chosen.len(),
            answerable: None,
            unanswerable: None,
        }
    };
    let mut all = mean(&|_| true);
    if unanswerable {
        all.answerable = Some(Box::new(mean(&|a| a)));
        all.unanswerable = Some(Box::new(mean(&|a| !a)));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::squad::Answer;

    #[test]
    fn answers_normalise_and_score_as_squads_script() {
        assert_eq!(
            normalize_answer("  The  Eiffel-Tower, an ICON!"),
            "eiffeltower icon"
        );
        assert_eq!(normalize_answer("a"), "");
        let truth = ["the Denver Broncos".to_string(), "Broncos".to_string()];
        assert_eq!(answer_score("Denver Broncos", &truth, false), (1.0, 1.0));
        // "broncos won" against "broncos": precision 1/2, recall 1.
        let (em, f1) = answer_score("Broncos won", &truth, false);
        assert_eq!(em, 0.0);
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12);
        // Repeated words count as often as both have them.
        assert!((word_f1("a a b", "a b b", false) - 2.0 / 3.0).abs() < 1e-12);
        // SQuAD 1.1 scores an empty answer 0; 2.0 matches it to no answer.
        assert_eq!(answer_score("", &[], false), (0.0, 0.0));
        assert_eq!(answer_score("", &[], true), (1.0, 1.0));
        assert_eq!(answer_score("x", &[], true), (0.0, 0.0));
        assert_eq!(answer_score("", &truth, true), (0.0, 0.0));
        let e = |answers: &[&str]| QaExample {
            id: "q".into(),
            question: "?".into(),
            context: "c".into(),
            answers: answers
                .iter()
                .map(|a| Answer {
                    text: a.to_string(),
                    start: 0,
                })
                .collect(),
        };
        let s = answer_scores(
            &[e(&["x y"]), e(&[]), e(&["z"])],
            &["x".into(), "".into(), "w".into()],
            true,
        );
        assert!((s.exact_match - 100.0 / 3.0).abs() < 1e-9);
        assert!((s.f1 - 100.0 * (2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-9);
        let has = s.answerable.unwrap();
        assert_eq!((has.total, has.exact_match), (2, 0.0));
        assert_eq!(s.unanswerable.unwrap().f1, 100.0);
    }

    /// One window `[CLS] q [SEP] "the" "red" "fox" [SEP] pad` over "the red fox".
    fn window(example: usize) -> Feature {
        Feature {
            example,
            ids: vec![0; 8],
            start: 0,
            end: 0,
            offsets: vec![
                None,
                None,
                None,
                Some((0, 3)),
                Some((4, 7)),
                Some((8, 11)),
                None,
                None,
            ],
        }
    }

    #[test]
    fn the_best_span_in_the_context_wins_across_windows() {
        let e = QaExample {
            id: "q".into(),
            question: "?".into(),
            context: "the red fox".into(),
            answers: Vec::new(),
        };
        let t = 8;
        // Window 0: the best start (position 1) is the question's, so the
        // answer is "red fox" (4 + 3); window 1 scores "fox" 4 + 4.
        let mut logits = vec![0f32; 2 * 2 * t];
        logits[1] = 9.0;
        logits[4] = 4.0;
        logits[t + 5] = 3.0;
        logits[t + 3] = 2.5;
        logits[2 * t + 5] = 4.0;
        logits[3 * t + 5] = 4.0;
        let o = AnswerOptions::default();
        let got = best_answers(std::slice::from_ref(&e), &[window(0), window(0)], &logits, t, &o);
        assert_eq!((got[0].answer.as_str(), got[0].span), ("fox", Some((8, 11))));
        assert_eq!(got[0].score, 8.0);
        // Spans longer than allowed, or ending before they start, are skipped.
        let short = AnswerOptions {
            max_answer_tokens: 1,
            ..o
        };
        let got = best_answers(
            std::slice::from_ref(&e),
            &[window(0)],
            &logits[..2 * t],
            t,
            &short,
        );
        assert_eq!(got[0].answer, "red");
        // With unanswerable questions, the [CLS] scores (lowest over the
        // windows) win where they beat the best span's.
        let mut null = logits.clone();
        null[0] = 6.0;
        null[t] = 3.0;
        null[2 * t] = 20.0;
        let v2 = AnswerOptions {
            unanswerable: true,
            ..o
        };
        let got = best_answers(std::slice::from_ref(&e), &[window(0), window(0)], &null, t, &v2);
        assert_eq!((got[0].answer.as_str(), got[0].span), ("", None));
        let strict = AnswerOptions {
            null_threshold: 1.5,
            ..v2
        };
        let got = best_answers(&[e], &[window(0), window(0)], &null, t, &strict);
        assert_eq!(got[0].answer, "fox");
    }
}
