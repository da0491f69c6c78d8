//! Incremental decoding: a causal sequence model's forward pass one position at
//! a time, with each attention's keys and values kept (a key/value cache), so a
//! new token costs one position's work instead of the whole window's.
//!
//! The model's graph qualifies when every op from its `[T]` token input to its
//! output acts on each position alone or is causal attention
//! ([`causal_ops`]), the values it computes keep positions on their first axis,
//! position embeddings (`AddBroadcast`) add a parameter, Dense layers multiply by
//! one, and each attention's heads fit the decode kernel
//! (`kernels::attention_decode::MAX_DECODE_HEAD_DIM`). The position-wise ops are
//! lowered once, through the same rules as a plan, on the graph with every
//! sequence shortened to one position (Dense layers through `kernels::matvec`,
//! shaped for one row, its variant measured by the tuner where it measures), and
//! the whole step is recorded once: every kernel that depends on the position
//! reads it from one uniform ([`DecodePosition`]) written before each step. Rotary
//! embeddings turn by that position's row of a table of every position; each
//! attention (`kernels::attention_decode`) appends the position's keys and values
//! to its cache (rows `0..=p`) and runs the one query over it (on GPUs, a long
//! cache split over several workgroups a head and combined, the count measured
//! by the tuner where it measures). Grouped key/value
//! heads (`Op::RepeatHeads` feeding only an attention) are cached and read in
//! place, never repeated. Position embeddings' row p is copied in before the
//! step. The output is the model's output node (before the loss's softmax) at
//! position p.
//!
//! A prompt's tokens but the last need only their keys and values:
//! [`Decoder::prefill`] computes them for all those positions at once, through
//! the plan's own rules (tiled matmuls, the causal attention) on the graph
//! shortened to a power of two of positions at least as long as the prompt, the
//! ops after the last attention's key and value projections left out; the last
//! token then takes a [`Decoder::step`]. Positions past the prompt see only
//! padding that the causal mask hides from it.
//!
//! Results equal the full forward pass at that position up to f32 rounding: the
//! products are the same sums, and attention sees the same keys.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::graph::ops::{Lowering, batched, lower_forward};
use crate::graph::{Graph, NodeId, Op, ParamStore};
use crate::kernels::attention_decode::{DecodeDims, DecodePosition, attention_decode};
use crate::kernels::matvec::matvec;
use crate::kernels::optim::StepUniform;
use crate::kernels::rotary::{Turn, rotary_at};
use std::collections::HashMap;

/// Whether every op between the graph's input and `output` acts on each position
/// alone (the Embedding, position embeddings, Dense and layer normalization over
/// a sequence's features, elementwise ops, dropout) or is attention under a
/// causal mask: then no output position reads a later one. `false` when some
/// op's mixing of positions is not known here (a reshape, a pool, a mean over the
/// tokens, a concatenation...).
pub fn causal_ops(graph: &Graph, output: NodeId) -> bool {
    reachable(graph, output)
        .into_iter()
        .all(|id| per_position(graph, id))
}

fn per_position(g: &Graph, id: NodeId) -> bool {
    match &g.nodes[id].op {
        Op::Input | Op::Param { .. } | Op::Embedding { .. } | Op::AddBroadcast { .. } => true,
        // Over the last axis of a sequence: each position alone.
        Op::Dense { x, .. } | Op::LayerNorm { x, .. } | Op::RmsNorm { x, .. } => g.shape(*x).len() >= 2,
        Op::Act { .. }
        | Op::GatedUnit { .. }
        | Op::Dropout { .. }
        | Op::Exp { .. }
        | Op::Log { .. }
        | Op::Scale { .. }
        | Op::Square { .. }
        | Op::RepeatHeads { .. } => true,
        // Each position turned by its own angles.
        Op::Rotary { .. } => true,
        Op::Add { a, b } | Op::Mul { a, b } => g.shape(*a) == g.shape(*b),
        Op::Attention { causal, .. } => *causal,
        _ => false,
    }
}

