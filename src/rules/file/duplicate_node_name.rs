//! Node names used twice.

use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap as HashMap;

use crate::diag::{Diagnostic, Severity};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "duplicate-node-name",
    code: "NN005",
    severity: Severity::Note,
    pass: Pass::Graph,
    category: Category::Hygiene,
    premises: &[],
    absorbs: &[],
    summary: "two nodes of a graph share a name",
    options: &[],
    explanation: include_str!("../../../rules/duplicate-node-name.md"),
};

pub(crate) struct DuplicateNodeName;

impl Rule for DuplicateNodeName {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let mut first = HashMap::with_capacity_and_hasher(graph.node_count(), Default::default());
        for n in graph.nodes() {
            if n.name().is_empty() {
                continue;
            }
            match first.entry(n.name()) {
                Entry::Vacant(e) => {
                    e.insert(n.id());
                }
                Entry::Occupied(e) => {
                    let earlier = *e.get();
                    out.push(
                    Diagnostic::new(&META, format!("node name `{}` is used twice", n.name()))
                        .with_node(n.name())
                        .primary(n.span().call, "second node with this name")
                        .secondary(graph.node(earlier).span().call, "first used here")
                        .note("tools that address nodes by name (profilers, quantizers, nnlint's own --select by node) pick one of them")
                        .help("give every node a unique name"),
                    );
                }
            }
        }
    }
}
