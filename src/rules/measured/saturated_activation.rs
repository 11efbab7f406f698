//! Sigmoid or tanh units stuck in their flat tails (measured).

use crate::diag::{short_number as short, Diagnostic, Severity};
use crate::probe::Probe;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption, Tuning};

const THRESHOLD: RuleOption = RuleOption {
    name: "threshold",
    default: 5.0,
    summary: "a pre-activation with |x| above this is in the flat tail",
};

const SAMPLE_FRACTION: RuleOption = RuleOption {
    name: "sample-fraction",
    default: 0.5,
    summary: "a unit is saturated when more than this fraction of its values are",
};

const UNIT_FRACTION: RuleOption = RuleOption {
    name: "unit-fraction",
    default: 0.5,
    summary: "the fraction of saturated units that fires",
};

const MIN_SAMPLES: RuleOption = RuleOption {
    name: "min-samples",
    default: 16.0,
    summary: "the probe values per unit below which saturation says too little",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "saturated-activation",
    code: "NN402",
    severity: Severity::Warning,
    pass: Pass::Probe,
    category: Category::Connections,
    premises: &[requires(
        Premise::RepresentativeInputs,
        Half::Measured,
        Unmet::Skip,
    )],
    absorbs: &["cannot-overfit"],
    summary: "most units of a sigmoid or tanh sit in its flat tails at the probe",
    options: &[THRESHOLD, SAMPLE_FRACTION, UNIT_FRACTION, MIN_SAMPLES],
    explanation: include_str!("../../../rules/saturated-activation.md"),
};

pub(crate) struct SaturatedActivation;

impl Rule for SaturatedActivation {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    /// Each sigmoid's or tanh's fraction of saturated units (a gate's are
    /// meant to saturate), and the fraction that fires.
    fn measurements(
        &self,
        cx: &Check<'_, '_>,
        probe: &Probe,
        out: &mut crate::diag::report::Measurements,
    ) {
        let per_sample = cx.option(&SAMPLE_FRACTION);
        out.bands.saturated_fraction = cx.option(&UNIT_FRACTION);
        let graph = cx.graph;
        for layer in &mut out.layers {
            let Some((n, 0)) = graph.producer(&layer.tensor) else {
                continue;
            };
            if !(n.is("Sigmoid") || n.is("Tanh")) || graph.is_gate(&n) {
                continue;
            }
            let units = n.input(0).and_then(|t| probe.summary(t)?.units.as_ref());
            layer.saturated_fraction = units
                .map(|u| u.saturated(per_sample))
                .and_then(|(part, all)| (all > 0).then(|| part as f64 / all as f64));
        }
    }

    fn tune(&self, cx: &Tuning<'_>, plan: &mut crate::probe::Plan) {
        plan.saturation = Some(cx.option(&THRESHOLD) as f32);
    }

    fn measures(&self) -> bool {
        true
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let threshold = cx.option(&THRESHOLD);
        let per_sample = cx.option(&SAMPLE_FRACTION);
        let per_unit = cx.option(&UNIT_FRACTION);
        let min_samples = cx.option(&MIN_SAMPLES);
        for n in graph.nodes().filter(|n| n.is("Sigmoid") || n.is("Tanh")) {
            // A gate (SiLU, GLU, an LSTM's) closes by saturating.
            if graph.is_gate(&n) {
                continue;
            }
            // A sigmoid inside a binary loss is the loss's business (`initial-loss`).
            let in_loss = n.output(0).is_some_and(|o| {
                let uses = graph.consumers(o);
                !uses.is_empty() && uses.iter().all(|(c, _)| c.is("Log"))
            });
            if in_loss || probe.after_constant_weights(graph, &n) {
                continue;
            }
            // On a trained model, an output head's sigmoids (a detector's
            // class scores over thousands of anchors, a multi-label head)
            // sit near 0 for nearly every input by design: what it learned.
            let trained = cx.facts.state.state == crate::graph::ModelState::Trained;
            if trained && !graph.before_weight_layer(n.id()) {
                continue;
            }
            let Some(input) = n.input(0) else { continue };
            let Some(units) = probe.summary(input).and_then(|s| s.units.as_ref()) else {
                continue;
            };
            if (units.samples as f64) < min_samples || units.saturated.is_empty() {
                continue;
            }
            let (saturated, total) = units.saturated(per_sample);
            let fraction = saturated as f64 / total as f64;
            if saturated == 0 || fraction < per_unit {
                continue;
            }
            let kind = if n.is("Sigmoid") { "sigmoid" } else { "tanh" };
            let (lo, hi) = probe
                .summary(input)
                .map_or((f64::NAN, f64::NAN), |s| (s.min, s.max));
            out.push(
                Diagnostic::new(
                    &META,
                    format!(
                        "{saturated} of {total} units ({:.0}%) of this {kind} are saturated over {} probe samples",
                        fraction * 100.0,
                        probe.batch()
                    ),
                )
                .with_node(n.name())
                .primary(n.span().call, format!("pre-activations range over [{}, {}]", short(lo), short(hi)))
                .note(format!(
                    "a unit counts as saturated when more than {:.0}% of its pre-activations have |x| > {threshold}, where the gradient is nearly 0",
                    per_sample * 100.0
                ))
                .help("scale down the weights feeding this activation (Glorot/Xavier initialization), or normalize before it"),
            );
        }
    }
}
