//! Dynamic padding: a batch of a padded model (its input token ids read by an
//! Embedding with a `mask_id`) runs at the length its longest sample needs,
//! not at the model's whole window, as Hugging Face's `DataCollatorWithPadding`
//! pads each batch only to its longest sample.
//!
//! The data stays padded to the model's T on the CPU. Each batch's length is its
//! longest sample's real tokens rounded up to a power of two ([`bucket`]), at
//! least [`MIN_TOKENS`]; a batch that needs all of T runs the model's own plan.
//! Powers of two bound the plans of one batch size to log2(T), and their memory
//! to less than twice the full plan's (each plan holds its own activations).
//!
//! A shortened plan runs the model's graph with every sequence's first axis
//! cut to the batch's length: the graph the model's description builds on
//! samples of that length, checked node by node against the model's own
//! ([`shortened`]) so parameters, random streams and everything else stay the
//! model's. The model builds them at every bucket when it is compiled; where
//! one does not apply (a layer reading the ids without skipping padding),
//! every batch runs the whole window and the model says why. The one parameter whose shape follows the sample, a learned position
//! embedding's table `[T, F]` (`Op::AddBroadcast`), is read through its first
//! rows; its gradient's other rows are zero, as padding's are in the full plan
//! (padded tokens reach no output: the attentions and pools skip them).
//! Results equal the full plan's up to f32 rounding, dropout's masks aside
//! (drawn over the shorter tensors).

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Op};

/// The fewest tokens a shortened plan runs.
pub const MIN_TOKENS: usize = 8;

/// The tokens a batch whose longest sample holds `longest` real tokens runs at,
/// in a model of `full` tokens: the power of two at least `longest` (and at
/// least [`MIN_TOKENS`]), or `None` where that is not below `full` (the model's
/// own plan runs).
pub fn bucket(longest: usize, full: usize) -> Option<usize> {
    let t = longest.max(MIN_TOKENS).checked_next_power_of_two()?;
    (t < full).then_some(t)
}

/// Every bucket ([`bucket`]) a batch of samples between `shortest` and `longest`
/// real tokens may take, in a model of `full` tokens, shortest first.
pub fn buckets_between(shortest: usize, longest: usize, full: usize) -> Vec<usize> {
    let Some(first) = bucket(shortest, full) else {
        return Vec::new();
    };
    // A batch needing the whole window runs the model's own plan.
    let last = bucket(longest, full).unwrap_or(full - 1);
    std::iter::successors(Some(first), |&t| t.checked_mul(2))
        .take_while(|&t| t <= last)
        .collect()
}

/// The real tokens of each sample of `x` (`full` ids per sample): the ids
/// before the run of `pad` ids that ends it, as the GPU's
/// `kernels::sequence::sequence_lengths` counts them.
pub fn sample_lengths(x: &[f32], full: usize, pad: u32) -> impl Iterator<Item = usize> + '_ {
    let pad = pad as f32;
    x.chunks(full.max(1))
        .map(move |s| s.iter().rposition(|&id| id != pad).map_or(0, |i| i + 1))
}

/// The first `tokens` ids (or labels) of each sample of `x` (`full` per sample,
/// `tokens <= full`), into `out`.
pub fn cut<T: Copy>(x: &[T], full: usize, tokens: usize, out: &mut Vec<T>) {
    out.clear();
    for sample in x.chunks_exact(full) {
        out.extend_from_slice(&sample[..tokens]);
    }
}

