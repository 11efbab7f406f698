//! The probe's forward pass could not run.

use crate::diag::short_number as short;
use crate::diag::{Diagnostic, Severity};
use crate::graph::Graph;
use crate::probe::{Fit, Skip, Skipped};
use crate::rules::{Category, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "probe-skipped",
    code: "NN400",
    severity: Severity::Note,
    pass: Pass::Probe,
    category: Category::Probe,
    premises: &[],
    absorbs: &[],
    summary: "the probe's forward pass could not run, so nothing was measured",
    options: &[],
    explanation: include_str!("../../../rules/probe-skipped.md"),
};

pub(crate) struct ProbeSkipped;

impl Rule for ProbeSkipped {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn skipped(&self, graph: &Graph<'_>, skipped: &Skipped<'_>, out: &mut Vec<Diagnostic>) {
        out.push(match *skipped {
            Skipped::Probe(skip) => diagnostic(graph, skip),
            Skipped::Backward(skip) => backward_diagnostic(graph, skip),
            Skipped::Fit(skip) => fit_diagnostic(graph, skip),
            Skipped::FitCut { fit, asked, budget } => fit_cut_diagnostic(graph, fit, asked, budget),
        });
    }
}

/// The note for a probe that did not run: at the node that stopped it, or on
/// the main graph.
fn diagnostic(graph: &Graph<'_>, skip: &Skip) -> Diagnostic {
    let d = Diagnostic::new(&META, format!("the probe did not run: {}", skip.reason));
    at_node(graph, skip, d, "stopped the probe", "not probed")
        .note("static rules ran as usual; only the measured checks are missing")
        .help("`--dim NAME=VALUE` (or `--dim INPUT:AXIS=VALUE` for an unnamed one) sets dynamic dimensions, `--input NAME=FILE.npy` feeds real data, `--no-probe` turns the probe off")
}

/// The note for a backward pass that did not run, after a forward pass that did.
fn backward_diagnostic(graph: &Graph<'_>, skip: &Skip) -> Diagnostic {
    let d = Diagnostic::new(
        &META,
        format!("the backward pass did not run: {}", skip.reason),
    );
    at_node(graph, skip, d, "stopped the backward pass", "not probed")
        .note("the forward probe's checks ran; only the checks of gradients are missing")
        .help("`--no-grad` turns the backward pass off")
}

/// The note for a one-batch fit that did not run, after a backward pass that did.
fn fit_diagnostic(graph: &Graph<'_>, skip: &Skip) -> Diagnostic {
    let d = Diagnostic::new(
        &META,
        format!("the one-batch fit did not run: {}", skip.reason),
    );
    at_node(graph, skip, d, "stopped the fit", "not fitted")
        .note("`cannot-overfit` is the only check missing")
        .help("`--overfit-steps N` runs N steps whatever the budget; `--overfit-steps 0` turns the fit off")
}

/// The note for a one-batch fit the budget cut short of its steps before
/// it fitted or failed at both rates: it ran, and says neither that the
/// model fits nor that it cannot. The steps are both attempts' (a first that
/// stalled, then one at a lower rate).
fn fit_cut_diagnostic(graph: &Graph<'_>, fit: &Fit, asked: usize, budget: f64) -> Diagnostic {
    Diagnostic::new(
        &META,
        format!(
            "the one-batch fit stopped after {} of its {asked} steps, what its budget of {} s affords, with the loss above its goal: {} -> {}",
            fit.taken_in_all(),
            short(budget),
            short(fit.start()),
            short(fit.end())
        ),
    )
    .primary(graph.source().graph(graph.scope()), "not fitted")
    .note("`cannot-overfit` needs the fit to fit, or to fail at two learning rates; the budget stopped it before either")
    .help(format!("`--overfit-steps {asked}` runs all the steps whatever the budget"))
}

fn at_node(
    graph: &Graph<'_>,
    skip: &Skip,
    d: Diagnostic,
    label: &str,
    graph_label: &str,
) -> Diagnostic {
    let node = skip.node.as_deref().and_then(|name| graph.find_node(name));
    match node {
        Some(n) => d.primary(n.span().call, label).with_node(n.name()),
        None => d.primary(graph.source().graph(graph.scope()), graph_label),
    }
}
