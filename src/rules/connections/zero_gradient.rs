//! Trainable tensors the loss sends no gradient to.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Block, Graph, NodeId, ParamKind, TensorId, Trainable, NORMALIZATION_OPS};
use crate::probe::{Backward, Probe, ProbeOptions};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const MIN_SAMPLES: RuleOption = RuleOption {
    name: "min-samples",
    default: 16.0,
    summary: "probe samples below which a measured zero gradient says too little (units off for a few samples)",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "zero-gradient",
    code: "NN206",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Connections,
    premises: &[requires(Premise::Untrained, Half::Both, Unmet::Skip)],
    absorbs: &["cannot-overfit"],
    summary: "trainable tensors that get no gradient from the loss, so they never train",
    options: &[MIN_SAMPLES],
    explanation: include_str!("../../../rules/zero-gradient.md"),
};

pub(crate) struct ZeroGradient;

impl Rule for ZeroGradient {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let trainable = graph.trainable();
        let blocked = blocked(graph, &trainable);
        for (node, (block, params)) in blocked {
            let n = graph.node(node);
            let first = params[0];
            let layer = graph.node(first.node);
            let who = match params.len() {
                1 => format!("`{}` gets", first.name),
                2 => format!("`{}` and 1 other trainable tensor get", first.name),
                k => format!("`{}` and {} other trainable tensors get", first.name, k - 1),
            };
            let mut d = Diagnostic::new(
                &META,
                format!(
                    "{who} no gradient: every path to the loss passes through this `{}`",
                    n.op_type()
                ),
            )
            .with_node(n.name())
            .primary(n.span().call, "no gradient flows back through this")
            .note(block.describe());
            if layer.id() != n.id() {
                d = d.secondary(layer.span().call, format!("`{}` is read here", first.name));
            }
            if params.len() > 1 {
                let names: Vec<String> = params
                    .iter()
                    .take(6)
                    .map(|p| format!("`{}`", p.name))
                    .collect();
                let more = if params.len() > 6 { ", ..." } else { "" };
                d = d.note(format!("blocked: {}{more}", names.join(", ")));
            }
            out.push(d.help(help(block)));
        }
    }

    fn measures(&self) -> bool {
        true
    }

    fn backward(&self, _: &ProbeOptions) -> &'static [Backward] {
        &[Backward::Params]
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let Some(Ok(grads)) = &probe.gradients else {
            return;
        };
        // A ReLU is off for a given input half the time: over a few samples
        // a zero gradient behind it proves nothing (as in `dead-relu`).
        if (grads.batch as f64) < cx.option(&MIN_SAMPLES) {
            return;
        }
        let graph = cx.graph;
        let trainable = graph.trainable();
        // A weight layer whose weights all hold one value (`constant-weights`),
        // or a zero-initialized weight or scale downstream (a zero-initialized
        // head, torchvision's `zero_init_residual`), zeroes gradients at the
        // first step only: measured, that is not a parameter that never trains.
        let constant = graph.weight_layers().any(|l| {
            graph
                .stats(l.weight_name)
                .is_some_and(|s| s.all_equal && s.count > 1)
        });
        let zero_scale = trainable.iter().any(|t| {
            t.kind == ParamKind::Scale
                && graph
                    .stats(t.name)
                    .is_some_and(|s| s.count > 0 && s.max_abs == 0.0)
        });
        let held = constant || zero_scale;
        if held {
            return;
        }
        // Nothing trains at all: one finding, where the loss is computed.
        if !grads.params.is_empty() && grads.params.iter().all(|p| p.none()) {
            let at = match &grads.target {
                crate::probe::Target::Head(h) => graph.producer(h).map(|(p, _)| p),
                crate::probe::Target::Loss => {
                    graph.loss().data_terms().next().map(|t| graph.node(t.node))
                }
                crate::probe::Target::Outputs => graph
                    .outputs()
                    .first()
                    .and_then(|o| graph.producer(o))
                    .map(|(p, _)| p),
            };
            if let Some(n) = at {
                out.push(
                    Diagnostic::new(
                        &META,
                        format!(
                            "no trainable tensor gets a gradient: {} does not change with any of the {} trainable tensors over {} probe samples",
                            grads.target.describe(),
                            grads.params.len(),
                            grads.batch
                        ),
                    )
                    .with_node(n.name())
                    .primary(n.span().call, "constant in every weight")
                    .help("check what this output computes from its input: a softmax over one class, a rounding, a comparison, or units that never activate make it constant"),
                );
            }
            return;
        }
        // What the static half reports is not reported twice.
        let known: rustc_hash::FxHashSet<&str> = blocked(graph, &trainable)
            .values()
            .flat_map(|(_, ps)| ps.iter().map(|p| p.name))
            .collect();
        for p in &grads.params {
            if !p.none() || known.contains(p.name.as_str()) {
                continue;
            }
            let Some(n) = graph.find_node(&p.node) else {
                continue;
            };
            // The bias of a layer a normalization follows: `bias-before-batchnorm`.
            if matches!(p.kind, ParamKind::Bias) && feeds_normalization(graph, n.id()) {
                continue;
            }
            let how = if p.reached {
                "its gradient is exactly zero"
            } else {
                "the loss does not depend on it"
            };
            out.push(
                Diagnostic::new(
                    &META,
                    format!("`{}` gets no gradient: {how} over {} probe samples", p.name, grads.batch),
                )
                .with_node(n.name())
                .primary(n.span().call, format!("`{}` is read here", p.name))
                .note(format!(
                    "measured by one backward pass of {}",
                    grads.target.describe()
                ))
                .help("check what lies between this layer and the loss: a comparison, a rounding, an integer cast, a zero loss weight, or units that never activate"),
            );
        }
    }
}

