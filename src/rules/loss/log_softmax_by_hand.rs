//! `log(softmax(z))` written out where `log_softmax(z)` is meant.

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::graph::{Form, Graph, LogArgument, NodeRef};
use crate::probe::Probe;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "log-softmax-by-hand",
    code: "NN113",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Both, Unmet::Blind)],
    absorbs: &["non-finite"],
    summary: "a loss takes the log of a softmax instead of computing log_softmax",
    options: &[],
    explanation: include_str!("../../../rules/log-softmax-by-hand.md"),
};

pub(crate) struct LogSoftmaxByHand;

/// The `Log` nodes of the loss that take a softmax.
fn logs_of_softmax<'g, 'm>(graph: &'g Graph<'m>) -> Vec<NodeRef<'g, 'm>> {
    let mut out: Vec<NodeRef<'g, 'm>> = Vec::new();
    // Cross-entropies only: a KL divergence's `log t` is of its target, which
    // torch masks where it is 0, and a binary loss on a softmax is
    // `binary-loss-on-softmax`'s finding.
    let cross_entropy = |t: &&crate::graph::Term| {
        matches!(
            t.form,
            Form::CrossEntropyWritten
                | Form::NegativeLogLikelihood
                | Form::Focal
                | Form::Contrastive
        )
    };
    for term in graph.loss().data_terms().filter(cross_entropy) {
        for &l in &term.logs {
            let log = graph.node(l);
            if graph.log_argument(&log) == LogArgument::Softmax && !out.iter().any(|o| o.id() == l)
            {
                out.push(log);
            }
        }
    }
    out
}

impl Rule for LogSoftmaxByHand {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for log in logs_of_softmax(graph) {
            let input = log.input(0).unwrap_or_default();
            let mut d = Diagnostic::new(&META, "the loss takes the log of a softmax")
                .with_node(log.name())
                .primary(log.span().call, "log of probabilities ...");
            if let Some((p, _)) = graph.producer(input) {
                d = d.secondary(p.span().call, "... that a softmax computed");
            }
            out.push(
                d.note("a probability below about 1e-45 rounds to 0 in float32, and its log is -inf: the loss and its gradient become inf and NaN once the model is confident")
                    .help("use `F.log_softmax(z, dim)` (or pass the logits to `F.cross_entropy`): it computes `z - logsumexp(z)` and never underflows"),
            );
        }
    }

    fn measures(&self) -> bool {
        true
    }

    fn probe(&self, cx: &Check<'_, '_>, probe: &Probe, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for log in logs_of_softmax(graph) {
            let Some(s) = log.output(0).and_then(|o| probe.summary(o)) else {
                continue;
            };
            let (message, severity) = if s.non_finite > 0 {
                (
                    format!(
                        "{} of {} log-probabilities are -inf or NaN at the probe",
                        s.non_finite,
                        s.elements()
                    ),
                    Severity::Error,
                )
            } else if s.count > 0 {
                (
                    format!(
                        "the smallest log-probability at the probe is {}",
                        short(s.min)
                    ),
                    Severity::Warning,
                )
            } else {
                continue;
            };
            out.push(
                Diagnostic::new(&META, message)
                    .with_node(log.name())
                    .primary(log.span().call, "measured here")
                    .with_severity(severity),
            );
        }
    }
}
