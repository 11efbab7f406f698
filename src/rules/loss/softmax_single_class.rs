//! Softmax over an axis of size 1.

use crate::diag::{Diagnostic, Severity};
use crate::graph::Dim;
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "softmax-single-class",
    code: "NN105",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[],
    absorbs: &["zero-gradient", "cannot-overfit"],
    summary: "softmax over an axis of size 1, whose output is constant",
    options: &[],
    explanation: include_str!("../../../rules/softmax-single-class.md"),
};

pub(crate) struct SoftmaxSingleClass;

impl Rule for SoftmaxSingleClass {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for n in graph.nodes() {
            let is_loss = n.is("SoftmaxCrossEntropyLoss");
            if !(n.is("Softmax") || n.is("LogSoftmax") || is_loss) {
                continue;
            }
            let Some(shape) = n.input(0).and_then(|t| graph.shape(t)) else {
                continue;
            };
            let axis = if is_loss {
                (shape.len() >= 2).then_some(1)
            } else {
                graph.softmax_axis(&n, shape.len())
            };
            let Some(axis) = axis else { continue };
            if shape[axis] != Dim::Known(1) {
                continue;
            }
            let constant = if n.is("LogSoftmax") { "0" } else { "1" };
            let message = if is_loss {
                "softmax cross-entropy over a single class is always 0".to_string()
            } else {
                format!(
                    "{} over axis {axis} of size 1 always outputs {constant}",
                    n.op_type().to_lowercase()
                )
            };
            out.push(
                Diagnostic::new(&META, message)
                    .with_node(n.name())
                    .primary(n.span().call, "normalizes over one element")
                    .note("nothing upstream gets a gradient through a constant")
                    .help("for one output use sigmoid with binary cross-entropy, or give the layer one output per class"),
            );
        }
    }
}
