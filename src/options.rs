//! What a lint run does: the options of a run, the settings they come to
//! for one file, and why a file was not linted.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::diag::Diagnostic;
use crate::onnx::LoadError;
use crate::rules::{self, Check, Selection, SelectorError};
use crate::{graph, probe};

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
    /// Keep findings that `# nnlint: ignore` comments suppress, marked as such.
    pub show_suppressed: bool,
    /// The forward pass after the static rules.
    pub probe: probe::ProbeOptions,
    /// `--model-state`: `None` when not given, `Some(None)` for `auto`.
    pub model_state: Option<Option<graph::ModelState>>,
    /// Record each model's sha256 and its data files' (the formats that say
    /// what reproduces a run: `json-report`, `html`).
    pub fingerprint: bool,
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

/// Everything that decides what a lint of one file reports.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub selection: Selection,
    pub config: Option<Config>,
    pub show_suppressed: bool,
    pub probe: probe::ProbeOptions,
    /// The state to assume instead of deciding it from the weights.
    pub model_state: Option<graph::ModelState>,
    /// Hash the model and its data files into the report ([`Options::fingerprint`]).
    pub fingerprint: bool,
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
            show_suppressed: options.show_suppressed,
            probe: options.probe.clone(),
            model_state: match options.model_state {
                Some(given) => given,
                None => config.and_then(|c| c.model_state),
            },
            fingerprint: options.fingerprint,
        })
    }

    /// What `rule` sees while it checks `graph`.
    pub fn check<'a, 'm>(
        &'a self,
        graph: &'a graph::Graph<'m>,
        rule: &'static rules::RuleMeta,
        facts: &'a rules::Facts,
    ) -> Check<'a, 'm> {
        Check {
            graph,
            meta: rule,
            settings: self.config.as_ref().and_then(|c| c.rules.get(rule.name)),
            facts,
        }
    }

    /// Applies a configured severity to a rule's findings.
    pub fn apply_severity(&self, rule: &rules::RuleMeta, found: &mut [Diagnostic]) {
        let configured = self.config.as_ref().and_then(|c| c.rules.get(rule.name));
        if let Some(severity) = configured.and_then(|c| c.severity) {
            found.iter_mut().for_each(|d| d.severity = severity);
        }
    }
}
