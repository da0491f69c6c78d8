//! Reverse-mode differentiation over a [`Graph`]: which nodes carry gradients and
//! the order their backward rules run. The rules themselves (which kernels compute
//! the input, weight and bias gradients of each op) live in [`ops`](super::ops),
//! next to the forward lowering of the same op.

use super::{Graph, NodeId, Op};

/// For each node, whether a gradient flows into it from the loss: parameters do,
/// inputs do not, every other node does when any of its inputs does.
pub fn requires_grad(graph: &Graph) -> Vec<bool> {
    let mut req = vec![false; graph.nodes.len()];
    for (id, node) in graph.nodes.iter().enumerate() {
        req[id] = match node.op {
            Op::Param { trainable, .. } => trainable,
            Op::Input => false,
            _ => graph.inputs(id).iter().any(|&i| req[i]),
        };
    }
    req
}

/// Nodes whose backward rule runs, in the order it runs (reverse topological):
/// every non-parameter node that requires a gradient and is an ancestor of one of
/// `roots` (the loss' output, or every loss term).
pub fn backward_order(graph: &Graph, roots: &[NodeId]) -> Vec<NodeId> {
    let req = requires_grad(graph);
    let mut reaches = vec![false; graph.nodes.len()];
    let Some(&output) = roots.iter().max() else {
        return Vec::new();
    };
    for &r in roots {
        reaches[r] = true;
    }
    for id in (0..=output).rev() {
        if reaches[id] {
            for i in graph.inputs(id) {
                reaches[i] = true;
            }
        }
    }
    (0..=output)
        .rev()
        .filter(|&id| reaches[id] && req[id] && !matches!(graph.nodes[id].op, Op::Param { .. }))
        .collect()
}

/// How many ops consume each node (a node read by several ops sums their gradients).
pub fn consumers(graph: &Graph) -> Vec<usize> {
    let mut count = vec![0; graph.nodes.len()];
    for id in 0..graph.nodes.len() {
        for i in graph.inputs(id) {
            count[i] += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Init;
    use crate::kernels::matmul::Activation;

    #[test]
    fn gradients_flow_to_params_not_inputs() {
        let mut g = Graph::new();
        let x = g.input(&[4]).unwrap();
        let w = g.param("0.weight", &[3, 4], Init::Zeros, "dense");
        let b = g.param("0.bias", &[3], Init::Zeros, "dense");
        let y = g.dense(x, w, Some(b), Activation::Relu, "dense").unwrap();
        let z = g.activation(y, Activation::Tanh, "act");
        assert_eq!(requires_grad(&g), vec![false, true, true, true, true]);
        assert_eq!(backward_order(&g, &[z]), vec![z, y]);
        assert_eq!(consumers(&g), vec![1, 1, 1, 1, 0]);
    }

    #[test]
    fn moving_statistics_take_no_gradient_and_are_not_shared() {
        let mut g = Graph::new();
        let x = g.input(&[3, 2, 2]).unwrap();
        let gamma = g.param("1.weight", &[3], Init::Ones, "bn");
        let beta = g.param("1.bias", &[3], Init::Zeros, "bn");
        let mean = g.state("1.running_mean", &[3], Init::Zeros, "bn");
        let var = g.state("1.running_var", &[3], Init::Ones, "bn");
        let y = g
            .batch_norm(x, gamma, beta, mean, var, 0.99, 1e-3, Activation::Relu, "bn")
            .unwrap();
        assert_eq!(requires_grad(&g), vec![false, true, true, false, false, true]);
        assert_eq!(backward_order(&g, &[y]), vec![y]);
        // A second normalization over the same statistics is refused, naming them.
        let (gamma2, beta2) = (
            g.param("2.weight", &[3], Init::Ones, "bn2"),
            g.param("2.bias", &[3], Init::Zeros, "bn2"),
        );
        let e = g
            .batch_norm(
                y,
                gamma2,
                beta2,
                mean,
                var,
                0.99,
                1e-3,
                Activation::Identity,
                "bn2",
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bn2") && e.contains("moving mean is already used"),
            "{e}"
        );
        // Statistics must be non-trainable, of [C].
        let e = g
            .batch_norm(
                y,
                gamma2,
                beta2,
                gamma2,
                var,
                0.99,
                1e-3,
                Activation::Identity,
                "bn3",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-trainable"), "{e}");
    }
}
