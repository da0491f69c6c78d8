//! Entity-level scores of a token classifier (named entities), as CoNLL's
//! `conlleval` and Python's `seqeval` (Hugging Face's `run_ner` metric) count
//! them: the tags of a sentence's words make spans (`B-PER I-PER` one person),
//! a predicted span counts when its type, start and end are all a true span's,
//! and precision, recall and F1 are over spans, per type and over all (micro).
//!
//! Tags are read in the IOB schemes: a prefix `B-`, `I-`, `E-`, `S-` (and
//! BILOU's `L-`, `U-` as `E-`, `S-`) before the type, `O` outside; a tag of no
//! such prefix is a type of its own (IO tagging: a run of it is one span).
//! Spans start and end as `conlleval` decides (an `I-` after `O` or after
//! another type starts a span, as `seqeval`'s default mode reads it).

use serde::Serialize;

use crate::data::{NO_LABEL, Split, Targets};

/// Scores of one entity type, or of all (micro averages).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EntityScores {
    /// The type (`PER`), or `all`.
    pub entity: String,
    /// Predicted spans that are true ones, over the predicted spans (0 when none).
    pub precision: f64,
    /// True spans predicted, over the true spans (0 when none).
    pub recall: f64,
    /// Their harmonic mean (0 when both are 0).
    pub f1: f64,
    /// True spans.
    pub support: usize,
}

/// What [`entity_scores`] measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EntityMetrics {
    /// Each type's scores, by name.
    pub per_type: Vec<EntityScores>,
    /// Over every span (micro averages): `seqeval`'s overall precision, recall, F1.
    pub overall: EntityScores,
}

/// A tag as (prefix, type): `B-PER` is (`B`, `PER`), `O` is (`O`, ``).
fn split_tag(tag: &str) -> (char, &str) {
    if tag == "O" {
        return ('O', "");
    }
    match tag.split_once('-') {
        Some((p, kind)) if p.len() == 1 => match p.chars().next() {
            Some(c @ ('B' | 'I' | 'E' | 'S')) => (c, kind),
            Some('L') => ('E', kind),
            Some('U') => ('S', kind),
            _ => ('I', tag),
        },
        _ => ('I', tag),
    }
}

/// The spans `(type, first, last)` of a sentence's tags, as `conlleval` chunks
/// them.
pub fn spans(tags: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    let (mut prev, mut prev_kind) = ('O', "");
    for (i, tag) in tags.iter().enumerate() {
        let (p, kind) = split_tag(tag);
        let ends = matches!(prev, 'E' | 'S')
            || (matches!(prev, 'B' | 'I') && matches!(p, 'B' | 'S' | 'O'))
            || (prev != 'O' && prev_kind != kind);
        let starts = matches!(p, 'B' | 'S')
            || (matches!(prev, 'E' | 'S' | 'O') && matches!(p, 'E' | 'I'))
            || (p != 'O' && prev_kind != kind);
        if ends && let Some((k, start)) = open.take() {
            out.push((k, start, i - 1));
        }
        if starts {
            open = Some((kind.to_string(), i));
        }
        (prev, prev_kind) = (p, kind);
    }
    if let Some((k, start)) = open {
        out.push((k, start, tags.len() - 1));
    }
    out
}

/// Whether tags `names` are entity tags (some has an IOB prefix): the only
/// tags [`entity_scores`] scores (parts of speech have no spans).
pub fn are_entity_tags(names: &[String]) -> bool {
    names.iter().any(|n| {
        n.split_once('-')
            .is_some_and(|(p, k)| !k.is_empty() && matches!(p, "B" | "I" | "E" | "S" | "L" | "U"))
    })
}

