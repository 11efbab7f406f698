//! ReLU units whose bias keeps them off for nearly every input (static half).

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, WeightLayer};
use crate::probe::Probe;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const BIAS_RATIO: RuleOption = RuleOption {
    name: "bias-ratio",
    default: -4.0,
    summary: "a unit is dead when b / ||w|| is below this",
};

const MIN_FRACTION: RuleOption = RuleOption {
    name: "min-fraction",
    default: 0.1,
    summary: "the fraction of dead units that fires",
};

const MIN_SAMPLES: RuleOption = RuleOption {
    name: "min-samples",
    default: 16.0,
    summary: "the probe values per unit below which a unit's silence says too little",
};

const MEASURED_FRACTION: RuleOption = RuleOption {
    name: "measured-fraction",
    default: 0.5,
    summary: "the fraction of units that never activate at the probe that fires",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "dead-relu",
    code: "NN202",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Connections,
    premises: &[
        requires(Premise::Untrained, Half::Static, Unmet::Skip),
        requires(Premise::RepresentativeInputs, Half::Measured, Unmet::Skip),
    ],
    absorbs: &["zero-gradient", "cannot-overfit"],
    summary: "relu units whose bias is so negative they never activate",
    options: &[BIAS_RATIO, MIN_FRACTION, MIN_SAMPLES, MEASURED_FRACTION],
    explanation: include_str!("../../../rules/dead-relu.md"),
};

pub(crate) struct DeadRelu;

impl Rule for DeadRelu {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn measurements(
        &self,
        cx: &Check<'_, '_>,
        _probe: &Probe,
        out: &mut crate::diag::report::Measurements,
    ) {
        out.bands.dead_fraction = cx.option(&MEASURED_FRACTION);
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        // Below -4, a unit is off for standardized inputs within 4 sigma of its weights.
        let bias_ratio = cx.option(&BIAS_RATIO);
        let min_fraction = cx.option(&MIN_FRACTION);
        for relu in graph.nodes_of("Relu") {
            let Some(input) = relu.input_id(0) else {
                continue;
            };
            let Some((producer, _)) = graph.producer_of(input) else {
                continue;
            };
            // The layer itself, or the bias Add after a MatMul.
            let layer = graph.weight_layer(producer.id()).or_else(|| {
                producer
                    .is("Add")
                    .then(|| {
                        (0..2).filter_map(|i| producer.input_id(i)).find_map(|t| {
                            graph
                                .producer_of(t)
                                .and_then(|(p, _)| graph.weight_layer(p.id()))
                        })
                    })
                    .flatten()
            });
            let Some(layer) = layer else { continue };
            if graph.normalizes(&graph.node(layer.node)) {
                continue; // a folded BatchNorm's bias is relative to its running mean
            }
            let Some((dead, units)) = dead_units(graph, layer, bias_ratio) else {
                continue;
            };
            let fraction = dead as f64 / units as f64;
            if dead == 0 || fraction < min_fraction {
                continue;
            }
            let l = graph.node(layer.node);
            out.push(
                Diagnostic::new(
                    &META,
                    format!("{dead} of {units} units ({:.0}%) behind this relu are dead at initialization", fraction * 100.0),
                )
                .with_node(relu.name())
                .primary(relu.span().call, "these units never activate ...")
                .secondary(l.op_span(), format!("... because bias / ||weight|| < {bias_ratio} here"))
                .note("a unit whose pre-activation is negative for every input gets no gradient and stays dead")
                .help("initialize biases at zero or slightly positive; check what wrote these biases"),
            );
        }
    }

    fn measures(&self) -> bool {
        true
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        self.measured(cx, probe, out);
    }
}

impl DeadRelu {
    /// The measured half: units that were never positive over the probe batch.
    fn measured(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let threshold = cx.option(&MEASURED_FRACTION);
        // A healthy unit is off for a given value half the time: over n values it
        // looks dead with probability 2^-n, so a small batch proves nothing.
        let min_samples = cx.option(&MIN_SAMPLES);
        for relu in cx.graph.nodes_of("Relu") {
            let Some(units) = relu
                .output(0)
                .and_then(|o| probe.summary(o))
                .and_then(|s| s.units.as_ref())
            else {
                continue;
            };
            if (units.samples as f64) < min_samples || probe.after_constant_weights(cx.graph, &relu)
            {
                continue;
            }
            let (dead, total) = units.dead();
            let fraction = dead as f64 / total.max(1) as f64;
            if total == 0 || dead == 0 || fraction < threshold {
                continue;
            }
            let batch = probe.batch();
            let mut d = Diagnostic::new(
                &META,
                format!(
                    "{dead} of {total} units ({:.0}%) never activate over {batch} probe samples",
                    fraction * 100.0
                ),
            )
            .with_node(relu.name())
            .primary(relu.span().call, "never positive at the probe");
            let per_sample = units.samples / batch.max(1) as u64;
            if per_sample > 1 {
                d = d.note(format!(
                    "each unit was seen at {per_sample} positions of every sample"
                ));
            }
            out.push(
                d.note("a unit that never activates gets no gradient and may never recover")
                    .help("check the biases and the scale of the layer before; He initialization, or normalization before the relu, keeps units alive"),
            );
        }
    }
}

/// Counts the units of `layer` whose bias is below `bias_ratio` times their weight norm.
fn dead_units(
    graph: &Graph<'_>,
    layer: &WeightLayer<'_>,
    bias_ratio: f64,
) -> Option<(usize, usize)> {
    let units = layer.units?;
    let weight = graph.stats_of(layer.weight_id)?;
    if weight.all_equal {
        return None; // every unit is the same: `constant-weights` says so, once
    }
    let sq = weight.unit_sq.as_ref()?;
    let bias = graph.stats_of(layer.bias_id?)?.values.as_ref()?;
    if bias.len() != units || sq.len() != units || units == 0 {
        return None;
    }
    let dead = sq
        .iter()
        .zip(bias)
        .filter(|(s, b)| **s > 0.0 && **b / s.sqrt() < bias_ratio)
        .count();
    Some((dead, units))
}