/// The nodes `output` depends on (itself included), in graph order.
fn reachable(g: &Graph, output: NodeId) -> Vec<NodeId> {
    let mut seen = vec![false; g.nodes.len()];
    let mut todo = vec![output];
    while let Some(id) = todo.pop() {
        if !std::mem::replace(&mut seen[id], true) {
            todo.extend(g.inputs(id));
        }
    }
    (0..g.nodes.len()).filter(|&i| seen[i]).collect()
}

/// `graph` with every sequence among `nodes` `len` positions long: each value's
/// first axis, and the tables of the position embeddings (`AddBroadcast`), whose
/// first `len` rows those positions add.
fn shortened(graph: &Graph, nodes: &[NodeId], len: usize) -> Graph {
    let mut short = graph.clone();
    for &i in nodes {
        match &graph.nodes[i].op {
            Op::Param { .. } => {}
            Op::AddBroadcast { p, .. } => {
                short.nodes[*p].shape[0] = len;
                short.nodes[i].shape[0] = len;
            }
            _ => short.nodes[i].shape[0] = len,
        }
    }
    short
}

/// Records `dispatches` into a compute pass of their own on `encoder`.
fn record_pass(ctx: &Context, encoder: &mut wgpu::CommandEncoder, label: &str, dispatches: &[&Dispatch]) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    });
    ctx.record(&mut pass, dispatches);
}

/// The attentions whose grouped key/value heads the decoder reads in place: for
/// each such attention node, the nodes its repeated keys and values repeat
/// (`Op::RepeatHeads`, the same number of times, read by nothing else among
/// `nodes`) and that number.
fn grouped_heads(graph: &Graph, nodes: &[NodeId]) -> HashMap<NodeId, (NodeId, NodeId, usize)> {
    let mut readers = vec![0usize; graph.nodes.len()];
    for &i in nodes {
        for j in graph.inputs(i) {
            readers[j] += 1;
        }
    }
    // A node repeating heads of `d` values, read by nothing else.
    let repeated = |n: NodeId, d: usize| match graph.nodes[n].op {
        Op::RepeatHeads { x, head_dim, times } if readers[n] == 1 && head_dim == d => Some((x, times)),
        _ => None,
    };
    let mut out = HashMap::new();
    for &i in nodes {
        if let Op::Attention { q, k, v, heads, .. } = graph.nodes[i].op
            && k != v
            && let (dk, dv) = (graph.shape(q)[1] / heads, graph.shape(v)[1] / heads)
            && let (Some((ks, kt)), Some((vs, vt))) = (repeated(k, dk), repeated(v, dv))
            && kt == vt
        {
            out.insert(i, (ks, vs, kt));
        }
    }
    out
}

/// One attention's key/value cache, and the nodes whose one-position values it
/// caches (the keys and values before grouped heads are repeated).
struct Cache {
    k: NodeId,
    v: NodeId,
    /// `[T, kv_heads·dk]` and `[T, kv_heads·dv]`.
    k_cache: Tensor,
    v_cache: Tensor,
}

/// A model's forward pass one position at a time (see the module docs).
pub struct Decoder {
    /// The model's graph, and the nodes a prefill lowers (those the attentions'
    /// keys and values depend on), in graph order.
    graph: Graph,
    prefill_nodes: Vec<NodeId>,
    /// Parameter values by node.
    params: Vec<Option<Tensor>>,
    caches: Vec<Cache>,
    input: Tensor,
    /// The position every kernel of a step reads; its capacity is the model's T.
    position: DecodePosition,
    /// Each position embedding's table `[T, F]` and the row `[1, F]` a step adds.
    position_rows: Vec<(Tensor, Tensor)>,
    /// A step's kernels, in order, recorded once.
    kernels: Vec<Dispatch>,
    output: Tensor,
    /// Positions cached so far.
    next: usize,
}