fn scores(entity: String, correct: usize, predicted: usize, support: usize) -> EntityScores {
    let precision = if predicted > 0 {
        correct as f64 / predicted as f64
    } else {
        0.0
    };
    let recall = if support > 0 {
        correct as f64 / support as f64
    } else {
        0.0
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    EntityScores {
        entity,
        precision,
        recall,
        f1,
        support,
    }
}

/// Entity scores of the predicted tags `predicted` (one per position of each
/// sample of `data`, as [`crate::train::evaluate_with_predictions`] gives them)
/// against `data`'s, for tags named `names`: each sample's words are its
/// labelled positions (the first token of each word). `None` unless the data
/// has a label per position and `names` are entity tags.
pub fn entity_scores(data: &Split, predicted: &[usize], names: &[String]) -> Option<EntityMetrics> {
    let Targets::Classes {
        labels, positions, ..
    } = &data.y
    else {
        return None;
    };
    if *positions < 2 || !are_entity_tags(names) || predicted.len() != labels.len() {
        return None;
    }
    let name = |c: usize| names.get(c).map_or("O", String::as_str);
    let mut kinds: std::collections::BTreeMap<String, [usize; 3]> = std::collections::BTreeMap::new();
    for (truth, guess) in labels.chunks(*positions).zip(predicted.chunks(*positions)) {
        let (mut t, mut g) = (Vec::new(), Vec::new());
        for (&l, &p) in truth.iter().zip(guess) {
            if l != NO_LABEL {
                t.push(name(l as usize));
                g.push(name(p));
            }
        }
        let (want, got) = (spans(&t), spans(&g));
        for s in &want {
            kinds.entry(s.0.clone()).or_default()[2] += 1;
            if got.contains(s) {
                kinds.entry(s.0.clone()).or_default()[0] += 1;
            }
        }
        for s in &got {
            kinds.entry(s.0.clone()).or_default()[1] += 1;
        }
    }
    let per_type: Vec<EntityScores> = kinds
        .iter()
        .map(|(k, &[c, p, s])| scores(k.clone(), c, p, s))
        .collect();
    let sum = |i: usize| kinds.values().map(|v| v[i]).sum::<usize>();
    Some(EntityMetrics {
        per_type,
        overall: scores("all".into(), sum(0), sum(1), sum(2)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    /// `seqeval.metrics.sequence_labeling.get_entities` on the same tags gives
    /// these spans (checked with seqeval 1.2.2), but for tags without a prefix,
    /// which it misreads (`PER` as type `ER`).
    #[test]
    fn spans_are_chunked_as_conlleval_does() {
        let s = |t: &str| -> Vec<(String, usize, usize)> { spans(&tags(t)) };
        let span = |k: &str, a, b| (k.to_string(), a, b);
        assert_eq!(s("B-PER I-PER O B-LOC"), [span("PER", 0, 1), span("LOC", 3, 3)]);
        // An I- after O, or after another type, starts a span.
        assert_eq!(s("O I-PER I-PER"), [span("PER", 1, 2)]);
        assert_eq!(s("B-PER I-LOC"), [span("PER", 0, 0), span("LOC", 1, 1)]);
        // B- after B- of the same type: two spans.
        assert_eq!(s("B-PER B-PER"), [span("PER", 0, 0), span("PER", 1, 1)]);
        // BIOES / BILOU.
        assert_eq!(
            s("S-PER B-LOC E-LOC U-ORG"),
            [span("PER", 0, 0), span("LOC", 1, 2), span("ORG", 3, 3)]
        );
        assert_eq!(s("B-LOC L-LOC"), [span("LOC", 0, 1)]);
        // IO tags without prefixes: a run is a span.
        assert_eq!(s("PER PER O LOC"), [span("PER", 0, 1), span("LOC", 3, 3)]);
        assert!(s("O O").is_empty());
    }

    #[test]
    fn scores_count_exact_spans_per_type_and_overall() {
        let names: Vec<String> = ["B-LOC", "B-PER", "I-PER", "O"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Two sentences of 4 positions; position 0 and padding have no label.
        let n = NO_LABEL;
        let data = Split {
            x: vec![0.0; 8],
            sample_len: 4,
            y: Targets::Classes {
                // [B-PER I-PER B-LOC], [B-LOC]
                labels: vec![n, 1, 2, 0, n, 0, n, n],
                classes: 4,
                positions: 4,
            },
        };
        // Predicted: [B-PER O B-LOC] (the person cut short), [B-LOC]; the
        // unlabelled positions' predictions are not read.
        let predicted = [1, 1, 3, 0, 2, 0, 1, 1];
        let m = entity_scores(&data, &predicted, &names).unwrap();
        let loc = &m.per_type[0];
        assert_eq!(
            (loc.entity.as_str(), loc.precision, loc.recall, loc.support),
            ("LOC", 1.0, 1.0, 2)
        );
        let per = &m.per_type[1];
        assert_eq!(
            (per.entity.as_str(), per.precision, per.recall, per.f1),
            ("PER", 0.0, 0.0, 0.0)
        );
        // 2 of 3 predicted spans right, 2 of 3 true spans found.
        let all = &m.overall;
        assert!((all.precision - 2.0 / 3.0).abs() < 1e-12 && (all.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((all.f1 - 2.0 / 3.0).abs() < 1e-12);
        let pos: Vec<String> = ["NN", "VB"].iter().map(|s| s.to_string()).collect();
        assert_eq!(entity_scores(&data, &predicted, &pos), None, "parts of speech");
    }
}
