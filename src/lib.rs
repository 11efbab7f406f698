//! nnlint: a linter for neural-network graphs stored as ONNX.
//!
//! The data flows one way: [`onnx`] reads a model, [`graph`] builds the
//! petgraph view rules query, [`rules`] produce [`diag::Diagnostic`]s, and
//! [`diag::render`] formats them.

pub mod config;
pub mod diag;
pub mod graph;
pub mod onnx;
pub mod rules;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::{Config, ConfigError};
use diag::position::SourceFile;
use diag::Diagnostic;
use onnx::printer::{print_model, Values};
use onnx::LoadError;
use rules::{Check, Selection, SelectorError};

/// What a lint run does.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Rules to run, from the command line; when empty, the configuration's
    /// `select` (or every rule) applies.
    pub select: Vec<String>,
    /// Rules added to the selection.
    pub extend_select: Vec<String>,
    /// Rules not to run, added to the configuration's.
    pub ignore: Vec<String>,
    pub config: ConfigSource,
}

/// Where a file's configuration comes from.
#[derive(Clone, Debug, Default)]
pub enum ConfigSource {
    /// The nearest `nnlint.toml` or `pyproject.toml` above each file.
    #[default]
    Discover,
    /// One configuration for every file (`--config`).
    Fixed(Arc<Config>),
    /// Defaults only.
    None,
}

/// Why a file was not linted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    Load(LoadError),
    Config(ConfigError),
    Selector(SelectorError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Load(e) => e.fmt(f),
            Error::Config(e) => e.fmt(f),
            Error::Selector(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        Error::Load(e)
    }
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

/// Lints one model file with the configuration that applies to it.
pub fn lint_file(path: &Path, options: &Options) -> Result<FileReport, Error> {
    let config = match &options.config {
        ConfigSource::Discover => config::discover(path).map_err(Error::Config)?.map(Arc::new),
        ConfigSource::Fixed(c) => Some(c.clone()),
        ConfigSource::None => None,
    };
    let settings = Settings::new(options, config.as_deref(), path)?;
    let model = onnx::load(path)?;
    Ok(lint_model(&model, &settings))
}

/// Everything that decides what a lint of one file reports.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub selection: Selection,
    pub config: Option<Config>,
}

impl Settings {
    /// Command-line options over the file's configuration.
    pub fn new(options: &Options, config: Option<&Config>, file: &Path) -> Result<Settings, Error> {
        let mut select = if options.select.is_empty() {
            config.and_then(|c| c.select.clone()).unwrap_or_default()
        } else {
            options.select.clone()
        };
        let extend: Vec<String> = config
            .map(|c| c.extend_select.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(options.extend_select.iter().cloned())
            .collect();
        if !extend.is_empty() && select.is_empty() {
            select.push("ALL".into());
        }
        select.extend(extend);
        let mut ignore: Vec<String> = config.map(|c| c.ignore.clone()).unwrap_or_default();
        if let Some(c) = config {
            ignore.extend(c.ignored_for_file(file));
        }
        ignore.extend(options.ignore.iter().cloned());
        Ok(Settings {
            selection: Selection::new(&select, &ignore).map_err(Error::Selector)?,
            config: config.cloned(),
        })
    }
}

/// Lints a model already in memory.
pub fn lint_model(model: &onnx::Model, settings: &Settings) -> FileReport {
    let source = print_model(&model.proto, Values::Elide);
    let graphs = graph::build(model, &source);
    let mut diagnostics = Vec::new();
    for rule in rules::all().filter(|r| settings.selection.enabled(r.meta())) {
        let meta = rule.meta();
        let rule_config = settings
            .config
            .as_ref()
            .and_then(|c| c.rules.get(meta.name));
        let start = diagnostics.len();
        for g in &graphs {
            let cx = Check {
                graph: g,
                meta,
                settings: rule_config,
            };
            rule.check(&cx, &mut diagnostics);
        }
        if let Some(severity) = rule_config.and_then(|c| c.severity) {
            diagnostics[start..]
                .iter_mut()
                .for_each(|d| d.severity = severity);
        }
    }
    if let Some(c) = &settings.config {
        diagnostics.retain(|d| {
            let meta = rules::find(d.rule).map(|r| r.meta());
            match (meta, &d.node) {
                (Some(m), Some(node)) => !c.ignored_for_node(m, node),
                _ => true,
            }
        });
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
