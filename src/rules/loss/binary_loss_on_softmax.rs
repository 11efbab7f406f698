//! Binary cross-entropy over the outputs of a softmax.

use crate::diag::{Diagnostic, Severity};
use crate::graph::{NodeRef, Origin, TensorId};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "binary-loss-on-softmax",
    code: "NN108",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["cannot-overfit"],
    summary: "binary cross-entropy is computed on a softmax over more than one class",
    options: &[],
    explanation: include_str!("../../../rules/binary-loss-on-softmax.md"),
};

pub(crate) struct BinaryLossOnSoftmax;

impl Rule for BinaryLossOnSoftmax {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        // `F.binary_cross_entropy(p, t)`: the log of `p` itself.
        let mut found: Vec<(NodeRef<'_, '_>, TensorId, &str)> = graph
            .binary_cross_entropy_inputs()
            .into_iter()
            .map(|b| (b.log, b.probabilities, "binary cross-entropy"))
            .collect();
        // `F.binary_cross_entropy_with_logits(z, t)`: `Log(Sigmoid(z))`.
        for log in graph.nodes_of("Log") {
            let Some((sigmoid, _)) = log.input_id(0).and_then(|i| graph.producer_of(i)) else {
                continue;
            };
            if let (true, Some(z)) = (sigmoid.is("Sigmoid"), sigmoid.input_id(0)) {
                found.push((log, z, "binary cross-entropy with logits"));
            }
        }
        for (log, p, loss) in found {
            let Origin::Node(id) = graph.origin_of(p) else {
                continue;
            };
            let softmax = graph.node(id);
            if graph.softmax(&softmax).is_none_or(|s| s.log) {
                continue;
            }
            // One class is `softmax-single-class`'s finding.
            if graph.softmax_classes(&softmax).is_some_and(|c| c < 2) {
                continue;
            }
            out.push(
                Diagnostic::new(&META, format!("{loss} is computed on a softmax over several classes"))
                    .with_node(softmax.name())
                    .primary(softmax.span().call, "these probabilities sum to 1 across classes ...")
                    .secondary(log.op_span(), format!("... but {loss} scores each class on its own"))
                    .note("binary cross-entropy treats every output as an independent yes/no probability; a softmax's outputs are not independent, so the loss and its accuracy mean something else")
                    .help("for one label per sample use cross-entropy on the logits (`F.cross_entropy`); for several labels per sample use sigmoid outputs with `binary_cross_entropy_with_logits`"),
            );
        }
    }
}
