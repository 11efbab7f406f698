//! Binary cross-entropy of values that are not probabilities.

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NodeRef, Origin};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "bce-without-sigmoid",
    code: "NN109",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["non-finite", "cannot-overfit"],
    summary: "binary cross-entropy takes the log of values that can leave [0, 1]",
    options: &[],
    explanation: include_str!("../../../rules/bce-without-sigmoid.md"),
};

pub(crate) struct BceWithoutSigmoid;

impl Rule for BceWithoutSigmoid {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for bce in graph.binary_cross_entropy_inputs() {
            let log = bce.log;
            // A graph input may well hold probabilities: nothing to judge.
            let Origin::Node(id) = graph.origin_of(bce.probabilities) else {
                continue;
            };
            let source = graph.node(id);
            if is_probability(graph, &source) {
                continue;
            }
            let mut d = Diagnostic::new(
                &META,
                format!(
                    "binary cross-entropy takes the log of `{}` output, which is not a probability",
                    source.op_type()
                ),
            )
            .with_node(log.name())
                .primary(log.span().call, "log of the predicted probability ...")
                .secondary(source.op_span(), "... which this can make negative or above 1")
                .note("outside (0, 1) the log is NaN, or the loss is clamped at 100 and gives no gradient")
            .help("apply a sigmoid first, or pass the raw scores to `binary_cross_entropy_with_logits`, which is also numerically stable");
            // A NaN the probe measures at either log is this problem.
            if let Some(c) = bce.complement {
                d = d.spanning(c.name());
            }
            out.push(d);
        }
    }
}

/// Whether a node's output lies in [0, 1]: a sigmoid, a softmax (fused or
/// written out), or a clamp into [0, 1].
pub(crate) fn is_probability<'m>(graph: &Graph<'m>, n: &NodeRef<'_, 'm>) -> bool {
    if graph.softmax(n).is_some_and(|s| !s.log) {
        return true;
    }
    match n.op_type() {
        "Sigmoid" | "HardSigmoid" => true,
        "Clip" => {
            let bound = |slot: usize, attr: &str| {
                n.input(slot)
                    .filter(|t| !t.is_empty())
                    .and_then(|t| graph.scalar(t))
                    .or_else(|| n.attr_f32(attr).map(f64::from))
            };
            matches!((bound(1, "min"), bound(2, "max")), (Some(lo), Some(hi)) if lo >= 0.0 && hi <= 1.0)
        }
        _ => false,
    }
}