impl Decoder {
    /// A decoder of `graph`'s `output` with the parameters of `store`, or `None`
    /// when the graph does not qualify (see the module docs); the caller then
    /// runs the whole window instead.
    pub fn new(ctx: &Context, graph: &Graph, store: &ParamStore, output: NodeId) -> Result<Option<Decoder>> {
        let nodes = reachable(graph, output);
        let Some(&input_id) = nodes.iter().find(|&&i| matches!(graph.nodes[i].op, Op::Input)) else {
            return Ok(None);
        };
        let &[t] = graph.shape(input_id) else {
            return Ok(None);
        };
        let is_param = |i: NodeId| matches!(graph.nodes[i].op, Op::Param { .. });
        let qualifies = nodes.iter().all(|&i| {
            per_position(graph, i)
                && (is_param(i) || graph.shape(i).first() == Some(&t))
                && match &graph.nodes[i].op {
                    Op::AddBroadcast { p, .. } => is_param(*p),
                    Op::Dense { w, .. } => is_param(*w),
                    Op::Attention { q, v, heads, .. } => {
                        let (dk, dv) = (graph.shape(*q)[1] / heads, graph.shape(*v)[1] / heads);
                        DecodeDims::new(*heads, 1, (dk, dv)).fits()
                    }
                    _ => true,
                }
        });
        if t < 2 || !qualifies {
            return Ok(None);
        }
        let grouped = grouped_heads(graph, &nodes);
        let read_in_place: Vec<NodeId> = grouped
            .keys()
            .flat_map(|&a| match graph.nodes[a].op {
                Op::Attention { k, v, .. } => vec![k, v],
                _ => vec![],
            })
            .collect();
        // Position embeddings' parameters become the one row a step adds.
        let one = shortened(graph, &nodes, 1);
        let mut rows = Vec::new();
        let position = DecodePosition::new(ctx, t)?;
        let step = StepUniform::new(ctx)?;
        let mut params = vec![None; graph.nodes.len()];
        let mut caches = Vec::new();
        let mut lw = Lowering {
            ctx,
            graph: &one,
            batch: 1,
            train: false,
            step: &step,
            values: vec![None; graph.nodes.len()],
            aux: Default::default(),
            fused: Default::default(),
            dispatches: Vec::new(),
        };
        let input = Tensor::zeros(ctx, &[1, 1], DType::F32)?;
        let mut tables: HashMap<(Vec<u32>, u32), Tensor> = HashMap::new();
        for &i in &nodes {
            if read_in_place.contains(&i) {
                continue;
            }
            let value = match &graph.nodes[i].op {
                Op::Input => input.clone(),
                Op::Param { name, .. } => {
                    let table = store
                        .by_node(i)
                        .ok_or_else(|| Error::invalid(format!("parameter {name} is not in the store")))?
                        .value
                        .clone();
                    params[i] = Some(table.clone());
                    if one.nodes[i].shape != graph.nodes[i].shape {
                        let row = Tensor::zeros(ctx, &batched(1, &one.nodes[i].shape[1..]), DType::F32)?;
                        rows.push((table, row.clone()));
                        row
                    } else {
                        table
                    }
                }
                // The one query over the cache, this position's keys and values
                // appended by the same kernel.
                &Op::Attention { q, k, v, heads, .. } => {
                    let (k, v, times) = grouped.get(&i).copied().unwrap_or((k, v, 1));
                    let (dk, dv) = (graph.shape(q)[1] / heads, graph.shape(v)[1] * times / heads);
                    let dims = DecodeDims::new(heads, heads / times, (dk, dv));
                    let dims = dims.with_splits(crate::kernels::tune::decode_splits(ctx, &dims, t)?);
                    let k_cache = Tensor::zeros(ctx, &[t, dims.kv_heads * dk], DType::F32)?;
                    let v_cache = Tensor::zeros(ctx, &[t, dims.kv_heads * dv], DType::F32)?;
                    let o = lw.output(i)?;
                    lw.dispatches.extend(attention_decode(
                        ctx,
                        &dims,
                        &lw.value(q),
                        (&lw.value(k), &lw.value(v)),
                        (&k_cache, &v_cache),
                        &position,
                        &o,
                    )?);
                    caches.push(Cache {
                        k,
                        v,
                        k_cache,
                        v_cache,
                    });
                    o
                }
                // One position's Dense: a row times the weight, not a tiled matmul.
                &Op::Dense { x, w, b, act } => {
                    let (xv, wv, bv) = (lw.value(x), lw.value(w), b.map(|b| lw.value(b)));
                    let (n, k) = (wv.shape()[0], wv.shape()[1]);
                    let variant = crate::kernels::tune::matvec_variant(ctx, 1, n, k)?;
                    let y = lw.output(i)?;
                    lw.dispatches
                        .push(matvec(ctx, variant, &xv, &wv, bv.as_ref(), act, &y)?);
                    y
                }
                // Turned by the angles of the step's position, from a table of all.
                Op::Rotary {
                    x,
                    heads,
                    frequencies,
                    scale,
                } => {
                    // One table of every position per set of angles, shared by
                    // the queries and keys of every layer that turn alike.
                    let key = (frequencies.iter().map(|f| f.to_bits()).collect(), scale.to_bits());
                    let angles = match tables.get(&key) {
                        Some(angles) => angles,
                        None => {
                            let table = crate::graph::ops::rotary::scaled_table(frequencies, *scale, 0, t);
                            let angles = Tensor::from_f32(ctx, &table, &[table.len()])?;
                            tables.entry(key).or_insert(angles)
                        }
                    }
                    .clone();
                    let y = lw.output(i)?;
                    lw.dispatches.push(rotary_at(
                        ctx,
                        &lw.value(*x),
                        &angles,
                        *heads,
                        Turn::Forward,
                        &position,
                        &y,
                    )?);
                    y
                }
                _ => lower_forward(&mut lw, i)?,
            };
            lw.values[i] = Some(value);
        }
        let output = lw.value(output);
        let kernels = lw.dispatches;
        ctx.ready(&kernels.iter().collect::<Vec<_>>())?;
        let mut needed = vec![false; graph.nodes.len()];
        for c in &caches {
            for n in reachable(graph, c.k).into_iter().chain(reachable(graph, c.v)) {
                needed[n] = true;
            }
        }
        Ok(Some(Decoder {
            graph: graph.clone(),
            prefill_nodes: (0..graph.nodes.len()).filter(|&i| needed[i]).collect(),
            params,
            caches,
            input,
            position,
            position_rows: rows,
            kernels,
            output,
            next: 0,
        }))
    }

