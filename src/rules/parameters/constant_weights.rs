//! Weight tensors whose values are all the same.

use crate::diag::{Diagnostic, Severity};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "constant-weights",
    code: "NN305",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Parameters,
    premises: &[requires(Premise::Untrained, Half::Static, Unmet::Note)],
    absorbs: &["cannot-overfit"],
    summary: "every value of a weight tensor is the same, so its units stay identical",
    options: &[],
    explanation: include_str!("../../../rules/constant-weights.md"),
};

pub(crate) struct ConstantWeights;

impl Rule for ConstantWeights {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for layer in graph.weight_layers() {
            let Some(st) = graph.stats_of(layer.weight_id) else {
                continue;
            };
            let (Some(value), true) = (st.first, st.all_equal) else {
                continue;
            };
            let count = st.count;
            if count < 2 {
                continue;
            }
            // A zero-initialized head (ViT's, MLP-Mixer's) or last layer of
            // a residual branch (zero-init residual) is deliberate: its
            // units get different gradients, from the loss's classes or
            // from the stream beside the branch, and differentiate.
            if graph.is_head(layer.node) || graph.ends_residual_branch(layer.node) {
                continue;
            }
            let n = graph.node(layer.node);
            let value = crate::onnx::printer::format_f64(value);
            out.push(
                Diagnostic::new(
                    &META,
                    format!(
                        "all {count} values of weight `{}` are {value}",
                        layer.weight_name
                    ),
                )
                .with_node(n.name())
                .primary(
                    n.span().call,
                    "every unit of this layer computes the same thing",
                )
                .note(
                    "units that start identical get identical gradients and never become different",
                )
                .help("initialize with random values (the framework's default initializer does)"),
            );
        }
    }
}
