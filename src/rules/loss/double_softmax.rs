//! A probability output normalized by softmax a second time.

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NodeRef, Origin};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "double-softmax",
    code: "NN101",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["cannot-overfit"],
    summary: "softmax output is fed to something that applies softmax again",
    options: &[],
    explanation: include_str!("../../../rules/double-softmax.md"),
};

pub(crate) struct DoubleSoftmax;

impl Rule for DoubleSoftmax {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        // Each normalization that takes scores, fused or written out, and
        // what produced those scores.
        for second in graph.nodes() {
            let sce = second.is("SoftmaxCrossEntropyLoss");
            let scores = if sce {
                second.input_id(0)
            } else {
                graph.softmax(&second).map(|s| s.scores)
            };
            let Some(scores) = scores else { continue };
            let Origin::Node(first) = graph.origin_of(scores) else {
                continue;
            };
            let first = graph.node(first);
            let Some(normalized) = graph.softmax(&first) else {
                continue;
            };
            if !sce && !same_axis(graph, &first, &second) {
                continue;
            }
            let what = if sce {
                "softmax cross-entropy, which applies softmax itself"
            } else {
                "another softmax over the same axis"
            };
            // log_softmax is shifted scores (z - logsumexp z), and every
            // softmax ignores a shift: normalizing again changes nothing.
            let (message, severity, label, note, help) = if normalized.log {
                (
                    "logsoftmax output is normalized again, which changes nothing",
                    Severity::Note,
                    "these are log-probabilities ...",
                    "log_softmax(z) = z - logsumexp(z) only shifts the scores, so the second normalization gives what it would give on z: redundant, not wrong",
                    if sce {
                        "drop the log_softmax and pass the logits, or keep it and use `F.nll_loss`"
                    } else {
                        "drop one of the two"
                    },
                )
            } else {
                (
                    "softmax output is normalized twice",
                    META.severity,
                    "this already yields probabilities ...",
                    "a second softmax squashes the scores toward uniform, so gradients shrink and the loss plateaus",
                    if sce {
                        "pass the raw logits to the loss (`F.cross_entropy` applies log-softmax itself)"
                    } else {
                        "remove one of the two softmax ops"
                    },
                )
            };
            let d = Diagnostic::new(&META, message)
                .with_severity(severity)
                .with_node(first.name())
                .primary(first.span().call, label)
                .secondary(second.op_span(), format!("... and {what}"))
                .note(note)
                .help(help);
            out.push(d);
        }
    }
}

fn same_axis<'m>(graph: &Graph<'m>, a: &NodeRef<'_, 'm>, b: &NodeRef<'_, 'm>) -> bool {
    let rank = a.input(0).and_then(|t| graph.shape(t)).map(<[_]>::len);
    match rank {
        Some(r) => graph.softmax_axis(a, r) == graph.softmax_axis(b, r),
        // Without a known rank, compare what the attributes say.
        None => a.attr_i64("axis") == b.attr_i64("axis"),
    }
}
