//! What the graph says about gradients: which tensors training updates, and
//! which ops pass no gradient back to their inputs.
//!
//! ONNX has no stop-gradient, and the exporters keep no `requires_grad`:
//! every float initializer looks trainable. So trainable here means what an
//! optimizer over `model.parameters()` would update in the layers the
//! checklist speaks of: the weights and biases of weight layers, the scales
//! and shifts of normalization layers, and embedding tables.

use super::{Graph, NodeId, NodeRef, TensorId, NORMALIZATION_OPS};
use crate::onnx::proto::data_type as dt;

/// What a trainable tensor is to its layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ParamKind {
    Weight,
    Bias,
    /// A normalization layer's scale.
    Scale,
    /// A normalization layer's shift.
    Shift,
    /// An embedding table read by `Gather`.
    Embedding,
}

/// A tensor training would update, and the node that reads it.
#[derive(Clone, Debug)]
pub struct Trainable<'m> {
    pub name: &'m str,
    pub tensor: TensorId,
    pub node: super::NodeId,
    pub kind: ParamKind,
}

impl<'m> Graph<'m> {
    /// Whether the node reads a Reshape's output and only Reshapes read its own.
    fn between_reshapes(&self, n: &NodeRef<'_, 'm>) -> bool {
        let reshaped = |t: Option<&str>| {
            t.and_then(|t| self.producer(t))
                .is_some_and(|(p, _)| p.is("Reshape"))
        };
        let readers = n.output_id(0).map_or(&[][..], |o| self.io.reads(o));
        reshaped(n.input(0))
            && !readers.is_empty()
            && readers.iter().all(|&(r, _)| self.node(r).is("Reshape"))
    }

