//! The loss at initialization, measured, against -ln(1/C).

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, NodeRef, Origin};
use crate::probe::{heads, loss_nodes, LossKind, Probe};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

pub static META: RuleMeta = RuleMeta {
    name: "initial-loss",
    code: "NN401",
    severity: Severity::Warning,
    pass: Pass::Probe,
    category: Category::Loss,
    premises: &[requires(Premise::Untrained, Half::Measured, Unmet::Skip)],
    absorbs: &[],
    summary: "the loss of an untrained model is far from -ln(1/C) at the probe",
    options: &[RuleOption {
        name: "ratio",
        default: 1.5,
        summary: "fires when measured / expected is above this or below its inverse",
    }],
    explanation: include_str!("../../../rules/initial-loss.md"),
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
        let state = &cx.facts.state;
        let max_ratio = cx.option("ratio").max(1.0);
        for m in measurements(graph, probe) {
            let ratio = m.value / m.expected;
            if !ratio.is_finite() || within(m.value, m.expected, max_ratio) {
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
            .note(format!("the model looks {}: {}", state.state, state.evidence))
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

/// Whether a loss is within `ratio` of the value an untrained model scores,
/// either way.
pub fn within(value: f64, expected: f64, ratio: f64) -> bool {
    (1.0 / ratio..=ratio).contains(&(value / expected))
}

/// One data loss as the probe measured it.
pub struct Measured {
    pub node: crate::graph::NodeId,
    pub value: f64,
    /// -ln(1/C), or ln 2 for a binary loss.
    pub expected: f64,
    pub classes: usize,
    pub binary: bool,
    pub what: &'static str,
}

/// The data losses of the graph as the probe measured them; with no loss in
/// the graph, the cross-entropy of each classifier head on random labels.
pub fn measurements(graph: &Graph<'_>, probe: &Probe) -> Vec<Measured> {
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
