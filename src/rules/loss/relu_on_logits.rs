//! A non-negative activation applied to the logits of a softmax.

use crate::diag::{Diagnostic, Severity};
use crate::graph::Origin;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "relu-on-logits",
    code: "NN104",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["cannot-overfit"],
    summary: "a non-negative activation sits on the logits of a softmax or softmax loss",
    options: &[],
    explanation: include_str!("../../../rules/relu-on-logits.md"),
};

const NON_NEGATIVE: &[&str] = &["Relu", "Softplus", "Sigmoid", "Abs"];

pub(crate) struct ReluOnLogits;

impl Rule for ReluOnLogits {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for sm in graph.nodes() {
            let logits = match graph.softmax(&sm) {
                Some(s) => Some(s.scores),
                None if sm.is("SoftmaxCrossEntropyLoss") => sm.input_id(0),
                None => None,
            };
            let Some(logits) = logits else { continue };
            let Origin::Node(act) = graph.origin_of(logits) else {
                continue;
            };
            let act = graph.node(act);
            if !NON_NEGATIVE.iter().any(|op| act.is(op)) {
                continue;
            }
            out.push(
                Diagnostic::new(&META, format!("the logits of a softmax pass through {} first", act.op_type()))
                    .with_node(act.name())
                    .primary(act.span().call, "logits can no longer be negative ...")
                    .secondary(sm.op_span(), "... before they are normalized here")
                    .note("clipped logits cannot express low confidence, and every class whose logit is cut to 0 gets no gradient")
                    .help("remove the activation: the last layer before a softmax should be linear"),
            );
        }
    }
}
