//! Weights that did not change between two checkpoints while others did.

use super::{Category, Pass, Rule, RuleMeta};
use crate::diag::{Diagnostic, Severity};
use crate::diff::LayerDiff;

pub static META: RuleMeta = RuleMeta {
    name: "frozen-weights",
    code: "NN501",
    severity: Severity::Warning,
    pass: Pass::Diff,
    category: Category::Parameters,
    premises: &[],
    summary: "a trainable-looking weight did not change between two checkpoints while others did",
    options: &[],
    explanation: include_str!("../../rules/frozen-weights.md"),
};

pub struct FrozenWeights;

impl Rule for FrozenWeights {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }
}

/// Findings on the layers that stayed exactly equal while at least one other changed.
pub fn check(layers: &[LayerDiff]) -> Vec<(usize, Diagnostic)> {
    let changed = layers
        .iter()
        .filter(|l| l.trainable && l.unchanged < l.elements)
        .count();
    if changed == 0 {
        return Vec::new();
    }
    layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trainable && l.elements > 0 && l.unchanged == l.elements)
        .map(|(i, l)| {
            let d = Diagnostic::new(&META, format!("weight `{}` did not change", l.name))
                .note(format!(
                    "all {} values are identical in both checkpoints, while {changed} other weight{} changed",
                    l.elements,
                    if changed == 1 { "" } else { "s" }
                ))
                .help("check that the layer's parameters are passed to the optimizer and not frozen (requires_grad) or detached");
            (i, d)
        })
        .collect()
}
