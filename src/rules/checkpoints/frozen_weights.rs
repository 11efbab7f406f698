//! Weights that did not change between two checkpoints while others did.

use crate::diag::report::LayerDiff;
use crate::diag::{Diagnostic, Severity};
use crate::rules::{Category, Checkpoints, DiffFindings, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "frozen-weights",
    code: "NN501",
    severity: Severity::Warning,
    pass: Pass::Diff,
    category: Category::Parameters,
    premises: &[],
    absorbs: &[],
    summary: "a trainable-looking weight did not change between two checkpoints while others did",
    options: &[],
    explanation: include_str!("../../../rules/frozen-weights.md"),
};

pub(crate) struct FrozenWeights;

impl Rule for FrozenWeights {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn diff(&self, cx: &Checkpoints<'_>, out: &mut DiffFindings) {
        out.found
            .extend(check(cx.layers).into_iter().map(|(i, d)| (Some(i), d)));
    }
}

/// Findings on the weights that stayed exactly equal while at least one other
/// changed: one per run of consecutive frozen weights (in graph order), and
/// a single note for a frozen backbone, every frozen weight before every
/// trained one, which is how fine-tuning a head looks. With no weight
/// changed at all, one warning says the checkpoints are the same.
fn check(layers: &[LayerDiff]) -> Vec<(usize, Diagnostic)> {
    let trainable: Vec<(usize, &LayerDiff)> = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trainable && l.elements > 0)
        .collect();
    let changed = trainable.iter().filter(|(_, l)| !l.frozen()).count();
    if trainable.is_empty() {
        return Vec::new();
    }
    if changed == 0 {
        let (i, _) = trainable[0];
        let d = Diagnostic::new(&META, "no weight changed between the two checkpoints")
            .note(format!("all {} trainable weights are identical in both", trainable.len()))
            .help("if they are meant to be training steps apart, no update was applied: check that `optimizer.step()` runs and the learning rate is not 0, and that the second file is not a copy of the first");
        return vec![(i, d)];
    }
    // Runs of consecutive frozen weights.
    let mut runs: Vec<Vec<(usize, &LayerDiff)>> = Vec::new();
    let mut previous_frozen = false;
    for &(i, l) in &trainable {
        if l.frozen() {
            if !previous_frozen {
                runs.push(Vec::new());
            }
            if let Some(run) = runs.last_mut() {
                run.push((i, l));
            }
        }
        previous_frozen = l.frozen();
    }
    let backbone = runs.len() == 1 && trainable[0].1.frozen();
    runs.into_iter()
        .map(|run| {
            let (i, first) = run[0];
            let last = run[run.len() - 1].1;
            let what = if run.len() == 1 {
                format!("weight `{}` did not change", first.name)
            } else {
                format!(
                    "{} weights from `{}` to `{}` did not change",
                    run.len(),
                    first.name,
                    last.name
                )
            };
            let values: usize = run.iter().map(|(_, l)| l.elements).sum();
            let mut d = Diagnostic::new(&META, what).note(format!(
                "all {values} of their values are identical in both checkpoints, while {changed} other weight{} changed",
                if changed == 1 { "" } else { "s" }
            ));
            d = if backbone {
                d.with_severity(Severity::Note)
                    .note("every frozen weight comes before every trained one: a frozen backbone, as in fine-tuning a head")
                    .help("if you meant to train the whole model, pass the backbone's parameters to the optimizer")
            } else {
                d.help("check that the layer's parameters are passed to the optimizer and not frozen (requires_grad) or detached")
            };
            (i, d)
        })
        .collect()
}
