//! The loss at initialization, measured, against -ln(1/C).

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Form, Graph, NodeRef, Origin, Reduction};
use crate::probe::{heads, Probe};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta, RuleOption};

const RATIO: RuleOption = RuleOption {
    name: "ratio",
    default: 1.5,
    summary: "fires when measured / expected is above this or below its inverse",
};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "initial-loss",
    code: "NN401",
    severity: Severity::Warning,
    pass: Pass::Probe,
    category: Category::Loss,
    premises: &[requires(Premise::Untrained, Half::Measured, Unmet::Skip)],
    absorbs: &[],
    summary: "the loss of an untrained model is far from -ln(1/C) at the probe",
    options: &[RATIO],
    explanation: include_str!("../../../rules/initial-loss.md"),
};

pub(crate) struct InitialLoss;

impl Rule for InitialLoss {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn measurements(
        &self,
        cx: &Check<'_, '_>,
        probe: &Probe,
        out: &mut crate::diag::report::Measurements,
    ) {
        let ratio = cx.option(&RATIO).max(1.0);
        out.bands.loss_ratio = ratio;
        out.losses = measurements(cx.graph, probe)
            .into_iter()
            .map(|m| crate::diag::report::LossMeasure {
                node: cx.graph.node(m.node).name().to_string(),
                what: m.what,
                value: m.value,
                classes: m.classes,
                expected: m.expected,
                off: !within(m.value, m.expected, ratio),
            })
            .collect();
    }

    fn measures(&self) -> bool {
        true
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        let state = &cx.facts.state;
        let max_ratio = cx.option(&RATIO).max(1.0);
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
pub(crate) fn within(value: f64, expected: f64, ratio: f64) -> bool {
    (1.0 / ratio..=ratio).contains(&(value / expected))
}

/// One data loss as the probe measured it.
pub(crate) struct Measured {
    pub node: crate::graph::NodeId,
    pub value: f64,
    /// -ln(1/C), or ln 2 for a binary loss.
    pub expected: f64,
    pub classes: usize,
    pub binary: bool,
    pub what: &'static str,
}

/// The data losses of the graph as the probe measured them, as the graph's
/// loss names them ([`Graph::loss`]); with no loss in the graph, the
/// cross-entropy of each classifier head on random labels.
pub(crate) fn measurements(graph: &Graph<'_>, probe: &Probe) -> Vec<Measured> {
    let mut out = Vec::new();
    let loss = graph.loss();
    // A contrastive loss's value at initialization depends on its
    // temperature and the embeddings' width, not on a class count.
    let judged =
        |t: &&crate::graph::Term| t.form.is_classification() && t.form != Form::Contrastive;
    for term in loss.data_terms().filter(judged) {
        let n = graph.node(term.node);
        let Some(value) = probe.summary(graph.tensor_name(term.value)) else {
            continue;
        };
        let Some(scores) = term
            .scores
            .and_then(|s| probe.summary(graph.tensor_name(s)))
        else {
            continue;
        };
        let binary = term.form == Form::BinaryCrossEntropy;
        // A binary loss on a softmax is `binary-loss-on-softmax`'s finding,
        // on what is not probabilities `bce-without-sigmoid`'s.
        if binary {
            let Some(s) = term.scores else { continue };
            let softmax = graph
                .producer_of(s)
                .is_some_and(|(p, _)| graph.softmax(&p).is_some());
            if softmax || !(term.logits || graph.is_probability(s)) {
                continue;
            }
        }
        // NLL on something other than log-probabilities is `nll-without-log`'s finding.
        if term.form == Form::NegativeLogLikelihood && !fed_log_probabilities(graph, &n) {
            continue;
        }
        let classes = match term.form {
            _ if binary => 2,
            Form::CrossEntropy | Form::NegativeLogLikelihood => match scores.shape.get(1) {
                Some(&c) => c,
                None => continue,
            },
            _ => match scores.shape.last() {
                Some(&c) => c,
                None => continue,
            },
        };
        if classes < 2 {
            continue;
        }
        let mut v = term.signed(value.mean());
        if term.reduction == Reduction::Sum {
            // A sum over the batch: per sample (per element for a binary loss).
            let per = if binary { 1.0 } else { classes as f64 };
            v /= (scores.elements() as f64 / per).max(1.0);
        }
        out.push(Measured {
            node: n.id(),
            value: v,
            expected: if binary {
                std::f64::consts::LN_2
            } else {
                (classes as f64).ln()
            },
            classes,
            binary,
            what: term.form.describe(),
        });
    }
    if !loss.found() {
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
