//! A softmax used as a hidden activation.

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, LayerKind, NodeId, TensorId};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "hidden-softmax",
    code: "NN204",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Connections,
    premises: &[requires(Premise::InDesign, Half::Static, Unmet::Skip)],
    absorbs: &["cannot-overfit"],
    summary: "a softmax over features feeds another weight layer, as a hidden activation",
    options: &[],
    explanation: include_str!("../../../rules/hidden-softmax.md"),
};

pub(crate) struct HiddenSoftmax;

impl Rule for HiddenSoftmax {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for n in graph.nodes() {
            let Some(s) = graph.softmax(&n).filter(|s| !s.log) else {
                continue;
            };
            let (Some(o), Some(rank)) = (n.output_id(0), graph.shape_of(s.scores).map(<[_]>::len))
            else {
                continue;
            };
            let Some(axis) = graph.softmax_axis(&n, rank) else {
                continue;
            };
            for (reader, slot, axis) in readers(graph, o, axis) {
                // Attention's `Softmax(QK^T) V` multiplies two activations: no
                // weight layer. A weight layer reads the softmax as its data.
                let Some(layer) = graph.weight_layer(reader) else {
                    continue;
                };
                if slot != layer.data_slot {
                    continue;
                }
                // One output unit weighs the probabilities into a single
                // value: an expectation (YOLOv8's distribution focal loss head
                // takes the mean bin this way), not a hidden layer.
                if layer.units == Some(1) {
                    continue;
                }
                // Over the features the layer mixes: channels of a conv, the
                // last axis of a dense layer. Over a spatial or sequence axis a
                // softmax weights positions for pooling, which is fine.
                let features = match layer.kind {
                    LayerKind::Conv => 1,
                    LayerKind::Gemm | LayerKind::MatMul => rank - 1,
                };
                if axis != features {
                    continue;
                }
                let next = graph.node(reader);
                out.push(
                    Diagnostic::new(&META, "softmax is used as a hidden activation")
                        .with_node(n.name())
                        .primary(n.span().call, "these features are normalized to sum to 1 ...")
                        .secondary(next.op_span(), "... and fed to another weight layer")
                        .note("a softmax makes the features compete: most are pushed toward 0, and the gradient through it vanishes as it saturates")
                        .help("use ReLU (or another elementwise activation) between hidden layers; keep softmax for the output or for attention weights"),
                );
                break;
            }
        }
    }
}

/// Ops between a hidden activation and the next layer that keep its
/// features as they are: pooling picks or averages positions per channel.
const KEEPS_FEATURES: &[&str] = &["MaxPool", "AveragePool", "Dropout", "Pad"];

/// The nodes that read `t` (with their input slot), looking through layout
/// ops and through the ops that keep features as they are, each with where
/// the softmax's `axis` is in what it reads: a `Transpose` on the way moves
/// it (talking-heads attention permutes the scores and mixes the heads, not
/// the normalized axis).
fn readers(graph: &Graph<'_>, t: TensorId, axis: usize) -> Vec<(NodeId, usize, usize)> {
    let mut out = Vec::new();
    let mut stack = vec![(t, axis)];
    let mut seen = std::collections::BTreeSet::new();
    while let Some((t, axis)) = stack.pop() {
        if !seen.insert(t) {
            continue;
        }
        for u in graph.uses_of(t) {
            let Some(axis) = u
                .via
                .iter()
                .try_fold(axis, |axis, &v| moved_axis(&graph.node(v), axis))
            else {
                continue;
            };
            let n = graph.node(u.node);
            match n.output_id(0) {
                Some(next)
                    if u.slot == 0
                        && n.domain_is_default()
                        && KEEPS_FEATURES.contains(&n.op_type()) =>
                {
                    stack.push((next, axis))
                }
                _ => out.push((u.node, u.slot, axis)),
            }
        }
    }
    out.sort();
    out
}

/// Where `axis` of a node's input is in its output: moved by a `Transpose`'s
/// permutation, kept by the other layout ops; `None` when a `Transpose`
/// without a readable permutation hides it.
fn moved_axis(n: &crate::graph::NodeRef<'_, '_>, axis: usize) -> Option<usize> {
    if !n.is("Transpose") {
        return Some(axis);
    }
    let perm = n.attr("perm").and_then(|a| a.ints())?;
    perm.iter().position(|&p| p == axis as i64)
}
