//! A softmax used as a hidden activation.

use super::premise::{requires, Half, Premise, Unmet};
use super::{Category, Check, Pass, Rule, RuleMeta};
use crate::diag::{Diagnostic, Severity};
use crate::graph::LayerKind;

pub static META: RuleMeta = RuleMeta {
    name: "hidden-softmax",
    code: "NN204",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Connections,
    premises: &[requires(Premise::InDesign, Half::Static, Unmet::Skip)],
    absorbs: &[],
    summary: "a softmax over features feeds another weight layer, as a hidden activation",
    options: &[],
    explanation: include_str!("../../rules/hidden-softmax.md"),
};

pub struct HiddenSoftmax;

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
            for u in graph.uses_of(o) {
                // Attention's `Softmax(QK^T) V` multiplies two activations: no
                // weight layer. A weight layer reads the softmax as its data.
                let Some(layer) = graph.weight_layer(u.node) else {
                    continue;
                };
                if u.slot != layer.data_slot || !u.via.is_empty() {
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
                let next = graph.node(u.node);
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
