//! A bias that the following BatchNorm subtracts again.

use crate::diag::{Diagnostic, Severity};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "bias-before-batchnorm",
    code: "NN307",
    severity: Severity::Note,
    pass: Pass::Graph,
    category: Category::Parameters,
    premises: &[requires(Premise::InDesign, Half::Static, Unmet::Skip)],
    absorbs: &[],
    summary: "a conv or dense bias directly followed by batch normalization, which cancels it",
    options: &[],
    explanation: include_str!("../../../rules/bias-before-batchnorm.md"),
};

pub(crate) struct BiasBeforeBatchnorm;

impl Rule for BiasBeforeBatchnorm {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for layer in graph.weight_layers() {
            let Some(bias) = layer.bias_name else {
                continue;
            };
            let n = graph.node(layer.node);
            // For MatMul the bias is added by the next node; start from there.
            let from = match n.output_id(0) {
                Some(o) if layer.kind == crate::graph::LayerKind::MatMul => graph
                    .consumers_of(o)
                    .first()
                    .and_then(|(add, _)| add.output_id(0)),
                o => o,
            };
            let Some(from) = from else { continue };
            for u in graph.uses_of(from) {
                let bn = graph.node(u.node);
                if !bn.is("BatchNormalization") || u.slot != 0 {
                    continue;
                }
                out.push(
                    Diagnostic::new(&META, format!("bias `{bias}` is cancelled by the batch normalization after it"))
                        .with_node(n.name())
                        .primary(n.span().call, "adds a bias ...")
                        .secondary(bn.op_span(), "... which this subtracts again with the batch mean")
                        .help("create the layer without a bias (`bias=False`); BatchNorm's shift plays its part"),
                );
            }
        }
    }
}
