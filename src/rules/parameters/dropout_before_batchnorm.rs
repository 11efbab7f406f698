//! Dropout whose output is normalized by BatchNormalization: the variance shift.

use crate::diag::{Diagnostic, Severity};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "dropout-before-batchnorm",
    code: "NN301",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Parameters,
    premises: &[requires(
        Premise::TrainingExport,
        Half::Static,
        Unmet::Blind,
    )],
    absorbs: &[],
    summary: "dropout feeds batch normalization, whose statistics then do not hold at inference",
    options: &[],
    explanation: include_str!("../../../rules/dropout-before-batchnorm.md"),
};

pub(crate) struct DropoutBeforeBatchnorm;

impl Rule for DropoutBeforeBatchnorm {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for drop in graph.nodes_of("Dropout") {
            let ratio = super::dropout_rate::ratio(graph, &drop);
            if ratio == Some(0.0) {
                continue; // a no-op dropout shifts nothing; `dropout-rate` says so
            }
            let Some(output) = drop.output(0) else {
                continue;
            };
            for u in graph.follow(output) {
                let bn = graph.node(u.node);
                if !bn.is("BatchNormalization") || u.slot != 0 {
                    continue;
                }
                let mut d =
                    Diagnostic::new(&META, "dropout feeds batch normalization (variance shift)")
                        .with_node(drop.name())
                        .primary(drop.span().call, "dropout output ...")
                        .secondary(
                            bn.op_span(),
                            "...is normalized here with statistics dropout has skewed",
                        );
                for &via in &u.via {
                    d = d.secondary(graph.node(via).op_span(), "passed through unchanged");
                }
                if let Some(r) = ratio {
                    d = d.note(format!(
                        "training drops {:.0}% of activations, so the running variance BatchNormalization \
                         learns is not the variance it sees once dropout is off",
                        r * 100.0
                    ));
                }
                out.push(d.help("move Dropout after BatchNormalization, or drop one of them"));
            }
        }
    }
}
