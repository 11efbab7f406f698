//! Per-step weight updates far outside the healthy band: measured between
//! two checkpoints (`nnlint diff`), or predicted for the first step from one
//! file's gradients (`--lr`).

use crate::diag::report::LayerDiff;
use crate::diag::{Diagnostic, Severity};
use crate::graph::ParamKind;
use crate::probe::{Backward, Optimizer, Probe, ProbeOptions};
use crate::rules::{Category, Check, Checkpoints, DiffFindings, Pass, Rule, RuleMeta, RuleOption};

const LOW: RuleOption = RuleOption {
    name: "low",
    default: 1e-4,
    summary: "relative updates per step below this fire",
};

const HIGH: RuleOption = RuleOption {
    name: "high",
    default: 3e-2,
    summary: "relative updates per step above this fire",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "update-ratio",
    code: "NN502",
    severity: Severity::Warning,
    pass: Pass::Diff,
    category: Category::Parameters,
    premises: &[],
    absorbs: &[],
    summary: "a layer's relative update per step is far below or above about 1e-3 (between checkpoints, or predicted with `--lr`)",
    options: &[LOW, HIGH],
    explanation: include_str!("../../../rules/update-ratio.md"),
};

pub(crate) struct UpdateRatio;

impl Rule for UpdateRatio {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn diff(&self, cx: &Checkpoints<'_>, out: &mut DiffFindings) {
        let (low, high) = (cx.option(&LOW), cx.option(&HIGH));
        out.band = Some((low, high));
        out.found.extend(
            check(cx.layers, cx.steps, low, high)
                .into_iter()
                .map(|(i, d)| (Some(i), d)),
        );
    }

    fn measures(&self) -> bool {
        true
    }

    /// Gradients only to predict a first step (`--lr`).
    fn backward(&self, options: &ProbeOptions) -> &'static [Backward] {
        if options.first_step.is_some() {
            &[Backward::Params]
        } else {
            &[]
        }
    }

    /// The first step's update of each weight layer, from the backward
    /// pass's gradient: `lr·‖g‖/‖w‖` for SGD; for Adam, whose first step
    /// is `lr·g/(|g| + ε)` after bias correction, `lr·‖g/(|g| + ε)‖/‖w‖`.
    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let (Some(step), Some(Ok(grads))) = (probe.first_step, &probe.gradients) else {
            return;
        };
        let (low, high) = (cx.option(&LOW), cx.option(&HIGH));
        let fmt = |v: f64| format!("{v:.1e}");
        for p in &grads.params {
            if p.kind != ParamKind::Weight || !p.reached || p.weight_norm <= 0.0 {
                continue;
            }
            let moved = match step.optimizer {
                Optimizer::Sgd => p.norm,
                Optimizer::Adam => p.adam_norm,
            };
            let ratio = step.lr * moved / p.weight_norm;
            let Some((side, why)) = side(ratio, low, high) else {
                continue;
            };
            let Some(n) = cx.graph.find_node(&p.node) else {
                continue;
            };
            let formula = match step.optimizer {
                Optimizer::Sgd => "lr·||g|| / ||w||",
                Optimizer::Adam => "lr·||g / (|g| + 1e-8)|| / ||w||",
            };
            out.push(
                Diagnostic::new(
                    &META,
                    format!(
                        "weight `{}` would move {} in the first {} step at lr {}, {side} the {}..{} band",
                        p.name,
                        fmt(ratio),
                        step.optimizer.name(),
                        step.lr,
                        fmt(low),
                        fmt(high)
                    ),
                )
                .with_node(n.name())
                .primary(n.span().call, format!("{formula} = {}", fmt(ratio)))
                .note(format!(
                    "predicted from one backward pass of {} on the probe's {} samples; a sound step changes weights by about 1e-3 of their norm",
                    grads.target.describe(),
                    grads.batch
                ))
                .help(why),
            );
        }
    }
}

/// Which side of `[low, high]` a relative update is on, and what that suggests.
fn side(per_step: f64, low: f64, high: f64) -> Option<(&'static str, &'static str)> {
    if per_step < low {
        Some((
            "below",
            "the learning rate is too low, or the gradients reaching this layer vanish",
        ))
    } else if per_step > high {
        Some((
            "above",
            "steps this large are close to diverging; lower the learning rate or clip gradients",
        ))
    } else {
        None
    }
}

/// Findings on changed weight matrices and kernels whose `||B - A|| / ||A|| /
/// steps` leaves `[low, high]`. Biases and normalization parameters (1-D) are
/// left out: they start at zero or one, so their own norm makes the ratio
/// meaningless; the table still shows them.
fn check(layers: &[LayerDiff], steps: f64, low: f64, high: f64) -> Vec<(usize, Diagnostic)> {
    let fmt = |v: f64| format!("{v:.1e}");
    layers
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            l.trainable && l.shape.len() >= 2 && !l.frozen() && l.norm_a > 0.0
        })
        .filter_map(|(i, l)| {
            let per_step = l.per_step(steps);
            let (side, why) = side(per_step, low, high)?;
            let mut d = Diagnostic::new(
                &META,
                format!("weight `{}` moves {} per step, {side} the {}..{} band", l.name, fmt(per_step), fmt(low), fmt(high)),
            )
            .note(format!(
                "||B - A|| / ||A|| = {} over {steps} step{}; a sound step changes weights by about 1e-3 of their norm",
                fmt(l.relative_update),
                if steps == 1.0 { "" } else { "s" }
            ));
            if steps == 1.0 {
                d = d.note("the checkpoints are taken as one optimizer step apart; `--steps N` says they are N apart");
            }
            Some((i, d.help(why)))
        })
        .collect()
}
