//! Activations that vanish or explode with depth (measured).

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NodeId};
use crate::probe::Probe;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

/// Each weight layer's input, in the order the pass computed them, then the
/// output of the last layer (the logits, usually): (position, tensor, layer,
/// whether the tensor is the layer's input).
fn depth_points<'g>(graph: &'g Graph<'_>, probe: &Probe) -> Vec<(usize, &'g str, NodeId, bool)> {
    let mut points: Vec<(usize, &str, NodeId, bool)> = graph
        .weight_layers()
        .filter_map(|l| {
            let t = graph.node(l.node).input(l.data_slot)?;
            Some((probe.position(t)?, t, l.node, true))
        })
        .collect();
    points.sort();
    let last_output = graph
        .weight_layers()
        .filter_map(|l| {
            let t = graph.node(l.node).output(0)?;
            Some((probe.position(t)?, t, l.node, false))
        })
        .max();
    points.extend(last_output);
    points
}

/// The standard deviation of a tensor's values; none for a tensor of one
/// value (a single sample's single logit), which has no spread to judge.
fn spread(probe: &Probe, tensor: &str) -> Option<f64> {
    probe
        .summary(tensor)
        .filter(|s| s.count > 1)
        .map(|s| s.std())
        .filter(|s| s.is_finite())
}

/// The spread the rule measures depth against: that entering the first weight
/// layer with a nonzero one, and that layer.
pub(crate) fn reference(graph: &Graph<'_>, probe: &Probe) -> Option<(f64, NodeId)> {
    depth_points(graph, probe)
        .into_iter()
        .find_map(|(_, t, node, _)| Some((spread(probe, t).filter(|&s| s > 0.0)?, node)))
}

const LOW: RuleOption = RuleOption {
    name: "low",
    default: 0.01,
    summary: "a layer's input spread below this times the first layer's fires",
};

const HIGH: RuleOption = RuleOption {
    name: "high",
    default: 100.0,
    summary: "a layer's input spread above this times the first layer's fires",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "activation-scale",
    code: "NN403",
    severity: Severity::Warning,
    pass: Pass::Probe,
    category: Category::Connections,
    // Only at initialization: trained weights set each layer's scale to what
    // the learned function needs (a power spectrum before its logarithm, a
    // confident logit), so a ratio to the first layer says nothing there.
    premises: &[requires(Premise::Untrained, Half::Measured, Unmet::Skip)],
    absorbs: &["cannot-overfit"],
    summary: "activations vanish or explode along the depth of the network at the probe",
    options: &[LOW, HIGH],
    explanation: include_str!("../../../rules/activation-scale.md"),
};

pub(crate) struct ActivationScale;

impl Rule for ActivationScale {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn measurements(
        &self,
        cx: &Check<'_, '_>,
        probe: &Probe,
        out: &mut crate::diag::report::Measurements,
    ) {
        out.bands.reference_spread = reference(cx.graph, probe).map(|(s, _)| s);
        out.bands.spread = (cx.option(&LOW), cx.option(&HIGH));
    }

    fn measures(&self) -> bool {
        true
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let (low, high) = (cx.option(&LOW), cx.option(&HIGH));
        let Some(Outside {
            depth,
            node,
            is_input,
            spread: s,
            ratio,
            reference,
            first_node,
        }) = outside(graph, probe, low, high)
        else {
            return;
        };
        let n = graph.node(node);
        if probe.after_constant_weights(graph, &n) {
            return; // the fill value sets the spread: `constant-weights`
        }
        let first_n = graph.node(first_node);
        let way = if ratio < low { "vanish" } else { "explode" };
        let what = if is_input { "entering" } else { "leaving" };
        let per_layer = ratio.powf(1.0 / depth.max(1) as f64);
        let mut d = Diagnostic::new(
            &META,
            format!(
                "activations {way}: their spread {what} this layer is {}x that entering the first layer",
                short(ratio)
            ),
        )
        .with_node(n.name())
        .primary(n.span().call, format!("standard deviation {} here", short(s)))
        .note(format!(
            "over {depth} layers the spread changes by about {}x per layer; the range is {low}x to {high}x",
            short(per_layer)
        ));
        if first_node != node {
            d = d.secondary(
                first_n.span().call,
                format!(
                    "standard deviation {} entering the first layer",
                    short(reference)
                ),
            );
        }
        out.push(d.help(if ratio < low {
            "use an initialization matched to the activation (He for ReLU, Glorot for tanh), normalization layers, or residual connections"
        } else {
            "scale the weights down to a fan-in-based initialization, or normalize the layers"
        }));
    }
}

/// The first depth point whose spread is outside `low..=high` times the
/// reference; the rest follow from it.
pub(crate) struct Outside {
    pub depth: usize,
    pub node: NodeId,
    pub is_input: bool,
    pub spread: f64,
    pub ratio: f64,
    pub reference: f64,
    pub first_node: NodeId,
}

/// Where the measured spread first leaves `low..=high` times the reference
/// spread, if anywhere; `None` too when nothing was measured.
pub(crate) fn outside(graph: &Graph<'_>, probe: &Probe, low: f64, high: f64) -> Option<Outside> {
    scan(graph, probe, low, high).flatten()
}

/// [`outside`], told apart from nothing measured: `None` when no weight
/// layer's input spread was measured, `Some(None)` when every point stayed
/// in the band.
fn scan(graph: &Graph<'_>, probe: &Probe, low: f64, high: f64) -> Option<Option<Outside>> {
    let (reference, first_node) = reference(graph, probe)?;
    let after_first = downstream(graph, first_node);
    for (depth, &(_, t, node, is_input)) in depth_points(graph, probe).iter().enumerate() {
        // Inside a residual branch a small spread is the branch's own scale
        // (attention averaging values over positions, a layer scale), not
        // depth: the stream beside it carries the signal. A layer the first
        // one does not feed (another input's branch, a second tower) is
        // not deeper than it, and its spread is not compared with it.
        if graph.on_residual_branch(node) || !after_first[node] {
            continue;
        }
        // A spread of exactly 0 is dead units (`dead-relu`) or a constant, not depth.
        let Some(s) = spread(probe, t).filter(|&s| s > 0.0) else {
            continue;
        };
        let ratio = s / reference;
        if !(low..=high).contains(&ratio) {
            return Some(Some(Outside {
                depth,
                node,
                is_input,
                spread: s,
                ratio,
                reference,
                first_node,
            }));
        }
    }
    Some(None)
}

/// Per node, whether it is `start` or reads, directly or further on, what
/// `start` computes: one walk forward.
fn downstream(graph: &Graph<'_>, start: NodeId) -> Vec<bool> {
    let mut reached = vec![false; graph.node_count()];
    let mut stack = vec![start];
    reached[start] = true;
    while let Some(id) = stack.pop() {
        let n = graph.node(id);
        for o in (0..n.outputs().len()).filter_map(|o| n.output_id(o)) {
            for (c, _) in graph.consumers_of(o) {
                if !reached[c.id()] {
                    reached[c.id()] = true;
                    stack.push(c.id());
                }
            }
        }
    }
    reached
}

/// Whether the probe measured the spread at every weight layer and it stayed
/// within activation-scale's default band of the first layer's.
pub(crate) fn in_range(graph: &Graph<'_>, probe: &Probe) -> bool {
    matches!(scan(graph, probe, LOW.default, HIGH.default), Some(None))
}
