//! Finishing a file's report: the configuration's per-node ignores, the
//! author's sources and their suppressions, findings in source order, and
//! the loss the rules read.

use crate::diag::position::{Sources, MODEL};
use crate::diag::report::{FileReport, LossReport, LossTermReport, Measurements};
use crate::diag::Diagnostic;
use crate::lint::origins;
use crate::options::Settings;
use crate::{graph, onnx, rules};

/// The file's report from what the passes found in `graphs`, read from
/// `model` and listed in `source`.
pub(crate) fn report(
    model: &onnx::Model,
    graphs: &[graph::Graph<'_>],
    source: &onnx::source::Source,
    settings: &Settings,
    mut diagnostics: Vec<Diagnostic>,
    coverage: rules::premise::Coverage,
    measurements: Option<Measurements>,
) -> FileReport {
    if let Some(c) = &settings.config {
        diagnostics.retain(|d| {
            let meta = rules::find(d.rule).map(|r| r.meta());
            match (meta, &d.node) {
                (Some(m), Some(node)) => !c.ignored_for_node(m, node),
                _ => true,
            }
        });
    }
    let path = model.path.display().to_string();
    let mut sources = Sources::new();
    let model_file = sources.add(path.clone(), source.text.clone());
    debug_assert_eq!(model_file, MODEL);
    origins::attach(model, graphs, settings, &mut sources, &mut diagnostics);
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            let (file, span) = d.primary_span();
            (file, span.start, span.end, d.code)
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.message.cmp(&b.message))
            .then_with(|| a.labels.len().cmp(&b.labels.len()))
    });
    diagnostics.dedup();
    FileReport {
        failed: false,
        coverage: Some(coverage),
        measurements,
        loss: graphs.first().map(loss_report),
        ..FileReport::new(path, sources, diagnostics)
    }
}

/// The loss the rules read in `graph`, for `--verbose` and the json report.
fn loss_report(graph: &graph::Graph<'_>) -> LossReport {
    let loss = graph.loss();
    let name = |t: graph::TensorId| graph.tensor_name(t).to_string();
    LossReport {
        output: loss.total.map(name),
        terms: loss
            .terms
            .iter()
            .map(|t| LossTermReport {
                form: t.form,
                node: graph.node(t.node).name().to_string(),
                weight: t.weight,
                reduction: t.reduction,
                scores: t.scores.map(name),
                target: t.target.map(name),
            })
            .collect(),
    }
}
