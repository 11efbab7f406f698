//! Squared or absolute error between class probabilities and a target.

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Dim, Graph, NodeRef, Origin, TensorId};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "regression-loss-on-probabilities",
    code: "NN110",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["cannot-overfit"],
    summary: "a squared or absolute error compares class probabilities with a target",
    options: &[],
    explanation: include_str!("../../../rules/regression-loss-on-probabilities.md"),
};

pub(crate) struct RegressionLossOnProbabilities;

impl Rule for RegressionLossOnProbabilities {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        // One finding per probability output (TorchScript writes the
        // difference twice, once per factor of the square).
        let mut reported = std::collections::BTreeSet::new();
        for sub in graph.nodes_of("Sub") {
            let (Some(a), Some(b)) = (sub.input_id(0), sub.input_id(1)) else {
                continue;
            };
            let Some(error) = error_kind(graph, &sub) else {
                continue;
            };
            for (p, t) in [(a, b), (b, a)] {
                let Some(probs) = probabilities(graph, p) else {
                    continue;
                };
                if !is_target(graph, t) || !reported.insert(probs.id()) {
                    continue;
                }
                let kind = if probs.is("Sigmoid") {
                    "sigmoid"
                } else {
                    "softmax"
                };
                out.push(
                    Diagnostic::new(
                        &META,
                        format!("{error} between {kind} class probabilities and a target"),
                    )
                    .with_node(probs.name())
                    .primary(probs.span().call, "class probabilities ...")
                    .secondary(sub.op_span(), format!("... scored by a {error}"))
                    .note(format!(
                        "the gradient of a {error} through a saturated {kind} vanishes, so confident wrong predictions are barely corrected; cross-entropy's does not"
                    ))
                    .help(if kind == "softmax" {
                        "use cross-entropy on the logits (`F.cross_entropy`)"
                    } else {
                        "use `F.binary_cross_entropy_with_logits` on the logits"
                    }),
                );
                break;
            }
        }
    }
}

/// `mse` when the difference is squared (`Mul(d, d)`, `Mul` of two equal
/// `Sub`s as TorchScript writes it, `Pow(d, 2)`), `L1 error` when its
/// absolute value is taken, and then reduced to a loss.
fn error_kind(graph: &Graph<'_>, sub: &NodeRef<'_, '_>) -> Option<&'static str> {
    let d = sub.output_id(0)?;
    let same_difference = |t: TensorId| {
        t == d
            || graph.producer_of(t).is_some_and(|(o, _)| {
                o.is("Sub") && o.input_id(0) == sub.input_id(0) && o.input_id(1) == sub.input_id(1)
            })
    };
    for u in graph.uses_of(d) {
        let n = graph.node(u.node);
        let kind = match n.op_type() {
            "Mul" if (0..2).filter_map(|i| n.input_id(i)).all(same_difference) => {
                "mean squared error"
            }
            "Pow" if n.input(1).and_then(|e| graph.scalar(e)) == Some(2.0) => "mean squared error",
            "Abs" => "L1 error",
            _ => continue,
        };
        let reduced = n.output_id(0).is_some_and(|o| {
            graph
                .uses_of(o)
                .iter()
                .any(|r| matches!(graph.node(r.node).op_type(), "ReduceMean" | "ReduceSum"))
        });
        if reduced {
            return Some(kind);
        }
    }
    None
}

/// The softmax (over more than one class) or sigmoid (with more than one
/// output unit) that produced `t`, looking through a broadcast.
fn probabilities<'g, 'm>(graph: &'g Graph<'m>, t: TensorId) -> Option<NodeRef<'g, 'm>> {
    let Origin::Node(id) = graph.origin_of(unexpanded(graph, t)) else {
        return None;
    };
    let n = graph.node(id);
    let classes = if graph.softmax(&n).is_some_and(|s| !s.log) {
        // An unknown width: a softmax still speaks of classes.
        graph.softmax_classes(&n).or(Some(2))
    } else if n.is("Sigmoid") {
        // One sigmoid unit fed to a squared error is a deliberate regression.
        let shape = graph.shape_of(n.input_id(0)?)?;
        match shape.last()? {
            Dim::Known(c) => Some(*c),
            _ => None,
        }
    } else {
        None
    };
    classes.filter(|&c| c > 1).map(|_| n)
}

/// A target: a graph input or a stored value, not something the model computes.
fn is_target(graph: &Graph<'_>, t: TensorId) -> bool {
    matches!(
        graph.origin_of(unexpanded(graph, t)),
        Origin::Input(_) | Origin::Initializer(_)
    )
}

/// `t` before the `Expand` TorchScript writes to broadcast a loss's operands.
fn unexpanded(graph: &Graph<'_>, t: TensorId) -> TensorId {
    match graph.producer_of(t) {
        Some((e, 0)) if e.is("Expand") => e.input_id(0).unwrap_or(t),
        _ => t,
    }
}
