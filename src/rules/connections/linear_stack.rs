//! Two weight layers with nothing nonlinear between them.

use std::collections::HashSet;

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, LayerKind, NodeId, WeightLayer};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "linear-stack",
    code: "NN201",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Connections,
    premises: &[requires(Premise::InDesign, Half::Static, Unmet::Skip)],
    absorbs: &[],
    summary:
        "two weight layers follow each other with no nonlinearity, collapsing into one linear map",
    options: &[],
    explanation: include_str!("../../../rules/linear-stack.md"),
};

pub(crate) struct LinearStack;

impl Rule for LinearStack {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for first in graph.weight_layers() {
            if grouped(graph, first) {
                continue; // depthwise/grouped convs factorize a conv on purpose
            }
            for (second_id, via) in next_layers(graph, first.node) {
                let Some(second) = graph.weight_layer(second_id) else {
                    continue;
                };
                if grouped(graph, second) {
                    continue;
                }
                let (inner, outer_in, outer_out) = (first.units, first.in_width, second.units);
                if let (Some(m), Some(a), Some(b)) = (inner, outer_in, outer_out) {
                    // A factorization no wider than either end and narrower
                    // than one (a low-rank bottleneck, MobileNet's linear
                    // bottleneck before the next block's expansion) is a
                    // design choice.
                    if m <= a.min(b) && m < a.max(b) {
                        continue;
                    }
                }
                let a = graph.node(first.node);
                let b = graph.node(second_id);
                let mut d = Diagnostic::new(&META, "two linear layers in a row collapse into one")
                    .with_node(a.name())
                    .primary(a.span().call, "this layer's output ...")
                    .secondary(
                        b.op_span(),
                        "... is multiplied by another weight with no nonlinearity between",
                    );
                for v in via {
                    d = d.secondary(graph.node(v).op_span(), "only affine ops in between");
                }
                let widths = match (outer_in, inner, outer_out) {
                    (Some(x), Some(m), Some(y)) => format!(" ({x} -> {m} -> {y})"),
                    _ => String::new(),
                };
                out.push(
                    d.note(format!(
                        "the product of the two weights is a single linear map{widths}: the extra layer adds parameters, not capacity"
                    ))
                    .help("add an activation between the layers, or merge them into one"),
                );
            }
        }
    }
}

fn grouped(graph: &Graph<'_>, l: &WeightLayer<'_>) -> bool {
    l.kind == LayerKind::Conv && graph.node(l.node).attr_i64("group").unwrap_or(1) > 1
}

/// Weight layers whose data input is reached from `start`'s output through
/// affine ops only, each value on the way read by nothing else.
fn next_layers(graph: &Graph<'_>, start: NodeId) -> Vec<(NodeId, Vec<NodeId>)> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(NodeId, Vec<NodeId>)> = vec![(start, Vec::new())];
    while let Some((id, via)) = stack.pop() {
        let Some(out) = graph.node(id).output_id(0) else {
            continue;
        };
        // Two layers merge into one only when nothing else reads what lies
        // between them: a value that also feeds attention's other
        // projections, a residual add or a second head must stay.
        if graph.read_count(out) != 1 || graph.is_output(graph.tensor_name(out)) {
            continue;
        }
        for (next, slot) in graph.consumers_of(out) {
            if !seen.insert((next.id(), slot)) {
                continue;
            }
            if let Some(layer) = graph.weight_layer(next.id()) {
                if layer.data_slot == slot {
                    found.push((next.id(), via.clone()));
                }
                continue;
            }
            // BatchNorm is affine once trained; the other normalizations are not.
            let affine = graph.is_affine_passthrough(&next)
                && (!graph.normalizes(&next) || next.is("BatchNormalization"));
            if slot == 0 && affine {
                let mut v = via.clone();
                if !graph.is_value_preserving(&next) {
                    v.push(next.id());
                }
                stack.push((next.id(), v));
            }
        }
    }
    found.sort();
    found
}
