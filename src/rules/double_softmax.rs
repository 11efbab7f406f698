//! A probability output normalized by softmax a second time.

use super::{Category, Check, Pass, Rule, RuleMeta};
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NodeRef};

pub static META: RuleMeta = RuleMeta {
    name: "double-softmax",
    code: "NN101",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Loss,
    summary: "softmax output is fed to something that applies softmax again",
    options: &[],
    explanation: include_str!("../../rules/double-softmax.md"),
};

pub struct DoubleSoftmax;

impl Rule for DoubleSoftmax {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for first in graph
            .nodes()
            .filter(|n| n.is("Softmax") || n.is("LogSoftmax"))
        {
            let Some(probs) = first.output(0) else {
                continue;
            };
            for u in graph.follow(probs) {
                let second = graph.node(u.node);
                if u.slot != 0 {
                    continue;
                }
                let what = if second.is("SoftmaxCrossEntropyLoss") {
                    "softmax cross-entropy, which applies softmax itself"
                } else if first.is("Softmax")
                    && (second.is("Softmax") || second.is("LogSoftmax"))
                    && same_axis(graph, &first, &second)
                {
                    "another softmax over the same axis"
                } else {
                    continue;
                };
                out.push(
                    Diagnostic::new(&META, format!("{} output is normalized twice", first.op_type().to_lowercase()))
                        .with_node(first.name())
                        .primary(first.span().call, "this already yields probabilities ...")
                        .secondary(second.op_span(), format!("... and {what}"))
                        .note("a second softmax squashes the scores toward uniform, so gradients shrink and the loss plateaus")
                        .help(if second.is("SoftmaxCrossEntropyLoss") {
                            "pass the raw logits to the loss (`F.cross_entropy` applies log-softmax itself)"
                        } else {
                            "remove one of the two softmax ops"
                        }),
                );
            }
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