    /// The trainable tensors, each once, in the order the graph first reads them.
    pub fn trainable(&self) -> Vec<Trainable<'m>> {
        let mut out: Vec<Trainable<'m>> = Vec::new();
        // By tensor id: a set of ids hashed would cost more than the walk.
        let mut seen = vec![false; self.tensors.len()];
        let float = |id: TensorId| {
            self.constant_of(id)
                .is_some_and(|t| dt::is_float(t.data_type))
        };
        for n in self.nodes() {
            if !n.domain_is_default() {
                continue;
            }
            let mut add = |slot: usize, kind: ParamKind| {
                let Some(id) = n.input_id(slot) else {
                    return;
                };
                if !seen[id] && float(id) {
                    seen[id] = true;
                    out.push(Trainable {
                        name: self.tensor_name(id),
                        tensor: id,
                        node: n.id(),
                        kind,
                    });
                }
            };
            if let Some(layer) = self.weight_layer(n.id()) {
                let slot = |t: TensorId| n.input_ids().position(|i| i == Some(t));
                if let Some(w) = slot(layer.weight_id) {
                    add(w, ParamKind::Weight);
                }
                if let Some(b) = layer.bias_id.and_then(slot) {
                    add(b, ParamKind::Bias);
                }
                continue;
            }
            match n.op_type() {
                // GroupNorm as exported: InstanceNormalization over the
                // channels reshaped into groups, between two Reshapes, with a
                // constant unit scale and zero shift; the module's own scale
                // and shift follow as a Mul and an Add.
                "InstanceNormalization" if self.between_reshapes(&n) => {}
                op if NORMALIZATION_OPS.contains(&op) => {
                    add(1, ParamKind::Scale);
                    add(2, ParamKind::Shift);
                }
                "Gather" if n.input_id(1).is_some_and(|i| self.constant_of(i).is_none()) => {
                    add(0, ParamKind::Embedding)
                }
                // Recurrent layers: input and recurrent weights, the
                // biases of both, and LSTM's peepholes.
                "LSTM" | "GRU" | "RNN" => {
                    add(1, ParamKind::Weight);
                    add(2, ParamKind::Weight);
                    add(3, ParamKind::Bias);
                    add(7, ParamKind::Weight);
                }
                // A product written as an equation: its stored operands are weights.
                "Einsum" => {
                    for slot in 0..n.input_ids().len() {
                        add(slot, ParamKind::Weight);
                    }
                }
                _ => {}
            }
        }
        // Weights a layer reads through layout ops (an in-projection split or
        // transposed), and biases added to a layer's output (MatMul, then Add).
        let mut more: Vec<(usize, Trainable<'m>)> = Vec::new();
        for n in self.nodes() {
            if !n.domain_is_default() {
                continue;
            }
            for (slot, id) in n.input_ids().enumerate() {
                let Some(id) = id else { continue };
                if seen[id]
                    || !self.constant_of(id).is_some_and(|t| {
                        dt::is_float(t.data_type) && t.dims.iter().product::<i64>() > 1
                    })
                {
                    continue;
                }
                let Some(kind) = self.read_as_parameter(&n, slot) else {
                    continue;
                };
                seen[id] = true;
                more.push((
                    n.id(),
                    Trainable {
                        name: self.tensor_name(id),
                        tensor: id,
                        node: n.id(),
                        kind,
                    },
                ));
            }
        }
        if !more.is_empty() {
            let mut all: Vec<(usize, Trainable<'m>)> =
                out.into_iter().map(|t| (t.node, t)).collect();
            all.extend(more);
            all.sort_by_key(|(i, _)| *i);
            out = all.into_iter().map(|(_, t)| t).collect();
        }
        out
    }

    /// Whether input `slot` of `n` is a layer's weight read through layout
    /// ops, or a bias added to a layer's output.
    fn read_as_parameter(&self, n: &NodeRef<'_, 'm>, slot: usize) -> Option<ParamKind> {
        const LAYOUT: &[&str] = &[
            "Transpose",
            "Split",
            "Slice",
            "Reshape",
            "Squeeze",
            "Unsqueeze",
            "Identity",
        ];
        const LAYERS: &[&str] = &[
            "MatMul",
            "Gemm",
            "Conv",
            "ConvTranspose",
            "Einsum",
            "LSTM",
            "GRU",
            "RNN",
        ];
        let is_layer_output = |t: &str| {
            self.producer(t)
                .is_some_and(|(p, _)| LAYERS.contains(&p.op_type()))
        };
        // GroupNorm's own scale and shift, applied after the normalized
        // groups are reshaped back to channels.
        let group_normalized = |t: &str| {
            self.producer(t).is_some_and(|(r, _)| {
                r.is("Reshape")
                    && r.input(0)
                        .and_then(|i| self.producer(i))
                        .is_some_and(|(p, _)| {
                            p.is("InstanceNormalization") && self.between_reshapes(&p)
                        })
            })
        };
        let group_scaled = |t: &str| {
            self.producer(t)
                .is_some_and(|(m, _)| m.is("Mul") && m.inputs().iter().any(|i| group_normalized(i)))
        };
        let affine = |c: &NodeRef<'_, 'm>, s: usize| -> Option<ParamKind> {
            let other = c.input(1 - s.min(1))?;
            if c.is("Add") && is_layer_output(other) {
                Some(ParamKind::Bias)
            } else if c.is("Add") && group_scaled(other) {
                Some(ParamKind::Shift)
            } else if c.is("Mul") && group_normalized(other) {
                Some(ParamKind::Scale)
            } else {
                None
            }
        };
        if n.is("Add") || n.is("Mul") {
            return affine(n, slot);
        }
        // TorchScript reorders a recurrent layer's gates by slicing its
        // parameters and concatenating the slices.
        let layout = |c: &NodeRef<'_, 'm>, s: usize| {
            (LAYOUT.contains(&c.op_type()) && s == 0) || c.is("Concat")
        };
        if !layout(n, slot) {
            return None;
        }
        let mut frontier: Vec<&str> = n.outputs().iter().map(String::as_str).collect();
        for _ in 0..6 {
            let mut next = Vec::new();
            for t in frontier {
                for (c, s) in self.consumers(t) {
                    if LAYERS.contains(&c.op_type()) {
                        // A recurrent layer's biases are its input 3.
                        let recurrent = matches!(c.op_type(), "LSTM" | "GRU" | "RNN");
                        return Some(if recurrent && s == 3 {
                            ParamKind::Bias
                        } else {
                            ParamKind::Weight
                        });
                    }
                    if let Some(kind) = affine(&c, s) {
                        return Some(kind);
                    }
                    if layout(&c, s) {
                        next.extend(c.outputs().iter().map(String::as_str));
                    }
                }
            }
            frontier = next;
        }
        None
    }

    /// Why no gradient flows from output `output` of `n` back to its input
    /// `input`: the op's derivative there is zero or undefined. `None` when
    /// it flows, or when the input only sizes the output (`Shape`, an index).
    pub fn blocks_gradient(
        &self,
        n: &NodeRef<'_, 'm>,
        input: usize,
        output: usize,
    ) -> Option<Block> {
        if !n.domain_is_default() {
            return None;
        }
        let op = n.op_type();
        let block = match op {
            "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "IsNaN" | "IsInf" => {
                Block::Comparison
            }
            "Round" | "Floor" | "Ceil" | "Sign" => Block::Step,
            "ArgMax" | "ArgMin" => Block::Index,
            "TopK" if output == 1 => Block::Index,
            "NonZero" => Block::Index,
            "Cast" => {
                let to = n.attr_i64("to").unwrap_or(dt::FLOAT as i64) as i32;
                if dt::is_float(to) {
                    return None;
                }
                Block::IntegerCast
            }
            "Mul" => {
                let other = n.input(1 - input.min(1))?;
                let zero = self
                    .values(other)
                    .and_then(|v| v.ok())
                    .is_some_and(|v| !v.is_empty() && v.iter().all(|&x| x == 0.0));
                if !zero {
                    return None;
                }
                Block::TimesZero
            }
            _ => return None,
        };
        Some(block)
    }

