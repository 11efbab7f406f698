//! The model cannot fit one small batch (measured by Adam steps on it).

use crate::diag::short_number as short;
use crate::diag::{sparkline, Diagnostic, Series, Severity};
use crate::graph::Graph;
use crate::probe::{Backward, FitPlan, Probe, ProbeOptions, Target};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption, Tuning};

const STEPS: RuleOption = RuleOption {
    name: "steps",
    default: 200.0,
    summary: "Adam steps of the fit (`--overfit-steps` overrides, and ignores the budget)",
};

const LR: RuleOption = RuleOption {
    name: "lr",
    default: 1e-2,
    summary: "Adam's learning rate",
};

const FRACTION: RuleOption = RuleOption {
    name: "fraction",
    default: 0.1,
    summary: "fitted when the loss falls below this fraction of its start ...",
};

const FLOOR: RuleOption = RuleOption {
    name: "floor",
    default: 0.01,
    summary: "... or below this times ln C, for C classes",
};

const BUDGET: RuleOption = RuleOption {
    name: "budget",
    default: 10.0,
    summary: "seconds the fit may take, estimated from the graph's multiply-accumulates",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "cannot-overfit",
    code: "NN404",
    severity: Severity::Warning,
    pass: Pass::Probe,
    category: Category::Loss,
    premises: &[requires(Premise::Untrained, Half::Measured, Unmet::Skip)],
    absorbs: &[],
    summary: "an untrained model cannot fit one small batch of synthesized samples",
    options: &[STEPS, LR, FRACTION, FLOOR, BUDGET],
    explanation: include_str!("../../../rules/cannot-overfit.md"),
};

pub(crate) struct CannotOverfit;

impl Rule for CannotOverfit {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn tune(&self, cx: &Tuning<'_>, plan: &mut crate::probe::Plan) {
        plan.fit = Some(FitPlan {
            steps: cx.option(&STEPS).max(0.0) as usize,
            lr: cx.option(&LR),
            fraction: cx.option(&FRACTION),
            floor: cx.option(&FLOOR),
            budget: cx.option(&BUDGET),
        });
    }

    fn measures(&self) -> bool {
        true
    }

    fn backward(&self, _: &ProbeOptions) -> &'static [Backward] {
        &[Backward::Params, Backward::Fit]
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let (Some(Ok(fit)), Some(Ok(grads))) = (&probe.fit, &probe.gradients) else {
            return;
        };
        // Only a fit that stalls (or diverges) above the goal at both rates
        // cannot fit: one still falling when the steps run out at the first
        // rate is slow, not stuck (`Fit::stuck`).
        // Nothing gets a gradient: `zero-gradient` reports that; a loss
        // that is not finite from the start, `non-finite`.
        if !fit.stuck() || !fit.start().is_finite() || grads.params.iter().all(|p| p.none()) {
            return;
        }
        let graph = cx.graph;
        // Soft targets (label smoothing) put a floor under the loss: a fit
        // that reaches it, at either rate, fits as well as the targets allow.
        if soft_target_floor(graph, probe)
            .is_some_and(|floor| fit.lowest_of_all() <= floor + fit.goal)
        {
            return;
        }
        let at = match &fit.target {
            Target::Head(head) => graph.producer(head).map(|(n, _)| n),
            _ => loss_node(graph),
        };
        // Units that start identical stay identical: `constant-weights`.
        if at.is_some_and(|n| probe.after_constant_weights(graph, &n)) {
            return;
        }
        let mut d = Diagnostic::new(
            &META,
            format!(
                "the model cannot fit one batch: loss {} -> {} after {} Adam steps on {} samples",
                short(fit.start()),
                short(fit.end()),
                fit.taken(),
                fit.samples
            ),
        );
        // Whatever lies upstream of the loss may explain it: a finding there
        // of a rule that absorbs this one gets the measurement as a note.
        if let Some(n) = &at {
            for name in upstream(graph, n) {
                d = d.spanning(&name);
            }
        }
        d = match at {
            Some(n) => d.with_node(n.name()).primary(
                n.span().call,
                format!(
                    "lowest {} here, from {}",
                    short(fit.lowest()),
                    short(fit.start())
                ),
            ),
            None => d.primary(graph.source().graph(graph.scope()), "fitted"),
        };
        d = d.note(format!(
            "loss {} over {} steps (log scale)",
            sparkline(&fit.losses, 40),
            fit.taken()
        ));
        if let Some(first) = &fit.unstable {
            let how = if first.spiked {
                format!(
                    "fell to {} and then rose and stalled",
                    short(first.lowest())
                )
            } else {
                format!("stalled at {}", short(first.lowest()))
            };
            d = d.note(format!(
                "at lr {} the loss {how}; the fit restarted from the initial weights at lr {}",
                short(first.lr),
                short(fit.lr)
            ));
        }
        if let Some(step) = fit.diverged() {
            d = d.note(format!("the loss is not finite from step {step} on"));
        } else if fit.stalled() {
            d = d.note(format!(
                "stopped early: the lowest loss fell by less than {}% over the last {} steps",
                crate::probe::backward::fit::MIN_GAIN * 100.0,
                crate::probe::backward::fit::PATIENCE
            ));
        } else {
            d = d.note(format!(
                "at lr {} the loss was still above the goal when the {} steps ran out",
                short(fit.lr),
                fit.steps
            ));
        }
        let mut goal = format!(
            "{}% of the starting loss",
            short(cx.option(&FRACTION) * 100.0)
        );
        if fit.floor > 0.0 {
            goal += &format!(", or {} ({} × ln C)", short(fit.floor), cx.option(&FLOOR));
        }
        out.push(
            d.note(format!(
                "a model that can learn gets below {} on one batch: {goal}",
                short(fit.goal),
            ))
            .note(format!(
                "fitted {} with Adam at lr {} on the probe's synthesized batch (Dropout at its expectation, BatchNorm on batch statistics)",
                fit.target.describe(),
                short(fit.lr)
            ))
            .help("look for what caps the loss: an activation on the logits (tanh, sigmoid, ReLU), samples averaged or mixed across the batch axis, gradients that vanish or are blocked before the first layers (`gradient-scale`, `zero-gradient`), or a model too small for even this batch")
            .with_series(Series {
                name: "loss",
                index: "step",
                values: fit.losses.clone(),
            }),
        );
    }
}

