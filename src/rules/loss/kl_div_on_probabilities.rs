//! `F.kl_div` given probabilities or raw scores where it expects log-probabilities.

use crate::diag::{Diagnostic, Severity};
use crate::graph::Form;
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "kl-div-on-probabilities",
    code: "NN114",
    severity: Severity::Error,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["cannot-overfit", "multi-loss-scale"],
    summary: "a KL divergence takes probabilities or raw scores where it expects log-probabilities",
    options: &[],
    explanation: include_str!("../../../rules/kl-div-on-probabilities.md"),
};

pub(crate) struct KlDivOnProbabilities;

impl Rule for KlDivOnProbabilities {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        for term in graph
            .loss()
            .data_terms()
            .filter(|t| t.form == Form::KlDivergence)
        {
            let Some(x) = term.scores else { continue };
            // Keras writes `t * log(t / p)`, which takes probabilities.
            if graph
                .consumers_of(x)
                .iter()
                .any(|(c, slot)| c.is("Div") && *slot == 1)
            {
                continue;
            }
            let Some((p, _)) = graph.producer_of(x) else {
                continue;
            };
            let what = if graph.is_probability(x) {
                "probabilities"
            } else if graph.weight_layer(p.id()).is_some() {
                "raw scores"
            } else {
                continue;
            };
            let name = graph.tensor_name(x);
            let mut d = Diagnostic::new(
                &META,
                format!("KL divergence takes {what} where it expects log-probabilities"),
            )
            .with_node(p.name())
            .spanning(graph.node(term.node).name())
            .primary(p.span().call, format!("`{name}` holds {what} ..."));
            if let Some(m) = term.meet {
                d = d.secondary(
                    graph.node(m).op_span(),
                    "... read here as log q in t * (log t - log q)",
                );
            }
            out.push(
                d.note("`F.kl_div(input, target)` computes `target * (log(target) - input)`: `input` must be log-probabilities; on probabilities in (0, 1) the loss is not a divergence, can go negative, and its minimum is not at q = t")
                    .help("pass `F.log_softmax(z, dim)` as the input (and `log_target=True` if the target is log-probabilities too)"),
            );
        }
    }
}
