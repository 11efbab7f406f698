//! Softmax that normalizes across the batch.

use crate::diag::{Diagnostic, Severity};
use crate::graph::Dim;
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "softmax-batch-axis",
    code: "NN106",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[],
    absorbs: &["batch-mixing", "cannot-overfit"],
    summary: "softmax normalizes over the batch axis instead of the classes",
    options: &[],
    explanation: include_str!("../../../rules/softmax-batch-axis.md"),
};

pub(crate) struct SoftmaxBatchAxis;

impl Rule for SoftmaxBatchAxis {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        // The batch dimension: the leading dimension of the first graph input.
        let Some(batch) = graph
            .inputs()
            .first()
            .and_then(|i| graph.shape(i))
            .and_then(|s| s.first())
        else {
            return;
        };
        if matches!(batch, Dim::Unknown | Dim::Known(1)) {
            return;
        }
        for n in graph
            .nodes()
            .filter(|n| n.is("Softmax") || n.is("LogSoftmax"))
        {
            let Some(shape) = n.input(0).and_then(|t| graph.shape(t)) else {
                continue;
            };
            if shape.len() < 2
                || graph.softmax_axis(&n, shape.len()) != Some(0)
                || &shape[0] != batch
            {
                continue;
            }
            out.push(
                Diagnostic::new(&META, format!("{} normalizes over the batch axis", n.op_type().to_lowercase()))
                    .with_node(n.name())
                    .primary(n.span().call, "axis 0 is the batch")
                    .note("each sample's output then depends on the other samples in the batch, and class scores do not sum to 1")
                    .help("normalize over the class axis (`dim=1` or `dim=-1`)"),
            );
        }
    }
}
