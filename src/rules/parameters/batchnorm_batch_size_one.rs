//! Training-mode BatchNorm over a single value per channel.

use crate::diag::{Diagnostic, Severity};
use crate::graph::Dim;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "batchnorm-batch-size-one",
    code: "NN308",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Parameters,
    premises: &[requires(
        Premise::TrainingExport,
        Half::Static,
        Unmet::Blind,
    )],
    absorbs: &["zero-gradient", "cannot-overfit"],
    summary: "training-mode batch normalization over one value per channel has zero variance",
    options: &[],
    explanation: include_str!("../../../rules/batchnorm-batch-size-one.md"),
};

pub(crate) struct BatchnormBatchSizeOne;

impl Rule for BatchnormBatchSizeOne {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for bn in graph.nodes_of("BatchNormalization") {
            let training = bn.attr_i64("training_mode") == Some(1)
                || (bn.outputs().len() >= 3 && bn.outputs()[1..].iter().any(|o| !o.is_empty()));
            if !training {
                continue;
            }
            let Some(shape) = bn.input(0).and_then(|t| graph.shape(t)) else {
                continue;
            };
            if shape.len() < 2 {
                continue;
            }
            // Statistics are taken over every axis but the channel axis (1).
            let pooled = shape.iter().enumerate().filter(|(i, _)| *i != 1);
            if !pooled.into_iter().all(|(_, d)| *d == Dim::Known(1)) {
                continue;
            }
            out.push(
                Diagnostic::new(&META, "batch normalization in training mode sees one value per channel")
                    .with_node(bn.name())
                    .primary(bn.span().call, "the batch variance here is 0")
                    .note("each value is normalized against itself: the output is the shift parameter, whatever the input")
                    .help("train with a batch larger than 1, or use LayerNorm/GroupNorm, which do not depend on the batch"),
            );
        }
    }
}
