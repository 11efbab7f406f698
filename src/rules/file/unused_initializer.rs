//! Initializers nothing reads.

use crate::diag::{Diagnostic, Severity};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "unused-initializer",
    code: "NN002",
    severity: Severity::Note,
    pass: Pass::Graph,
    category: Category::Hygiene,
    premises: &[],
    absorbs: &[],
    summary: "an initializer that no node reads",
    options: &[],
    explanation: include_str!("../../../rules/unused-initializer.md"),
};

pub(crate) struct UnusedInitializer;

impl Rule for UnusedInitializer {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for (i, t) in graph.initializers().iter().enumerate() {
            let read = graph
                .initializer_id(i)
                .is_some_and(|id| graph.read_count(id) > 0);
            if read || graph.is_output(&t.name) {
                continue;
            }
            let span = graph
                .source()
                .value(graph.scope(), &t.name)
                .unwrap_or_else(|| graph.source().graph(graph.scope()));
            out.push(
                Diagnostic::new(&META, format!("initializer `{}` is never used", t.name))
                    .primary(span, "no node reads this")
                    .help("remove it to shrink the model, or check the node that should read it"),
            );
        }
    }
}
