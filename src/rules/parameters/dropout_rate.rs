//! Dropout ratios that do nothing or destroy the signal.

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NodeRef};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const HIGH: RuleOption = RuleOption {
    name: "high",
    default: 0.5,
    summary: "ratios above this warn",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "dropout-rate",
    code: "NN302",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Parameters,
    premises: &[requires(
        Premise::TrainingExport,
        Half::Static,
        Unmet::Blind,
    )],
    absorbs: &[],
    summary: "dropout ratio above 0.5 (warning), of 1 or more (error), or 0 (note)",
    options: &[HIGH],
    explanation: include_str!("../../../rules/dropout-rate.md"),
};

pub(crate) struct DropoutRate;

impl Rule for DropoutRate {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let high = cx.option(&HIGH);
        for drop in graph.nodes_of("Dropout") {
            let Some(ratio) = ratio(graph, &drop) else {
                continue;
            };
            // Ratios are stored as float32; print them as the user wrote them.
            let shown = crate::onnx::printer::format_f32(ratio as f32);
            let d = if ratio >= 1.0 {
                Diagnostic::new(
                    &META,
                    format!("dropout ratio {shown} drops every activation"),
                )
                .with_severity(Severity::Error)
                .primary(drop.span().call, "nothing passes through this")
                .note("the layers after it see only zeros, and nothing before it gets a gradient")
                .help("use a ratio below 1; 0.1 to 0.5 is typical")
            } else if ratio > high {
                Diagnostic::new(&META, format!("dropout ratio {shown} is above {high}"))
                    .primary(drop.span().call, format!("drops {:.0}% of activations", ratio * 100.0))
                    .note("the surviving activations are scaled by 1/(1-p), so the signal is very noisy and training slows")
                    .help("`p` is the probability of dropping, not of keeping; 0.1 to 0.5 is typical")
            } else if ratio == 0.0 {
                Diagnostic::new(&META, "dropout ratio 0 does nothing")
                    .with_severity(Severity::Note)
                    .primary(drop.span().call, "passes every activation through")
                    .help("remove the Dropout, or set the ratio you meant")
            } else {
                continue;
            };
            out.push(d.with_node(drop.name()));
        }
    }
}

/// The drop probability, when the model states it as a constant.
pub(crate) fn ratio(graph: &Graph<'_>, drop: &NodeRef<'_, '_>) -> Option<f64> {
    // Opset 12 moved `ratio` from an attribute to the second input; both default to 0.5.
    if let Some(r) = drop.attr_f32("ratio") {
        return Some(r as f64);
    }
    match drop.input(1) {
        Some(name) => graph.scalar(name),
        None => Some(0.5),
    }
}
