//! NegativeLogLikelihoodLoss on something other than log-probabilities.

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Graph, Origin};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "nll-without-log",
    code: "NN103",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["cannot-overfit"],
    summary: "negative log-likelihood loss receives probabilities or raw logits instead of log-probabilities",
    options: &[],
    explanation: include_str!("../../../rules/nll-without-log.md"),
};

pub(crate) struct NllWithoutLog;

impl Rule for NllWithoutLog {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        // The loss op, or torch's decomposition of `F.nll_loss` (a gather at
        // the labels, negated, averaged over the labels not ignored).
        let nlls = graph
            .loss()
            .data_terms()
            .filter(|t| t.form == crate::graph::Form::NegativeLogLikelihood)
            .filter_map(|t| t.meet.map(|m| graph.node(m)))
            .collect::<Vec<_>>();
        for nll in nlls {
            let Some(scores) = nll.input(0) else { continue };
            let Origin::Node(src) = graph.origin(scores) else {
                continue; // a graph input: what it holds is the caller's business
            };
            let src = graph.node(src);
            let what = if src.is("Softmax") || src.is("Sigmoid") {
                "probabilities"
            } else if graph.weight_layer(src.id()).is_some() || is_bias_add(graph, &src) {
                "raw logits"
            } else {
                continue; // LogSoftmax, Log, or something we cannot classify
            };
            out.push(
                Diagnostic::new(&META, format!("negative log-likelihood loss receives {what}, not log-probabilities"))
                    .with_node(nll.name())
                    .primary(nll.span().call, "expects log-probabilities")
                    .secondary(src.op_span(), format!("{what} come from here"))
                    .note("the loss takes -x[target]; on probabilities or logits that is not a likelihood, and it is unbounded below on logits")
                    .help("apply `log_softmax` before `nll_loss`, or use `cross_entropy` on the logits"),
            );
        }
    }
}

/// `Add(MatMul(x, W), b)`: a decomposed Linear.
fn is_bias_add(graph: &Graph<'_>, n: &crate::graph::NodeRef<'_, '_>) -> bool {
    n.is("Add")
        && (0..2).any(|i| {
            n.input(i)
                .and_then(|t| graph.producer(t))
                .is_some_and(|(p, _)| graph.weight_layer(p.id()).is_some())
        })
}
