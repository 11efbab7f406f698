//! The loss at initialization, measured, against -ln(1/C).

use super::{Category, Check, Pass, Rule, RuleMeta, RuleOption};
use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NodeRef, Origin, NORMALIZATION_OPS};
use crate::probe::{heads, loss_nodes, LossKind, Probe};

pub static META: RuleMeta = RuleMeta {
    name: "initial-loss",
    code: "NN401",
    severity: Severity::Warning,
    pass: Pass::Probe,
    category: Category::Loss,
    summary: "the loss of an untrained model is far from -ln(1/C) at the probe",
    options: &[
        RuleOption {
            name: "ratio",
            default: 1.5,
            summary: "fires when measured / expected is above this or below its inverse",
        },
        RuleOption {
            name: "untrained",
            default: -1.0,
            summary: "-1 decides from the weights whether the model is untrained; 1 always checks; 0 never does",
        },
    ],
    explanation: include_str!("../../rules/initial-loss.md"),
};

pub struct InitialLoss;

impl Rule for InitialLoss {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn measures(&self) -> bool {
        true
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let forced = cx.option("untrained");
        let why = if forced >= 1.0 {
            "`untrained = 1` is configured".to_string()
        } else if forced == 0.0 {
            return;
        } else {
            match untrained(graph) {
                Some(reason) => reason,
                None => return,
            }
        };
        let max_ratio = cx.option("ratio").max(1.0);
        for m in measurements(graph, probe) {
            let ratio = m.value / m.expected;
            if !ratio.is_finite() || (1.0 / max_ratio..=max_ratio).contains(&ratio) {
                continue;
            }
            let n = graph.node(m.node);
            let expected = if m.classes == 2 && m.binary {
                "ln 2".to_string()
            } else {
                format!("-ln(1/{})", m.classes)
            };
            let mut d = Diagnostic::new(
                &META,
                format!(
                    "initial loss {}, expected about {} = {expected}",
                    short(m.value),
                    short(m.expected)
                ),
            )
            .with_node(n.name())
            .primary(n.span().call, format!("measured {} over {} probe samples", m.what, probe.batch()))
            .note(format!("the model looks untrained: {why}"))
            .note("the probe's labels are uniform at random, so an untrained model that is not confident scores about -ln(1/C)");
            d = if ratio > 1.0 {
                d.help("the initial predictions are confident: initialize the last layer smaller (scale its weights by 0.01 or zero them), and check the loss gets raw logits")
            } else {
                d.help("a loss this far below -ln(1/C) on random labels does not measure what it should: check the reduction, the labels and the class axis")
            };
            out.push(d);
        }
    }
}

struct Measured {
    node: crate::graph::NodeId,
    value: f64,
    expected: f64,
    classes: usize,
    binary: bool,
    what: &'static str,
}

/// The data losses of the graph as the probe measured them; with no loss in
/// the graph, the cross-entropy of each classifier head on random labels.
fn measurements(graph: &Graph<'_>, probe: &Probe) -> Vec<Measured> {
    let mut out = Vec::new();
    let losses = loss_nodes(graph);
    for (n, kind) in &losses {
        let Some(loss) = n.output(0).and_then(|o| probe.summary(o)) else {
            continue;
        };
        if *kind == LossKind::Binary {
            out.push(Measured {
                node: n.id(),
                value: loss.mean(),
                expected: std::f64::consts::LN_2,
                classes: 2,
                binary: true,
                what: "binary cross-entropy",
            });
            continue;
        }
        // NLL on something other than log-probabilities is `nll-without-log`'s finding.
        if *kind == LossKind::NegativeLogLikelihood && !fed_log_probabilities(graph, n) {
            continue;
        }
        let Some(scores) = n.input(0).and_then(|s| probe.summary(s)) else {
            continue;
        };
        let Some(&classes) = scores.shape.get(1) else {
            continue;
        };
        if classes < 2 {
            continue;
        }
        let mut value = loss.mean();
        let reduction = n.attr("reduction").and_then(|a| a.string());
        if reduction.as_deref() == Some("sum") {
            value /= (scores.elements() as f64 / classes as f64).max(1.0);
        }
        out.push(Measured {
            node: n.id(),
            value,
            expected: (classes as f64).ln(),
            classes,
            binary: false,
            what: "cross-entropy",
        });
    }
    if losses.is_empty() {
        for (tensor, _) in heads(graph) {
            let Some(s) = probe.summary(tensor) else {
                continue;
            };
            let (Some(ce), Some(&classes)) = (s.cross_entropy, s.shape.last()) else {
                continue;
            };
            let Some((n, _)) = graph.producer(tensor) else {
                continue;
            };
            out.push(Measured {
                node: n.id(),
                value: ce,
                expected: (classes as f64).ln(),
                classes,
                binary: false,
                what: "cross-entropy of this head on random labels",
            });
        }
    }
    out
}

fn fed_log_probabilities(graph: &Graph<'_>, n: &NodeRef<'_, '_>) -> bool {
    let Some(input) = n.input(0) else {
        return false;
    };
    matches!(graph.origin(input), Origin::Node(p) if graph.node(p).is("LogSoftmax"))
}

/// Why the model looks untrained, or `None` when it does not (or nothing tells).
///
/// Normalization layers are decisive where they exist: frameworks initialize
/// their scales to 1 and shifts to 0, and any training moves them. Without
/// them, torch's default initialization of Linear and Conv draws weights and
/// biases uniformly within ±1/√fan_in; a model is taken as untrained when at
/// least half of its weight-layer parameters still lie within that bound.
pub fn untrained(graph: &Graph<'_>) -> Option<String> {
    let stored = |t: Option<&str>, v: f64| {
        t.and_then(|t| graph.stats(t))
            .map(|s| s.count == 0 || (s.all_equal && s.first == Some(v)))
    };
    let (mut norms, mut fresh) = (0, 0);
    for n in graph.nodes() {
        if !n.domain_is_default() || !NORMALIZATION_OPS.contains(&n.op_type()) {
            continue;
        }
        let scale = stored(n.input(1), 1.0);
        let shift = stored(n.input(2).filter(|s| !s.is_empty()), 0.0);
        if scale.is_none() && shift.is_none() {
            continue;
        }
        norms += 1;
        fresh += (scale.unwrap_or(true) && shift.unwrap_or(true)) as usize;
    }
    if norms > 0 {
        return (fresh == norms).then(|| {
            format!("all {norms} normalization layers have scale 1 and shift 0, as initialized")
        });
    }
    let (mut params, mut within) = (0, 0);
    for l in graph.weight_layers() {
        let Some(fan_in) = l.fan_in.filter(|&f| f > 0) else {
            continue;
        };
        let bound = 1.0 / (fan_in as f64).sqrt() * (1.0 + 1e-3);
        for t in std::iter::once(Some(l.weight_name)).chain(std::iter::once(l.bias_name)) {
            if let Some(s) = t.and_then(|t| graph.stats(t)) {
                params += 1;
                within += (s.max_abs <= bound) as usize;
            }
        }
    }
    (params > 0 && 2 * within >= params).then(|| {
        format!("{within} of {params} weight and bias tensors lie within torch's default initialization bound 1/sqrt(fan_in)")
    })
}
