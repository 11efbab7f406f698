//! Structural errors found while building the graph.

use crate::diag::{Diagnostic, Severity};
use crate::graph::ProblemKind;
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "invalid-graph",
    code: "NN001",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Validity,
    premises: &[],
    absorbs: &[],
    summary:
        "the graph is malformed: undefined or doubly defined tensors, cycles, missing opset imports",
    options: &[],
    explanation: include_str!("../../../rules/invalid-graph.md"),
};

pub(crate) struct InvalidGraph;

impl Rule for InvalidGraph {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let in_graph = if graph.scope().0.is_empty() {
            String::new()
        } else {
            format!(" in {}", graph.title())
        };
        for p in graph.problems() {
            let d = match &p.kind {
                ProblemKind::Undefined { node, slot, tensor } => {
                    let n = graph.node(*node);
                    Diagnostic::new(
                        &META,
                        format!(
                            "input `{tensor}` of {} is never defined{in_graph}",
                            n.describe()
                        ),
                    )
                    .with_node(n.name())
                    .primary(
                        n.span().call,
                        format!("input {slot} is not a graph input, initializer or node output"),
                    )
                }
                ProblemKind::ProducedTwice {
                    node,
                    tensor,
                    first,
                } => {
                    let n = graph.node(*node);
                    let d = Diagnostic::new(
                        &META,
                        format!("tensor `{tensor}` is defined twice{in_graph}"),
                    )
                    .with_node(n.name())
                    .primary(n.span().call, "defined again here");
                    match first {
                        Some(f) => d.secondary(graph.node(*f).span().call, "first defined here"),
                        None => match graph.source().value(graph.scope(), tensor) {
                            Some(span) => d.secondary(span, "first defined here"),
                            None => d,
                        },
                    }
                }
                ProblemKind::Cycle { nodes } => {
                    let Some((&head, rest)) = nodes.split_first() else {
                        continue;
                    };
                    let n = graph.node(head);
                    let mut d = Diagnostic::new(
                        &META,
                        format!(
                            "{} nodes depend on each other in a cycle{in_graph}",
                            nodes.len()
                        ),
                    )
                    .with_node(n.name())
                    .primary(n.span().call, "this node depends on its own output");
                    for &other in rest {
                        d = d.secondary(graph.node(other).span().call, "part of the cycle");
                    }
                    d.help("an ONNX graph must be acyclic; loops belong in a Loop or Scan body")
                }
                ProblemKind::OutputUndefined { tensor } => {
                    let span = graph
                        .source()
                        .value(graph.scope(), tensor)
                        .unwrap_or_else(|| graph.source().graph(graph.scope()));
                    Diagnostic::new(
                        &META,
                        format!("graph output `{tensor}` is never defined{in_graph}"),
                    )
                    .primary(span, "no node, input or initializer produces this")
                }
                ProblemKind::MissingOpset { node, domain } => {
                    let n = graph.node(*node);
                    Diagnostic::new(
                        &META,
                        format!(
                            "domain `{domain}` of {} has no opset import{in_graph}",
                            n.describe()
                        ),
                    )
                    .with_node(n.name())
                    .primary(n.op_span(), "this operator's domain is not imported")
                    .secondary(graph.source().opset.clone(), "imported domains")
                    .help(format!(
                        "add `\"{domain}\" : VERSION` to the model's opset_import"
                    ))
                }
                ProblemKind::UnknownOp { node, opset } => {
                    let n = graph.node(*node);
                    Diagnostic::new(
                        &META,
                        format!(
                            "`{}` is not an operator of the default domain at opset {opset}{in_graph}",
                            n.op_type()
                        ),
                    )
                    .with_node(n.name())
                    .primary(n.op_span(), "unknown operator")
                    .secondary(graph.source().opset.clone(), "opset imported here")
                    .help("check the spelling, import a newer opset, or give the op its own domain")
                }
            };
            out.push(d);
        }
    }
}