    /// Positions the cache holds at most (the model's T).
    pub fn capacity(&self) -> usize {
        self.position.capacity()
    }

    /// Bytes the key/value caches hold: keys and values of every position, for
    /// each attention (grouped heads once, not repeated).
    pub fn cache_bytes(&self) -> u64 {
        self.caches
            .iter()
            .map(|c| ((c.k_cache.numel() + c.v_cache.numel()) * 4) as u64)
            .sum()
    }

    /// Positions cached so far: the next token's position.
    pub fn position(&self) -> usize {
        self.next
    }

    /// Forgets every cached position.
    pub fn reset(&mut self) {
        self.next = 0;
    }

    /// Keeps the first `positions` cached positions and forgets the rest: the
    /// next step is at position `positions` (a text that shares only its start
    /// with what was cached). Errors when fewer positions are cached.
    pub fn rewind(&mut self, positions: usize) -> Result<()> {
        if positions > self.next {
            return Err(Error::invalid(format!(
                "cannot rewind the key/value cache to {positions} positions: it holds {}",
                self.next
            )));
        }
        self.next = positions;
        Ok(())
    }

    /// Caches the keys and values of `tokens` at positions `0..tokens.len()` in
    /// one pass (see the module docs), on an empty cache; then the next
    /// [`Decoder::step`] is at position `tokens.len()`. Feed a prompt's tokens
    /// but the last here and the last to `step`, which gives the output after it.
    /// Errors when the cache is not empty or the tokens do not fit in it.
    pub fn prefill(&mut self, ctx: &Context, tokens: &[u32]) -> Result<()> {
        if self.next != 0 {
            return Err(Error::invalid(format!(
                "prefill fills an empty key/value cache; this one holds {} positions: reset it",
                self.next
            )));
        }
        if tokens.len() >= self.capacity() {
            return Err(Error::invalid(format!(
                "{} tokens to prefill, but the key/value cache holds {} positions and the last \
                 token goes to step",
                tokens.len(),
                self.capacity()
            )));
        }
        if tokens.is_empty() {
            return Ok(());
        }
        let n = tokens.len();
        let len = n.next_power_of_two().min(self.capacity());
        // Position embeddings keep their first rows.
        let short = shortened(&self.graph, &self.prefill_nodes, len);
        let mut prefixes = Vec::new();
        let step = StepUniform::new(ctx)?;
        let mut lw = Lowering {
            ctx,
            graph: &short,
            batch: 1,
            train: false,
            step: &step,
            values: vec![None; short.nodes.len()],
            aux: Default::default(),
            fused: Default::default(),
            dispatches: Vec::new(),
        };
        let mut ids = vec![0f32; len];
        for (slot, &t) in ids.iter_mut().zip(tokens) {
            *slot = t as f32;
        }
        for &i in &self.prefill_nodes {
            let value = match &self.graph.nodes[i].op {
                Op::Input => Tensor::from_f32(ctx, &ids, &[1, len])?,
                Op::Param { .. } => {
                    let table = self.params[i].clone().expect("every parameter was read in new");
                    if short.nodes[i].shape == self.graph.nodes[i].shape {
                        table
                    } else {
                        let prefix = Tensor::zeros(ctx, &short.nodes[i].shape, DType::F32)?;
                        prefixes.push((table, prefix.clone()));
                        prefix
                    }
                }
                _ => lower_forward(&mut lw, i)?,
            };
            lw.values[i] = Some(value);
        }
        let dispatches: Vec<&Dispatch> = lw.dispatches.iter().collect();
        ctx.ready(&dispatches)?;
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("decode prefill"),
            });
        for (table, prefix) in &prefixes {
            encoder.copy_buffer_to_buffer(&table.buffer, 0, &prefix.buffer, 0, (prefix.numel() * 4) as u64);
        }
        record_pass(ctx, &mut encoder, "decode prefill", &dispatches);
        for c in &self.caches {
            for (value, cache) in [(lw.value(c.k), &c.k_cache), (lw.value(c.v), &c.v_cache)] {
                let bytes = (value.numel() / len * n * 4) as u64;
                encoder.copy_buffer_to_buffer(&value.buffer, 0, &cache.buffer, 0, bytes);
            }
        }
        ctx.submit(encoder.finish())?;
        self.next = n;
        Ok(())
    }

    /// Feeds `token` at the next position and returns the model's output there
    /// (a language model's logits for the token after it). Errors once the
    /// cache is full ([`Decoder::capacity`] positions).
    pub fn step(&mut self, ctx: &Context, token: u32) -> Result<Vec<f32>> {
        let p = self.next;
        if p >= self.capacity() {
            return Err(Error::invalid(format!(
                "the key/value cache holds {} positions and is full: reset it",
                self.capacity()
            )));
        }
        self.position.set(ctx, p)?;
        self.input.write(ctx, &[token as f32])?;
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("decode step"),
            });
        for (table, row) in &self.position_rows {
            let bytes = (row.numel() * 4) as u64;
            encoder.copy_buffer_to_buffer(&table.buffer, p as u64 * bytes, &row.buffer, 0, bytes);
        }
        record_pass(
            ctx,
            &mut encoder,
            "decode step",
            &self.kernels.iter().collect::<Vec<_>>(),
        );
        ctx.submit(encoder.finish())?;
        let out = self.output.to_f32(ctx)?;
        self.next += 1;
        Ok(out)
    }
}
