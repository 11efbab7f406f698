//! Gradients that vanish or explode along the depth (measured by the backward pass).

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::graph::ParamKind;
use crate::probe::{Backward, Probe, ProbeOptions};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const VANISH: RuleOption = RuleOption {
    name: "vanish",
    default: 1e-5,
    summary: "a layer's ||g||/||w|| below this times the last layer's fires",
};

const EXPLODE: RuleOption = RuleOption {
    name: "explode",
    default: 3e3,
    summary: "a layer's ||g||/||w|| above this times the last layer's fires",
};

const MIN_LAYERS: RuleOption = RuleOption {
    name: "min-layers",
    default: 4.0,
    summary: "weight layers the network needs before depth is judged",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "gradient-scale",
    code: "NN205",
    severity: Severity::Warning,
    pass: Pass::Probe,
    category: Category::Connections,
    premises: &[requires(Premise::Untrained, Half::Measured, Unmet::Skip)],
    absorbs: &["cannot-overfit"],
    summary: "gradients vanish or explode along the depth of the network at initialization",
    options: &[VANISH, EXPLODE, MIN_LAYERS],
    explanation: include_str!("../../../rules/gradient-scale.md"),
};

pub(crate) struct GradientScale;

impl Rule for GradientScale {
    fn meta(&self) -> &'static RuleMeta {
        &META
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
        let graph = cx.graph;
        let (vanish, explode) = (cx.option(&VANISH), cx.option(&EXPLODE));
        // Weight layers the loss reaches, in graph order. Embeddings are
        // left out: only the rows of the batch's tokens get a gradient.
        // Layers whose gradient passes a residual merge on its way from the
        // loss are left out too: depth does not compound through a merge,
        // and a small gradient there is the scale a branch was given (layer
        // scale, a class token that attends through scaled branches).
        let layers: Vec<_> = grads
            .params
            .iter()
            .filter(|p| p.kind == ParamKind::Weight && p.reached && p.weight_norm > 0.0)
            .filter(|p| p.relative().is_finite())
            .filter(|p| {
                graph
                    .find_node(&p.node)
                    .is_none_or(|n| !graph.before_residual_merge(n.id()))
            })
            .collect();
        if (layers.len() as f64) < cx.option(&MIN_LAYERS) {
            return;
        }
        let Some(last) = layers.last().filter(|l| l.norm > 0.0) else {
            return;
        };
        let reference = last.relative();
        for (depth, p) in layers.iter().enumerate() {
            // An exactly zero gradient is `zero-gradient`'s, not depth's.
            if p.norm == 0.0 {
                continue;
            }
            let ratio = p.relative() / reference;
            if (vanish..=explode).contains(&ratio) {
                continue;
            }
            let Some(n) = graph.find_node(&p.node) else {
                continue;
            };
            if probe.after_constant_weights(graph, &n) {
                return; // symmetric units: `constant-weights`
            }
            let way = if ratio < vanish { "vanish" } else { "explode" };
            let steps = layers.len() - 1 - depth;
            let per_layer = ratio.powf(1.0 / steps.max(1) as f64);
            let mut d = Diagnostic::new(
                &META,
                format!(
                    "gradients {way} toward the input: ||g||/||w|| of `{}` is {}x the last layer's",
                    p.name,
                    short(ratio)
                ),
            )
            .with_node(n.name())
            .primary(
                n.span().call,
                format!("||g||/||w|| = {} here", short(p.relative())),
            );
            if let Some(l) = graph.find_node(&last.node) {
                d = d.secondary(
                    l.span().call,
                    format!("||g||/||w|| = {} at the last layer", short(reference)),
                );
            }
            d = d
                .note(format!(
                    "over {steps} weight layers that is about {}x per layer; the range is {vanish}x to {explode}x",
                    short(per_layer)
                ))
                .note(format!(
                    "measured by one backward pass of {} on {} synthesized samples",
                    grads.target.describe(),
                    grads.batch
                ));
            out.push(d.help(if ratio < vanish {
                "add residual connections or normalization, or use an initialization matched to the activation (He for ReLU, Glorot for tanh and sigmoid)"
            } else {
                "add residual connections: normalization alone does not keep gradients in scale through a deep plain stack"
            }));
            return; // the first layer out of range; the rest follow from it
        }
    }
}
