//! Deep chains of weight layers with neither normalization nor residual connections.

use crate::diag::{Diagnostic, Severity};
use crate::graph::NodeId;
use crate::probe::Probe;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const DEPTH: RuleOption = RuleOption {
    name: "depth",
    default: 10.0,
    summary: "chains of at least this many weight layers fire",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "missing-normalization",
    code: "NN303",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Parameters,
    premises: &[requires(Premise::InDesign, Half::Static, Unmet::Skip)],
    absorbs: &["cannot-overfit"],
    summary: "a chain of 10 or more weight layers has no normalization and no residual connection",
    options: &[DEPTH],
    explanation: include_str!("../../../rules/missing-normalization.md"),
};

pub(crate) struct MissingNormalization;

#[derive(Clone, Copy, Default)]
struct Chain {
    depth: usize,
    start: Option<NodeId>,
}

impl Rule for MissingNormalization {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn measures(&self) -> bool {
        true
    }

    /// A deep plain stack whose measured activations stay within
    /// `activation-scale`'s band all the way (VGG, SqueezeNet at their own
    /// init) does not need normalization to keep its scale, unless the
    /// one-batch fit ran and stalled, which the finding then explains.
    fn refuted(&self, cx: &Check<'_, '_>, probe: &Probe, _finding: &Diagnostic) -> bool {
        let fit_stalled = matches!(&probe.fit, Some(Ok(fit)) if fit.stuck());
        !fit_stalled && crate::rules::measured::activation_scale::in_range(cx.graph, probe)
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let Some(order) = graph.topological_order() else {
            return; // a cycle is `invalid-graph`'s finding
        };
        let mut chain = vec![Chain::default(); graph.node_count()];
        let mut deepest: Option<(NodeId, Chain)> = None;
        for &id in order {
            let n = graph.node(id);
            let inputs: Vec<Chain> = (0..n.inputs().len())
                .filter_map(|i| n.input_id(i))
                .filter(|&t| graph.stored_of(t).is_none())
                .map(|t| match graph.producer_of(t) {
                    Some((p, _)) => chain[p.id()],
                    None => Chain::default(),
                })
                .collect();
            let longest = inputs
                .iter()
                .copied()
                .max_by_key(|c| c.depth)
                .unwrap_or_default();
            // A skip connection joins paths of different depth: an `Add`
            // (ResNet), or a `Concat` of a block's input and output (DenseNet,
            // CSP and C2f blocks).
            let residual = match n.op_type() {
                "Add" => inputs.len() == 2 && inputs[0].depth != inputs[1].depth,
                "Concat" => inputs.iter().any(|c| c.depth != longest.depth),
                _ => false,
            };
            chain[id] = if graph.normalizes(&n) || residual {
                Chain::default()
            } else if graph.weight_layer(id).is_some() {
                Chain {
                    depth: longest.depth + 1,
                    start: longest.start.or(Some(id)),
                }
            } else {
                longest
            };
            if graph.weight_layer(id).is_some()
                && deepest.is_none_or(|(_, c)| chain[id].depth > c.depth)
            {
                deepest = Some((id, chain[id]));
            }
        }
        let Some((
            last,
            Chain {
                depth,
                start: Some(start),
            },
        )) = deepest
        else {
            return;
        };
        if (depth as f64) < cx.option(&DEPTH) {
            return;
        }
        let end = graph.node(last);
        out.push(
            Diagnostic::new(
                &META,
                format!("{depth} weight layers in a row without normalization or a residual connection"),
            )
            .with_node(end.name())
            .primary(end.span().call, format!("weight layer {depth} of the chain"))
            .secondary(graph.node(start).op_span(), "the chain starts here")
            .note("without normalization or skip connections, activations and gradients shrink or grow geometrically with depth")
            .help("add BatchNorm/LayerNorm between layers, or residual connections around blocks"),
        );
    }
}
