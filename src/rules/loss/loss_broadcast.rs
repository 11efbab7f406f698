//! A prediction and a target of different shapes broadcast into a matrix
//! inside the loss: `[N, 1]` against `[N]` compares every sample with every target.

use crate::diag::{Diagnostic, Severity};
use crate::graph::{broadcast, Dim, Graph, TensorId};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "loss-broadcast",
    code: "NN111",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["cannot-overfit", "initial-loss"],
    summary:
        "the prediction and the target of a loss broadcast against each other into a larger tensor",
    options: &[],
    explanation: include_str!("../../../rules/loss-broadcast.md"),
};

pub(crate) struct LossBroadcast;

impl Rule for LossBroadcast {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let loss = graph.loss();
        for term in loss.data_terms() {
            let Some(meet) = term.meet.map(|m| graph.node(m)) else {
                continue;
            };
            if !matches!(meet.op_type(), "Sub" | "Mul" | "Add" | "Div") {
                continue;
            }
            let (Some(a), Some(b)) = (meet.input_id(0), meet.input_id(1)) else {
                continue;
            };
            let (a, b) = (unexpanded(graph, a), unexpanded(graph, b));
            let (Some(sa), Some(sb)) = (graph.shape_of(a), graph.shape_of(b)) else {
                continue;
            };
            if !outer(sa, sb) {
                continue;
            }
            let (pred, target) = if graph.is_behind_weights(a) {
                (a, b)
            } else {
                (b, a)
            };
            let shape = |t: TensorId| format_shape(graph.shape_of(t).unwrap_or_default());
            let mut d = Diagnostic::new(
                &META,
                format!(
                    "the prediction {} and the target {} broadcast to {} in the loss",
                    shape(pred),
                    shape(target),
                    format_shape(&broadcast(sa, sb).unwrap_or_default())
                ),
            )
            .with_node(meet.name())
            .spanning(graph.node(term.node).name())
            .primary(
                meet.span().call,
                format!(
                    "`{}` meets `{}` here",
                    graph.tensor_name(pred),
                    graph.tensor_name(target)
                ),
            )
            .secondary(
                graph.node(term.node).op_span(),
                format!("{} reduced here", term.form.describe()),
            );
            if let Some((p, _)) = loss.total.and_then(|t| graph.producer_of(t)) {
                d = d.spanning(p.name());
            }
            out.push(
                d.note("each prediction is compared with every target: the loss averages all the pairs, its minimum is the mean of the targets, and the model cannot fit them")
                    .note("PyTorch broadcasts these silently; `F.mse_loss` only warns at run time (\"Using a target size that is different to the input size\")")
                    .help("make the shapes equal before the loss: `pred.squeeze(-1)`, or `target.view_as(pred)`"),
            );
        }
    }
}

/// `t` before the `Expand` that torch's `broadcast_tensors` writes.
fn unexpanded(graph: &Graph<'_>, t: TensorId) -> TensorId {
    let mut t = t;
    for _ in 0..4 {
        match graph.producer_of(t) {
            Some((p, 0)) if p.is("Expand") => match p.input_id(0) {
                Some(i) => t = i,
                None => break,
            },
            _ => break,
        }
    }
    t
}

/// A dimension that is not 1: known above 1, or named (a batch).
fn wide(d: Option<&Dim>) -> Option<bool> {
    match d {
        None | Some(Dim::Known(1)) => Some(false),
        Some(Dim::Known(_)) | Some(Dim::Named(_)) => Some(true),
        Some(Dim::Unknown) => None,
    }
}

/// Whether broadcasting `a` against `b` expands each of them along an axis
/// where the other is wide: an outer product, larger than both.
fn outer(a: &[Dim], b: &[Dim]) -> bool {
    let rank = a.len().max(b.len());
    fn at(s: &[Dim], rank: usize, i: usize) -> Option<&Dim> {
        (i + s.len()).checked_sub(rank).and_then(|j| s.get(j))
    }
    let (mut a_only, mut b_only) = (false, false);
    for i in 0..rank {
        match (wide(at(a, rank, i)), wide(at(b, rank, i))) {
            (Some(true), Some(false)) => a_only = true,
            (Some(false), Some(true)) => b_only = true,
            _ => {}
        }
    }
    a_only && b_only
}

fn format_shape(s: &[Dim]) -> String {
    let dims: Vec<String> = s
        .iter()
        .map(|d| match d {
            Dim::Known(n) => n.to_string(),
            Dim::Named(n) => n.to_string(),
            Dim::Unknown => "?".to_string(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}
