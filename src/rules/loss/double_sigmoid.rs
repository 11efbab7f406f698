//! A sigmoid output passed to a loss that applies sigmoid itself.

use crate::diag::{Diagnostic, Severity};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "double-sigmoid",
    code: "NN102",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["cannot-overfit"],
    summary: "sigmoid output is fed to binary cross-entropy with logits or another sigmoid",
    options: &[],
    explanation: include_str!("../../../rules/double-sigmoid.md"),
};

pub(crate) struct DoubleSigmoid;

impl Rule for DoubleSigmoid {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for first in graph.nodes_of("Sigmoid") {
            let Some(probs) = first.output(0) else {
                continue;
            };
            for u in graph.follow(probs) {
                let second = graph.node(u.node);
                if !second.is("Sigmoid") {
                    continue;
                }
                // torch exports `binary_cross_entropy_with_logits(z, y)` as
                // `Log(Sigmoid(z))` and friends: a Sigmoid read by a Log is that loss.
                let in_loss = second
                    .output(0)
                    .is_some_and(|o| graph.follow(o).iter().any(|v| graph.node(v.node).is("Log")));
                let (message, label, help) = if in_loss {
                    (
                        "sigmoid output is passed to binary cross-entropy with logits",
                        "... and the loss applies sigmoid again",
                        "pass the raw logits to `binary_cross_entropy_with_logits`, or use `binary_cross_entropy` on probabilities",
                    )
                } else {
                    (
                        "sigmoid is applied twice",
                        "... and sigmoid is applied again here",
                        "remove one of the two sigmoid ops",
                    )
                };
                out.push(
                    Diagnostic::new(&META, message)
                        .with_node(first.name())
                        .primary(first.span().call, "this already yields probabilities ...")
                        .secondary(second.op_span(), label)
                        .note("sigmoid of a probability lies in [0.5, 0.73], so the loss cannot reach its minimum and gradients vanish")
                        .help(help),
                );
            }
        }
    }
}