/// `base` (the model's graph, output `base_output`) with the shapes of
/// `rebuilt` (output `output`), the same description built on shorter samples.
/// Errors unless the two are the same graph but for their shapes (the same
/// kinds of op on the same inputs from the same layers, the same output; the
/// ops' settings are `base`'s) and every op that reads a shortened value
/// skips the padding: a padded sequence computed token by token
/// ([`Graph::lengths_of`]), a pool over the real tokens, the lengths
/// themselves. Anything else (an Embedding without `mask_id` on the same ids,
/// a sum over the ids) would compute something else on fewer tokens.
/// Parameters keep their shapes, but for position-embedding tables
/// (`Op::AddBroadcast`'s), which may keep fewer leading rows.
pub fn shortened(base: &Graph, base_output: NodeId, rebuilt: &Graph, output: NodeId) -> Result<Graph> {
    let differs = |what: String| Err(Error::invalid(format!("dynamic padding does not apply: {what}")));
    if base.nodes.len() != rebuilt.nodes.len() || base_output != output {
        return differs(format!(
            "the model built on shorter samples has {} nodes and output {output}, against {} and \
             {base_output}",
            rebuilt.nodes.len(),
            base.nodes.len()
        ));
    }
    let tables: Vec<NodeId> = base
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::AddBroadcast { p, .. } => Some(p),
            _ => None,
        })
        .collect();
    let mut short = base.clone();
    for (id, (a, b)) in base.nodes.iter().zip(&rebuilt.nodes).enumerate() {
        if std::mem::discriminant(&a.op) != std::mem::discriminant(&b.op)
            || base.inputs(id) != rebuilt.inputs(id)
            || a.layer != b.layer
        {
            return differs(format!(
                "layer '{}' builds differently on shorter samples",
                a.layer
            ));
        }
        let reads_shortened = base
            .inputs(id)
            .iter()
            .any(|&i| short.nodes[i].shape != base.nodes[i].shape);
        // A padded sequence's positions turned into classes, the padding's
        // masked (a question answerer's scores): the real positions' scores
        // are the whole window's, the rest score nothing in either.
        let scores_positions = match a.op {
            Op::MaskPositions { .. } => true,
            Op::Permute { .. } => base
                .nodes
                .iter()
                .any(|n| matches!(n.op, Op::MaskPositions { x, .. } if x == id)),
            _ => false,
        };
        let skips_padding = base.lengths_of(id).is_some()
            || scores_positions
            || matches!(
                a.op,
                Op::SequencePool { lengths: Some(_), .. } | Op::SequenceLengths { .. }
            );
        match a.op {
            Op::Param { .. } if a.shape != b.shape => {
                let cut_rows = tables.contains(&id)
                    && a.shape.len() == b.shape.len()
                    && a.shape[1..] == b.shape[1..]
                    && b.shape[0] <= a.shape[0];
                if !cut_rows {
                    return differs(format!(
                        "a parameter of layer '{}' would be {:?} instead of {:?}",
                        a.layer, b.shape, a.shape
                    ));
                }
            }
            _ if reads_shortened && !skips_padding => {
                return differs(format!(
                    "layer '{}' reads the token ids or a sequence computed from them without \
                     skipping padding",
                    a.layer
                ));
            }
            _ => {}
        }
        short.nodes[id].shape = b.shape.clone();
    }
    Ok(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_below_the_window() {
        assert_eq!(bucket(0, 64), Some(8));
        assert_eq!(bucket(8, 64), Some(8));
        assert_eq!(bucket(9, 64), Some(16));
        assert_eq!(bucket(32, 64), Some(32));
        assert_eq!(bucket(33, 64), None);
        assert_eq!(bucket(64, 64), None);
        assert_eq!(bucket(3, 8), None);
        assert_eq!(bucket(100, 200), Some(128));
        assert_eq!(buckets_between(3, 100, 200), vec![8, 16, 32, 64, 128]);
        assert_eq!(buckets_between(20, 30, 200), vec![32]);
        assert_eq!(buckets_between(20, 200, 200), vec![32, 64, 128]);
        assert_eq!(buckets_between(150, 200, 200), Vec::<usize>::new());
    }

    #[test]
    fn lengths_end_before_the_last_run_of_padding() {
        let x = [
            5., 0., 7., 0., 0., /* */ 0., 0., 0., 0., 0., /* */ 1., 2., 3., 4., 5.,
        ];
        assert_eq!(sample_lengths(&x, 5, 0).collect::<Vec<_>>(), vec![3, 0, 5]);
        let mut out = Vec::new();
        cut(&x, 5, 2, &mut out);
        assert_eq!(out, vec![5., 0., 0., 0., 1., 2.]);
    }
}
