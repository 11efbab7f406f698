//! nnlint: a linter for neural-network graphs stored as ONNX.
//!
//! The data flows one way: [`onnx`] reads a model, [`graph`] builds the
//! petgraph view rules query, [`rules`] produce [`diag::Diagnostic`]s, and
//! [`diag::render`] formats them.

pub mod diag;
pub mod graph;
pub mod onnx;
pub mod rules;

use std::path::{Path, PathBuf};

use diag::position::SourceFile;
use diag::Diagnostic;
use onnx::printer::{print_model, Values};
use onnx::LoadError;
use rules::Selection;

/// What a lint run does.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub selection: Selection,
}

/// The findings on one model, with the text they point into.
pub struct FileReport {
    /// The path as the user gave it.
    pub path: String,
    /// For a binary model, its `nnlint print` listing.
    pub file: SourceFile,
    /// Sorted by position, then code.
    pub diagnostics: Vec<Diagnostic>,
}

/// File extensions nnlint lints when given a folder.
pub const MODEL_EXTENSIONS: &[&str] = &["onnx"];

/// Lints one model file.
pub fn lint_file(path: &Path, options: &Options) -> Result<FileReport, LoadError> {
    let model = onnx::load(path)?;
    Ok(lint_model(&model, options))
}

/// Lints a model already in memory.
pub fn lint_model(model: &onnx::Model, options: &Options) -> FileReport {
    let source = print_model(&model.proto, Values::Elide);
    let graphs = graph::build(model, &source);
    let mut diagnostics = Vec::new();
    for rule in rules::all().filter(|r| options.selection.enabled(r.meta())) {
        for g in &graphs {
            rule.check(g, &mut diagnostics);
        }
    }
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| (d.primary_span().start, d.primary_span().end, d.code);
        key(a)
            .cmp(&key(b))
            .then_with(|| a.message.cmp(&b.message))
            .then_with(|| a.labels.len().cmp(&b.labels.len()))
    });
    diagnostics.dedup();
    let path = model.path.display().to_string();
    FileReport {
        file: SourceFile::new(path.clone(), source.text),
        path,
        diagnostics,
    }
}

/// The model files named by `args`: files as given, folders searched recursively
/// for [`MODEL_EXTENSIONS`], in sorted order. A path that does not exist is an error.
pub fn expand_paths(args: &[PathBuf]) -> Vec<Result<PathBuf, LoadError>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut found = Vec::new();
            walk(a, &mut found);
            found.sort();
            out.extend(found.into_iter().map(Ok));
        } else if a.exists() {
            out.push(Ok(a.clone()));
        } else {
            out.push(Err(LoadError {
                path: a.clone(),
                reason: "no such file or folder".into(),
            }));
        }
    }
    out
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            walk(&path, found);
        } else if path
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| MODEL_EXTENSIONS.contains(&x))
        {
            found.push(path);
        }
    }
}
