//! A loss takes the log of values nothing bounds to (0, 1]: `log(clip(logits))`, `log(relu(x))`.

use crate::diag::{Diagnostic, Severity};
use crate::graph::{Form, LogArgument};
use crate::rules::premise::{requires, Half, Premise, Unmet};
use crate::rules::{Category, Check, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "log-of-unbounded",
    code: "NN112",
    severity: Severity::Warning,
    pass: Pass::Graph,
    category: Category::Loss,
    premises: &[requires(Premise::LossInGraph, Half::Static, Unmet::Blind)],
    absorbs: &["cannot-overfit", "initial-loss", "non-finite"],
    summary: "a loss takes the log of values that nothing bounds to (0, 1]",
    options: &[],
    explanation: include_str!("../../../rules/log-of-unbounded.md"),
};

pub(crate) struct LogOfUnbounded;

impl Rule for LogOfUnbounded {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, cx: &Check<'_, '_>, out: &mut Vec<Diagnostic>) {
        let graph = cx.graph;
        // torch's `F.binary_cross_entropy` on what is not probabilities is
        // `bce-without-sigmoid`'s finding.
        let mut seen: Vec<_> = graph
            .binary_cross_entropy_inputs()
            .iter()
            .flat_map(|b| std::iter::once(b.log.id()).chain(b.complement.map(|c| c.id())))
            .collect();
        // A KL divergence's `log t` is of its target: `kl-div-on-probabilities` reads it.
        for term in graph
            .loss()
            .data_terms()
            .filter(|t| t.form != Form::KlDivergence)
        {
            for &l in &term.logs {
                if seen.contains(&l) {
                    continue;
                }
                seen.push(l);
                let log = graph.node(l);
                let (what, why) = match graph.log_argument(&log) {
                    LogArgument::Clipped => (
                        "a clip of values that are not probabilities",
                        "every entry below the clip's bound sits on it and gets no gradient, and nothing keeps the rest below 1: the loss can go negative",
                    ),
                    LogArgument::Relu => (
                        "a ReLU's output",
                        "every negative entry becomes log(0) = -inf, and its gradient NaN",
                    ),
                    LogArgument::Unbounded => (
                        "values nothing bounds",
                        "a negative entry gives NaN, zero gives -inf, and nothing keeps them below 1",
                    ),
                    _ => continue,
                };
                let input = log.input(0).unwrap_or_default();
                let mut d = Diagnostic::new(&META, format!("the loss takes the log of {what}"))
                    .with_node(log.name())
                    .spanning(graph.node(term.node).name())
                    .primary(log.span().call, format!("log of `{input}`"));
                if let Some((p, _)) = graph.producer(input) {
                    d = d.secondary(
                        p.span().call,
                        format!("`{input}` comes from `{}`", p.op_type()),
                    );
                }
                out.push(
                    d.note(format!("a log-likelihood needs probabilities in (0, 1]: {why}"))
                        .help("take the log of probabilities: `F.log_softmax(z, 1)` or `F.logsigmoid(z)` on the logits, or pass the logits to `F.cross_entropy` / `F.binary_cross_entropy_with_logits`"),
                );
            }
        }
    }
}