    /// What a gradient meets going back through `n` to its input `input`:
    /// whether it flows back from the outputs [`Graph::gradient_outputs`]
    /// names, and why it stops at an output it does not flow back from.
    /// Only `TopK` differs by output (its values pass, its indices do not).
    pub fn passage(&self, n: &NodeRef<'_, 'm>, input: usize) -> (bool, Option<Block>) {
        if n.is("TopK") {
            let indices = n.output(1).is_some_and(|o| !o.is_empty());
            let block = indices.then(|| self.blocks_gradient(n, input, 1)).flatten();
            return (self.blocks_gradient(n, input, 0).is_none(), block);
        }
        let block = self.blocks_gradient(n, input, 0);
        (block.is_none(), block)
    }

    /// The outputs of `n` a gradient flows back from, by index, when
    /// [`Graph::passage`] says it passes.
    pub fn gradient_outputs(&self, n: &NodeRef<'_, 'm>) -> std::ops::Range<usize> {
        let all = n.outputs().len();
        if n.is("TopK") {
            0..all.min(1)
        } else {
            0..all
        }
    }

    /// Where the gradient of `targets` reaches, in one pass over the graph
    /// each way: see [`GradientFlow`].
    pub fn gradient_flow(&self, targets: &[TensorId]) -> GradientFlow {
        let tensors = self.tensors.len();
        let mut flow = GradientFlow {
            open: vec![false; tensors],
            first_block: vec![None; tensors],
            resolved: vec![false; tensors],
            beyond: rustc_hash::FxHashMap::default(),
        };
        // Backwards from the targets: a tensor is open when some reader
        // passes the gradient back from an open output. Each node's inputs
        // are visited once, whichever of its outputs is reached first.
        let mut expanded = vec![false; self.node_count()];
        let mut stack: Vec<TensorId> = Vec::new();
        for &t in targets {
            if t < tensors && !flow.open[t] {
                flow.open[t] = true;
                stack.push(t);
            }
        }
        while let Some(t) = stack.pop() {
            let Some((p, o)) = self.producer_of(t) else {
                continue;
            };
            if expanded[p.id()] || !self.gradient_outputs(&p).contains(&o) {
                continue;
            }
            expanded[p.id()] = true;
            for slot in 0..p.inputs().len() {
                let Some(i) = p.input_id(slot) else { continue };
                if flow.open[i] || self.structural_input(&p, slot) || !self.passage(&p, slot).0 {
                    continue;
                }
                flow.open[i] = true;
                stack.push(i);
            }
        }
        flow
    }

