//! The pipeline, one file at a time: read, build the graph and print its
//! listing side by side, the static pass, the probe pass, and the finished
//! report. `diff` runs the same passes on two models.

pub mod diff;
mod finish;
mod measure;
pub mod origins;
mod probe_pass;
pub mod record;
mod static_pass;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::diag::position::Sources;
use crate::diag::report::FileReport;
use crate::onnx::LoadError;
use crate::options::{ConfigSource, Error, Options, Settings};
use crate::read::{listing, read_model, Read, Unparsed};
use crate::{config, graph, onnx, rules};

pub(crate) use static_pass::demote;

/// Lints one model file with the configuration that applies to it.
pub fn lint_file(path: &Path, options: &Options) -> Result<FileReport, Error> {
    let config = match &options.config {
        ConfigSource::Discover => config::discover(path).map_err(Error::Config)?.map(Arc::new),
        ConfigSource::Fixed(c) => Some(c.clone()),
        ConfigSource::None => None,
    };
    let mut settings = Settings::new(options, config.as_deref(), path)?;
    match read_model(path)? {
        Read::Model(read) => {
            let (model, source) = *read;
            // Without its values, a model still has its graph: the rules that
            // need no values run, as with `--no-probe`.
            if model.unreadable.is_some() {
                settings.probe.enabled = false;
            }
            let mut report = match source {
                Some(source) => lint_source(&model, source, &settings),
                None => lint_model(&model, &settings),
            };
            // What was read of a file truncated meanwhile read as zeros.
            if let Some(reason) = model.changed() {
                return Err(Error::Load(LoadError {
                    path: path.to_path_buf(),
                    reason,
                }));
            }
            if settings.fingerprint {
                record::fingerprint(&model, &mut report);
            }
            report.config = config
                .as_ref()
                .and_then(|c| c.path.as_ref())
                .map(|p| p.display().to_string());
            if let Some(reason) = &model.unreadable {
                report.failed = true;
                report.unreadable = Some(LoadError {
                    path: path.to_path_buf(),
                    reason: reason.clone(),
                });
            }
            // Freeing a large model's hundreds of thousands of small allocations
            // takes tens of milliseconds that nobody needs to wait for.
            let _ = std::thread::Builder::new()
                .name("nnlint-free".into())
                .spawn(move || drop(model));
            Ok(report)
        }
        Read::Syntax(unparsed) => Ok(self::unparsed(*unparsed)),
    }
}

/// The failed report of a text model that does not parse: the findings of
/// the rules of [`Pass::Read`](rules::Pass::Read), all of them whatever the
/// selection, as a compiler reports a syntax error.
pub fn unparsed(unparsed: Unparsed) -> FileReport {
    let mut diagnostics = Vec::new();
    for rule in rules::all().filter(|r| r.meta().pass == rules::Pass::Read) {
        rule.read(&unparsed.error, &mut diagnostics);
    }
    let mut sources = Sources::new();
    sources.add(unparsed.path.clone(), unparsed.text);
    FileReport {
        failed: true,
        coverage: None,
        ..FileReport::new(unparsed.path, sources, diagnostics)
    }
}

/// Lints a model already in memory, pointing into its listing.
pub fn lint_model(model: &onnx::Model, settings: &Settings) -> FileReport {
    lint_listing(model, OnceLock::new(), settings)
}

/// Lints a model whose text (a listing, or the user's `.onnxtxt`) is `source`.
pub fn lint_source(
    model: &onnx::Model,
    source: onnx::source::Source,
    settings: &Settings,
) -> FileReport {
    lint_listing(model, OnceLock::from(source), settings)
}

/// Lints a model with the text in `text`, printing its listing into it when
/// it is empty. The listing is printed on a second thread while the graph is
/// built: on a 100k-node model each takes tens of milliseconds.
fn lint_listing(
    model: &onnx::Model,
    text: OnceLock<onnx::source::Source>,
    settings: &Settings,
) -> FileReport {
    let print = || listing(model);
    let graphs = std::thread::scope(|scope| {
        if text.get().is_none() {
            scope.spawn(|| text.get_or_init(print));
        }
        graph::build_listing(model, &text)
    });
    // Set by now: the printing thread has been joined.
    let source = text.get_or_init(print);
    let facts = static_pass::facts(&graphs, settings);
    let valid = graphs.iter().all(|g| g.problems().is_empty());
    let coverage = static_pass::coverage(&facts, settings, valid);
    let mut diagnostics = static_pass::run(&graphs, settings, &facts);
    // An invalid graph cannot run; `invalid-graph` already says why.
    let measurements = match graphs.first() {
        Some(main) if valid => probe_pass::run(model, main, settings, &facts, &mut diagnostics),
        _ => None,
    };
    let inputs = graphs.first().map(graph::InputNames::of);
    FileReport {
        inputs,
        ..finish::report(
            model,
            &graphs,
            source,
            settings,
            diagnostics,
            coverage,
            measurements,
        )
    }
}