/// The names of the nodes `n` depends on, `n` included.
fn upstream(graph: &Graph<'_>, n: &crate::graph::NodeRef<'_, '_>) -> Vec<String> {
    let mut seen = rustc_hash::FxHashSet::default();
    let mut stack = vec![n.id()];
    let mut names = Vec::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let node = graph.node(id);
        names.push(node.name().to_string());
        for i in node.inputs() {
            if let Some((p, _)) = graph.producer(i) {
                stack.push(p.id());
            }
        }
    }
    names
}

/// The node that computes the loss the fit minimized: the producer of the
/// graph's first scalar output (which sums its terms), else its first loss node.
fn loss_node<'g, 'm>(graph: &'g Graph<'m>) -> Option<crate::graph::NodeRef<'g, 'm>> {
    let scalar = graph.outputs().iter().find(|o| {
        graph
            .shape(o)
            .is_some_and(|s| s.iter().all(|d| matches!(d, crate::graph::Dim::Known(1))))
    });
    if let Some((n, _)) = scalar.and_then(|o| graph.producer(o)) {
        return Some(n);
    }
    graph.loss().data_terms().next().map(|t| graph.node(t.node))
}

/// The lowest value a cross-entropy written out can reach when its targets
/// are computed in the graph from the labels (label smoothing: `(1 - e) y +
/// e / C`): the entropy of those targets, from the two values the probe
/// measured. `None` when the targets are the labels themselves.
fn soft_target_floor(graph: &crate::graph::Graph<'_>, probe: &Probe) -> Option<f64> {
    let mut floor: Option<f64> = None;
    for term in graph.loss().data_terms() {
        if term.form != crate::graph::Form::CrossEntropyWritten {
            continue;
        }
        let Some(meet) = term.meet.map(|m| graph.node(m)).filter(|m| m.is("Mul")) else {
            continue;
        };
        let soft = (0..2)
            .filter_map(|i| meet.input_id(i))
            .find(|&t| !graph.is_behind_weights(t) && Some(t) != term.target)?;
        let s = probe.summary(graph.tensor_name(soft))?;
        let classes = *s.shape.last()? as f64;
        let h = |p: f64| if p > 0.0 { -p * p.ln() } else { 0.0 };
        let entropy = h(s.max) + (classes - 1.0) * h(s.min);
        floor = Some(floor.map_or(entropy, |f: f64| f.max(entropy)));
    }
    floor
}
