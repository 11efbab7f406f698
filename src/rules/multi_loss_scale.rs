//! A summed loss whose terms carry constant weights orders of magnitude apart.

use super::{Category, Check, Pass, Rule, RuleMeta, RuleOption};
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NodeId, Origin};

pub static META: RuleMeta = RuleMeta {
    name: "multi-loss-scale",
    code: "NN107",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Loss,
    summary: "the terms of a summed loss are weighted 100x or more apart",
    options: &[RuleOption {
        name: "ratio",
        default: 100.0,
        summary: "largest over smallest constant weight that fires",
    }],
    explanation: include_str!("../../rules/multi-loss-scale.md"),
};

const LOSS_OPS: &[&str] = &[
    "SoftmaxCrossEntropyLoss",
    "NegativeLogLikelihoodLoss",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
];

pub struct MultiLossScale;

struct Term {
    weight: f64,
    /// The Mul/Div that applies the weight, if any.
    scaled_by: Option<NodeId>,
    /// Where the unweighted term is computed.
    source: NodeId,
}

impl Rule for MultiLossScale {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let threshold = cx.option("ratio");
        for output in graph.outputs() {
            let Some((sum, _)) = graph.producer(output) else {
                continue;
            };
            if !sum.is("Add") {
                continue;
            }
            let mut terms = Vec::new();
            if !collect(graph, output, &mut terms, 0) || terms.len() < 2 {
                continue;
            }
            let (Some(lo), Some(hi)) = (
                terms.iter().min_by(|a, b| a.weight.total_cmp(&b.weight)),
                terms.iter().max_by(|a, b| a.weight.total_cmp(&b.weight)),
            ) else {
                continue;
            };
            if lo.weight <= 0.0 || hi.weight / lo.weight < threshold {
                continue;
            }
            let ratio = hi.weight / lo.weight;
            let span = |t: &Term| graph.node(t.scaled_by.unwrap_or(t.source)).span().call;
            out.push(
                Diagnostic::new(
                    &META,
                    format!("loss terms are weighted {} apart", format_ratio(ratio)),
                )
                .with_node(sum.name())
                .primary(span(hi), format!("weighted {}", trim(hi.weight)))
                .secondary(span(lo), format!("weighted {}", trim(lo.weight)))
                .secondary(sum.op_span(), "summed here")
                .note(format!(
                    "the gradient of the larger term dominates; the smaller one barely trains (threshold: {threshold}x)"
                ))
                .help("scale the terms so their contributions are of the same order at initialization"),
            );
        }
    }
}

/// Splits a sum into weighted terms. Fails when a term is not loss-like.
fn collect(graph: &Graph<'_>, tensor: &str, terms: &mut Vec<Term>, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    let Some((n, _)) = graph.producer(tensor) else {
        return false;
    };
    if n.is("Add") && (0..2).all(|i| n.input(i).is_some_and(|t| !graph.is_constant(t))) {
        return (0..2).all(|i| {
            n.input(i)
                .is_some_and(|t| collect(graph, t, terms, depth + 1))
        });
    }
    let (weight, scaled_by, core) = if n.is("Mul") || n.is("Div") {
        let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
            return false;
        };
        match (graph.scalar(a), graph.scalar(b)) {
            (None, Some(w)) if n.is("Mul") => (w.abs(), Some(n.id()), a),
            (Some(w), None) if n.is("Mul") => (w.abs(), Some(n.id()), b),
            (None, Some(w)) if w != 0.0 => (1.0 / w.abs(), Some(n.id()), a),
            _ => return false,
        }
    } else {
        (1.0, None, tensor)
    };
    let Origin::Node(source) = graph.origin(core) else {
        return false;
    };
    if !LOSS_OPS.iter().any(|op| graph.node(source).is(op)) {
        return false;
    }
    terms.push(Term {
        weight,
        scaled_by,
        source,
    });
    true
}

fn trim(v: f64) -> String {
    crate::onnx::printer::format_f64(v)
}

fn format_ratio(r: f64) -> String {
    if r >= 1e4 {
        format!("{r:.0e}x")
    } else {
        format!("{r:.0}x")
    }
}
