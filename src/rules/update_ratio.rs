//! Per-step weight updates far outside the healthy band.

use super::{Category, Pass, Rule, RuleMeta, RuleOption};
use crate::diag::{Diagnostic, Severity};
use crate::diff::LayerDiff;

pub static META: RuleMeta = RuleMeta {
    name: "update-ratio",
    code: "NN502",
    severity: Severity::Warning,
    pass: Pass::Diff,
    category: Category::Parameters,
    premises: &[],
    absorbs: &[],
    summary: "a layer's relative update per step is far below or above about 1e-3",
    options: &[
        RuleOption {
            name: "low",
            default: 1e-4,
            summary: "relative updates per step below this fire",
        },
        RuleOption {
            name: "high",
            default: 3e-2,
            summary: "relative updates per step above this fire",
        },
    ],
    explanation: include_str!("../../rules/update-ratio.md"),
};

pub struct UpdateRatio;

impl Rule for UpdateRatio {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }
}

/// Findings on changed weight matrices and kernels whose `||B - A|| / ||A|| /
/// steps` leaves `[low, high]`. Biases and normalization parameters (1-D) are
/// left out: they start at zero or one, so their own norm makes the ratio
/// meaningless; the table still shows them.
pub fn check(layers: &[LayerDiff], steps: f64, low: f64, high: f64) -> Vec<(usize, Diagnostic)> {
    let fmt = |v: f64| format!("{v:.1e}");
    layers
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            l.trainable && l.shape.len() >= 2 && l.unchanged < l.elements && l.norm_a > 0.0
        })
        .filter_map(|(i, l)| {
            let per_step = l.relative_update / steps;
            let (side, why) = if per_step < low {
                ("below", "the learning rate is too low, or the gradients reaching this layer vanish")
            } else if per_step > high {
                ("above", "steps this large are close to diverging; lower the learning rate or clip gradients")
            } else {
                return None;
            };
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
