//! nnlint: a linter for neural-network graphs stored as ONNX.
//!
//! The data flows one way, and the modules are listed in its order:
//!
//! | step | module | what it does |
//! |---|---|---|
//! | read | [`onnx`], [`read_model`] | a model's bytes or text, its external data, its listing |
//! | graph | [`graph`] | the petgraph view the rules query: shapes, layers, the loss, the model's state |
//! | rules | [`rules`] | one file per rule, its metadata beside its logic; the premises judged in one place |
//! | probes | [`probe`] | the forward pass (tract), the backward pass and the one-batch fit (candle) |
//! | diagnostics | [`diag`] | findings and measurements as values, positions from one place, the report |
//! | output | [`diag::render`] | human, short, json, sarif, html and the rest: formatting only |
//!
//! [`lint`] runs that pipeline on one file ([`lint_file`]) or on two
//! ([`diff`]); [`walk`] finds the files a command line names;
//! [`config`] and the options say what to check. No module imports this
//! one, and none imports a step after its own.

pub mod config;
pub mod diag;
pub mod graph;
pub mod lint;
pub mod onnx;
mod options;
mod parallel;
pub mod probe;
mod read;
pub mod rules;
pub mod walk;

pub use diag::report::{FileReport, Report};
pub use lint::record::{fingerprint, run_record, sha256};
pub use lint::{diff, lint_file, lint_model, lint_source, unparsed};
pub use options::{ConfigSource, Error, Options, Settings};
pub use read::{listing, read_model, Read, Unparsed};
pub use walk::{expand_paths, Expanded, Walk, MODEL_EXTENSIONS};

/// The report of a run: its files, and the metadata of every rule.
pub fn report(run: diag::report::Run, files: Vec<FileReport>) -> Report {
    Report::new(run, files, rules::infos())
}