    /// The first node, going forward from tensor `t`, past which no
    /// gradient flows, for a tensor [`GradientFlow::open`] says is not open.
    /// Memoized in `flow`, so that asking for every tensor walks each edge
    /// once: a reader that blocks directly comes first (in file order),
    /// then what lies beyond the readers that pass, the last reader first.
    pub fn first_block(&self, flow: &mut GradientFlow, t: TensorId) -> Option<(NodeId, Block)> {
        enum Step {
            Enter(TensorId),
            Leave(TensorId),
        }
        if t >= flow.resolved.len() || flow.open[t] {
            return None;
        }
        let mut on_path = rustc_hash::FxHashSet::default();
        let mut stack = vec![Step::Enter(t)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter(t) => {
                    if flow.resolved[t] || !on_path.insert(t) {
                        continue;
                    }
                    stack.push(Step::Leave(t));
                    for (c, slot) in self.consumers_of(t) {
                        if self.structural_input(&c, slot) || !self.passage(&c, slot).0 {
                            continue;
                        }
                        for o in self.gradient_outputs(&c) {
                            if let Some(out) = c.output_id(o) {
                                if !flow.resolved[out] && !on_path.contains(&out) {
                                    stack.push(Step::Enter(out));
                                }
                            }
                        }
                    }
                }
                Step::Leave(t) => {
                    on_path.remove(&t);
                    let reads = self.consumers_of(t);
                    let mut found = None;
                    for (c, slot) in &reads {
                        if self.structural_input(c, *slot) {
                            continue;
                        }
                        if let (_, Some(b)) = self.passage(c, *slot) {
                            found = Some((c.id(), b));
                            break;
                        }
                    }
                    if found.is_none() {
                        for (c, slot) in reads.iter().rev() {
                            if self.structural_input(c, *slot) || !self.passage(c, *slot).0 {
                                continue;
                            }
                            let past = *flow.beyond.entry(c.id()).or_insert_with(|| {
                                self.gradient_outputs(c)
                                    .rev()
                                    .filter_map(|o| c.output_id(o))
                                    .find_map(|out| {
                                        flow.resolved[out].then(|| flow.first_block[out]).flatten()
                                    })
                            });
                            if past.is_some() {
                                found = past;
                                break;
                            }
                        }
                    }
                    flow.first_block[t] = found;
                    flow.resolved[t] = true;
                }
            }
        }
        flow.first_block[t]
    }

    /// Whether the input slot of `n` only sizes or indexes its output, so
    /// that no gradient is expected through it.
    pub fn structural_input(&self, n: &NodeRef<'_, 'm>, input: usize) -> bool {
        n.domain_is_default()
            && match n.op_type() {
                "Shape" | "Size" | "ConstantOfShape" | "EyeLike" => true,
                "Reshape" | "Expand" | "Tile" | "Range" => input > 0,
                "Gather" | "GatherElements" | "GatherND" | "ScatterElements" => input == 1,
                "Slice" | "Squeeze" | "Unsqueeze" | "Split" | "ReduceMean" | "ReduceSum"
                | "ReduceMax" | "ReduceMin" | "Pad" | "TopK" | "Resize" | "Upsample" => input > 0,
                "Where" => input == 0,
                _ => false,
            }
    }

    /// Whether `n` (a `Sub`) is the detached half of a straight-through
    /// estimator, `a + (q(a) - a)`, where `q` has no useful derivative
    /// (`torch.round`, `torch.sign`, a comparison). torch writes
    /// `(q(a) - a).detach()`; ONNX has no way to say so, and the graph read
    /// as written has derivative 0 where torch's is 1.
    pub fn straight_through(&self, n: &NodeRef<'_, 'm>) -> bool {
        if !n.is("Sub") {
            return false;
        }
        let (Some(q), Some(a), Some(out)) = (n.input(0), n.input(1), n.output(0)) else {
            return false;
        };
        // The sum with `a` itself.
        let added_back = self
            .consumers(out)
            .iter()
            .any(|(c, slot)| c.is("Add") && c.input(1 - (*slot).min(1)) == Some(a));
        added_back && self.quantizes(q, a)
    }

    /// Whether `q` is computed from `a` within a few elementwise steps, one
    /// of which passes no gradient.
    fn quantizes(&self, q: &str, a: &str) -> bool {
        let mut stack = vec![(q, 0usize, false)];
        while let Some((t, depth, blocked)) = stack.pop() {
            if t == a {
                if blocked {
                    return true;
                }
                continue;
            }
            if depth > 6 {
                continue;
            }
            let Some((p, slot)) = self.producer(t) else {
                continue;
            };
            for (i, input) in p.inputs().iter().enumerate() {
                let blocks = self.blocks_gradient(&p, i, slot).is_some();
                stack.push((input.as_str(), depth + 1, blocked || blocks));
            }
        }
        false
    }
}

/// Why an op passes no gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Block {
    /// A comparison: its output is a boolean.
    Comparison,
    /// A step function (`Round`, `Floor`, `Ceil`, `Sign`): derivative 0 almost everywhere.
    Step,
    /// An index (`ArgMax`, `TopK`'s indices, `NonZero`).
    Index,
    /// A cast to an integer or boolean type.
    IntegerCast,
    /// A multiplication by a constant zero.
    TimesZero,
}

impl Block {
    /// Why, in words, lowercase.
    pub fn describe(self) -> &'static str {
        match self {
            Block::Comparison => "a comparison has no gradient",
            Block::Step => "a step function has zero gradient almost everywhere",
            Block::Index => "an index has no gradient",
            Block::IntegerCast => "a cast to an integer or boolean type has no gradient",
            Block::TimesZero => "a product with a constant zero has zero gradient",
        }
    }
}

/// Where the gradient of some targets reaches: per tensor, whether some path
/// to a target passes no op that blocks gradients ([`GradientFlow::open`]),
/// and, for one that is not open, the first node that blocks it
/// ([`Graph::first_block`], filled as asked).
#[derive(Clone, Debug)]
pub struct GradientFlow {
    open: Vec<bool>,
    first_block: Vec<Option<(NodeId, Block)>>,
    resolved: Vec<bool>,
    /// Per node, the first block beyond it (its passing outputs, the last
    /// first), so that a node read by many tensors is looked past once.
    beyond: rustc_hash::FxHashMap<NodeId, Option<(NodeId, Block)>>,
}

impl GradientFlow {
    /// Whether a gradient from the targets reaches tensor `t`.
    pub fn open(&self, t: TensorId) -> bool {
        self.open.get(t).copied().unwrap_or(false)
    }
}