fn help(block: Block) -> &'static str {
    match block {
        Block::Step => "use a straight-through estimator, `x + (torch.round(x) - x).detach()`, or a smooth relaxation",
        Block::Comparison | Block::Index | Block::IntegerCast => {
            "gate with a smooth function (`torch.sigmoid(k * z)`) or a straight-through estimator, so the gate's input trains"
        }
        Block::TimesZero => "drop the term from the loss, or give it a nonzero weight",
    }
}

/// Whether the output of node `id` feeds a normalization layer, through ops
/// that keep it affine.
fn feeds_normalization(graph: &Graph<'_>, id: NodeId) -> bool {
    let mut t = graph.node(id).output(0);
    for _ in 0..4 {
        let Some(name) = t else { return false };
        let consumers = graph.consumers(name);
        let [(c, _)] = consumers.as_slice() else {
            return false;
        };
        if NORMALIZATION_OPS.contains(&c.op_type()) {
            return true;
        }
        if !matches!(c.op_type(), "Identity" | "Dropout" | "Reshape" | "Add") {
            return false;
        }
        t = c.output(0);
    }
    false
}

/// The trainable tensors no path of which reaches the loss without passing
/// an op that blocks gradients, by the first blocking node met: one pass back
/// from the loss, one forward, whatever the number of parameters.
fn blocked<'t, 'm>(
    graph: &Graph<'m>,
    trainable: &'t [Trainable<'m>],
) -> BTreeMap<NodeId, (Block, Vec<&'t Trainable<'m>>)> {
    // What the backward pass differentiates: the scalar outputs that combine
    // the losses, else the losses, else every float output.
    let loss = graph.loss();
    let float = |o: &&str| {
        graph
            .elem_type(o)
            .is_none_or(crate::onnx::proto::data_type::is_float)
    };
    let outputs = graph.outputs().iter().copied().filter(float);
    let scalars: rustc_hash::FxHashSet<&str> = outputs
        .clone()
        .filter(|o| graph.shape(o).is_none_or(|s| s.is_empty()))
        .collect();
    let targets: rustc_hash::FxHashSet<&str> = if !loss.found() {
        outputs.collect()
    } else if scalars.is_empty() {
        loss.data_terms()
            .map(|t| graph.tensor_name(t.value))
            .collect()
    } else {
        scalars
    };
    let mut out: BTreeMap<NodeId, (Block, Vec<&'t Trainable<'m>>)> = BTreeMap::new();
    // An inference graph that outputs only indices (`ArgMax`) has nothing to
    // differentiate: not a graph whose parameters never train.
    if targets.is_empty() {
        return out;
    }
    let targets: Vec<TensorId> = targets.iter().filter_map(|t| graph.tensor_id(t)).collect();
    let mut flow = graph.gradient_flow(&targets);
    for p in trainable {
        if flow.open(p.tensor) {
            continue;
        }
        if let Some((node, block)) = graph.first_block(&mut flow, p.tensor) {
            out.entry(node).or_insert((block, Vec::new())).1.push(p);
        }
    }
    out
}
