//! Nodes whose results reach no graph output.

use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::diag::{Diagnostic, Severity};
use crate::graph::Vertex;
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "dead-node",
    code: "NN004",
    severity: Severity::Note,
    pass: Pass::Graph,
    category: Category::Hygiene,
    premises: &[],
    absorbs: &[],
    summary: "a node whose outputs reach no graph output",
    options: &[],
    explanation: include_str!("../../../rules/dead-node.md"),
};

pub(crate) struct DeadNode;

impl Rule for DeadNode {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let g = graph.petgraph();
        let mut live = vec![false; graph.node_count()];
        let mut stack: Vec<_> = g
            .node_indices()
            .filter(|&v| matches!(g[v], Vertex::Output(_)))
            .collect();
        let mut seen = vec![false; g.node_count()];
        while let Some(v) = stack.pop() {
            if std::mem::replace(&mut seen[v.index()], true) {
                continue;
            }
            if let Vertex::Node(id) = g[v] {
                live[id] = true;
            }
            stack.extend(g.edges_directed(v, Direction::Incoming).map(|e| e.source()));
        }
        for n in graph.nodes() {
            if live[n.id()] {
                continue;
            }
            // Report where a dead branch starts, not every node in it.
            let fed_by_dead = (0..n.inputs().len())
                .filter_map(|i| n.input_id(i))
                .any(|t| graph.producer_of(t).is_some_and(|(p, _)| !live[p.id()]));
            if fed_by_dead {
                continue;
            }
            out.push(
                Diagnostic::new(
                    &META,
                    format!("no graph output uses what {} computes", n.describe()),
                )
                .with_node(n.name())
                .primary(n.span().call, "no graph output depends on this")
                .help("remove it, or connect the output it was meant to feed"),
            );
        }
    }
}
