//! The report's measurements of one model: the probe's per-layer summaries,
//! and what every rule adds to them ([`Rule::measurements`](rules::Rule::measurements)):
//! its thresholds, and the values it judges by its own formula.

use rustc_hash::FxHashMap;

use crate::diag::report::{FitAttempt, FitCurve, LayerMeasure, Measurements};
use crate::graph::Graph;
use crate::options::Settings;
use crate::probe::Probe;
use crate::rules;

/// Ops besides weight layers whose output the depth profile shows:
/// activations and normalizations.
const LAYER_OPS: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Gelu",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "Softmax",
    "LogSoftmax",
    "BatchNormalization",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
];

/// What the probe measured on `graph`, layer by layer.
pub(super) fn of(
    probe: &Probe,
    graph: &Graph<'_>,
    settings: &Settings,
    facts: &rules::Facts,
) -> Measurements {
    let gradients: FxHashMap<&str, f64> = match &probe.gradients {
        Some(Ok(g)) => g.params.iter().map(|p| (p.name.as_str(), p.norm)).collect(),
        _ => FxHashMap::default(),
    };
    let mut layers = Vec::new();
    for tensor in &probe.run.order {
        let Some((n, 0)) = graph.producer(tensor) else {
            continue;
        };
        let layer = graph.weight_layer(n.id());
        if layer.is_none() && !LAYER_OPS.contains(&n.op_type()) {
            continue;
        }
        let Some(s) = probe.summary(tensor) else {
            continue;
        };
        let units = |t: Option<&str>| t.and_then(|t| probe.summary(t)?.units.as_ref());
        let fraction = |(part, all): (usize, usize)| (all > 0).then(|| part as f64 / all as f64);
        let dead_fraction = n
            .is("Relu")
            .then(|| units(Some(tensor.as_str())).and_then(|u| fraction(u.dead())))
            .flatten();
        let weight = layer.map(|l| l.weight_name.to_string());
        let gradient_norm = layer.and_then(|l| gradients.get(l.weight_name).copied());
        layers.push(LayerMeasure {
            node: n.name().to_string(),
            op: n.op_type().to_string(),
            tensor: tensor.clone(),
            mean: s.mean(),
            std: s.std(),
            non_finite: s.non_finite,
            dead_fraction,
            saturated_fraction: None,
            weight,
            gradient_norm,
        });
    }
    let fit = match &probe.fit {
        Some(Ok(f)) => Some(FitCurve {
            losses: f.losses.clone(),
            goal: f.goal,
            lr: f.lr,
            samples: f.samples,
            unstable: f.unstable.as_ref().map(|a| FitAttempt {
                lr: a.lr,
                losses: a.losses.clone(),
            }),
        }),
        _ => None,
    };
    let mut measured = Measurements {
        batch: probe.batch(),
        gradient_samples: probe
            .gradients
            .as_ref()
            .and_then(|g| g.as_ref().ok())
            .map(|g| g.batch),
        layers,
        losses: Vec::new(),
        fit,
        bands: Default::default(),
    };
    for rule in rules::all() {
        let cx = settings.check(graph, rule.meta(), facts);
        rule.measurements(&cx, probe, &mut measured);
    }
    measured
}
