//! Graph inputs nothing reads.

use crate::diag::{Diagnostic, Severity};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "unused-input",
    code: "NN003",
    severity: Severity::Note,
    pass: Pass::Graph,
    category: Category::Hygiene,
    premises: &[],
    absorbs: &[],
    summary: "a graph input that no node reads",
    options: &[],
    explanation: include_str!("../../../rules/unused-input.md"),
};

pub(crate) struct UnusedInput;

impl Rule for UnusedInput {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        if !graph.scope().0.is_empty() {
            return; // If/Loop/Scan bodies take the inputs their operator dictates
        }
        for &name in graph.inputs() {
            if graph.is_constant(name) || !graph.consumers(name).is_empty() || graph.is_output(name)
            {
                continue;
            }
            let span = graph
                .source()
                .value(graph.scope(), name)
                .unwrap_or_else(|| graph.source().graph(graph.scope()));
            out.push(
                Diagnostic::new(&META, format!("input `{name}` is never used"))
                    .primary(span, "no node reads this")
                    .help("callers must still feed it; remove it, or check the node that should read it"),
            );
        }
    }
}
