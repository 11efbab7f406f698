//! The value a run produces: each file's findings and measurements, what
//! reproduces the run, and the metadata of the rules it cites.
//!
//! Every renderer receives a [`Report`] and only formats it. Nothing here
//! depends on the rules or the probe that filled it: rules and probes build
//! these values, as they build [`Diagnostic`]s.

use serde::Serialize;

use super::position::Sources;
use super::{Diagnostic, Severity};
use crate::graph::{InputNames, Premise, StateDecision};
use crate::onnx::LoadError;

pub use super::measure::{Bands, FitAttempt, FitCurve, LayerMeasure, LossMeasure, Measurements};

/// The version of the `json-report` shape; raised when a field changes
/// meaning or goes away (new fields may appear without it).
pub const SCHEMA_VERSION: u32 = 1;

/// One run of nnlint: `nnlint PATH...` or `nnlint diff`.
pub struct Report {
    pub run: Run,
    pub files: Vec<FileReport>,
    /// Every rule, in code order: sarif lists them, and the html page names
    /// the ones its findings cite.
    pub rules: Vec<RuleInfo>,
    /// `nnlint diff`'s per-weight table, for a diff.
    pub diff: Option<DiffTable>,
}

impl Report {
    /// A run's report, citing `rules`.
    pub fn new(run: Run, files: Vec<FileReport>, rules: Vec<RuleInfo>) -> Report {
        Report {
            run,
            files,
            rules,
            diff: None,
        }
    }

    /// The rule with this name.
    pub fn rule(&self, name: &str) -> Option<&RuleInfo> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// What reproduces a run (the checklist's "track your work"): the tool's
/// version, the arguments, and the options they came to. Nothing that
/// changes between two runs of the same command (no time, no host).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    pub tool: &'static str,
    pub version: &'static str,
    /// `lint` or `diff`.
    pub command: &'static str,
    /// The arguments as given, after the program's name.
    pub arguments: Vec<String>,
    /// The probe's seed: its inputs, and any weights it had to draw.
    pub seed: u64,
    /// The options in force, by their command-line names.
    pub options: std::collections::BTreeMap<String, String>,
}

/// A rule as the renderers cite it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RuleInfo {
    pub name: &'static str,
    pub code: &'static str,
    pub severity: Severity,
    pub category: &'static str,
    /// One line, lowercase, no trailing period.
    pub summary: &'static str,
    /// The page under `rules/`, in markdown.
    #[serde(skip)]
    pub explanation: &'static str,
}

/// An external data file of a model, as the reports record it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataFile {
    /// The location as the model writes it.
    pub location: String,
    pub sha256: String,
}

impl LayerDiff {
    /// `||B - A|| / ||A||` per optimizer step, over `steps` steps.
    pub fn per_step(&self, steps: f64) -> f64 {
        self.relative_update / steps
    }

    /// Every element is bit-for-bit the same in both checkpoints.
    pub fn frozen(&self) -> bool {
        self.unchanged == self.elements
    }
}

/// `nnlint diff`'s table: each weight's update, and the band it is judged by.
#[derive(Clone, Debug, Serialize)]
pub struct DiffTable {
    /// The optimizer steps between the two checkpoints.
    pub steps: f64,
    /// The band of healthy updates per step, from the rule that judges them.
    pub band: Option<(f64, f64)>,
    pub layers: Vec<LayerDiff>,
    /// Whether the two graphs paired: checkpoints of different models have
    /// no table, and no summary line after their findings.
    #[serde(skip)]
    pub paired: bool,
}

/// The findings on one model, with the text they point into.
pub struct FileReport {
    /// The path as the user gave it.
    pub path: String,
    /// The model's text ([`MODEL`](crate::diag::position::MODEL); for a binary model, its `nnlint print`
    /// listing) and the Python sources its findings point into.
    pub sources: Sources,
    /// Sorted by position, then code.
    pub diagnostics: Vec<Diagnostic>,
    /// The file could not be read as a model (a text model with a syntax error):
    /// the diagnostics say why, and the exit status is 2.
    pub failed: bool,
    /// The model's state and what the rules' premises kept from running or
    /// from seeing; `None` when no model was read.
    pub coverage: Option<Coverage>,
    /// Why some of the file could not be read (a missing external data file):
    /// the rules that need no values ran, and the exit status is 2.
    pub unreadable: Option<LoadError>,
    /// The names the model's inputs answer to, for checking `--input` and
    /// `--dim` (`InputOptions::check` in the probe).
    pub inputs: Option<InputNames>,
    /// The model file's sha256, in hex, when the format records it.
    pub sha256: Option<String>,
    /// The external data files its weights are in, each with its sha256.
    pub data: Vec<DataFile>,
    /// The configuration file that applied, if any.
    pub config: Option<String>,
    /// What the probe measured per layer; `None` when it did not run.
    pub measurements: Option<Measurements>,
    /// The loss the graph was read to compute; `None` when no model was read.
    pub loss: Option<LossReport>,
}

/// The loss nnlint recognized in a graph: what `--verbose` prints and the
/// json report records, so that a user sees what the loss rules read.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LossReport {
    /// The scalar output its terms add up to, if the graph returns one.
    pub output: Option<String>,
    pub terms: Vec<LossTermReport>,
}

/// One term of a recognized loss.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LossTermReport {
    pub form: crate::graph::Form,
    /// The node that reduces it.
    pub node: String,
    /// The constant it enters the total with, signed.
    pub weight: f64,
    pub reduction: crate::graph::Reduction,
    /// What the model predicts, and the input with the targets.
    pub scores: Option<String>,
    pub target: Option<String>,
}

impl LossReport {
    /// One line: `` `loss` = cross-entropy of `z` against `y` (mean) + ... ``.
    pub fn describe(&self) -> String {
        if self.terms.is_empty() {
            return "no loss found".to_string();
        }
        let terms: Vec<String> = self
            .terms
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let sign = match (i, t.weight < 0.0) {
                    (0, true) => "-",
                    (0, false) => "",
                    (_, true) => " - ",
                    (_, false) => " + ",
                };
                let w = t.weight.abs();
                let weight = if w == 1.0 {
                    String::new()
                } else {
                    format!("{} x ", super::short_number(w))
                };
                let scores = t
                    .scores
                    .as_ref()
                    .map(|s| format!(" of `{s}`"))
                    .unwrap_or_default();
                let target = t
                    .target
                    .as_ref()
                    .map(|s| format!(" against `{s}`"))
                    .unwrap_or_default();
                let reduction = t.reduction.name();
                let at = if t.node.is_empty() {
                    String::new()
                } else {
                    format!(", at `{}`", t.node)
                };
                format!(
                    "{sign}{weight}{}{scores}{target} ({reduction}{at})",
                    t.form.describe()
                )
            })
            .collect();
        match &self.output {
            Some(o) => format!("the loss `{o}` = {}", terms.join("")),
            None => format!("the loss terms: {}", terms.join("")),
        }
    }
}

impl FileReport {
    /// A report of `diagnostics` on the model at `path`, with nothing else known.
    pub fn new(path: String, sources: Sources, diagnostics: Vec<Diagnostic>) -> FileReport {
        FileReport {
            path,
            sources,
            diagnostics,
            failed: false,
            coverage: None,
            unreadable: None,
            inputs: None,
            sha256: None,
            data: Vec::new(),
            config: None,
            measurements: None,
            loss: None,
        }
    }
}

/// What the premises let the rules see of one model: the state that was
/// decided, and what it and the graph kept from running or from seeing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    pub state: StateDecision,
    /// Selected rules that did not run (wholly or in one half) because a
    /// premise failed, in code order.
    pub skipped: Vec<&'static str>,
    /// Selected rules whose findings were reported as notes for that reason.
    pub demoted: Vec<&'static str>,
    /// Premises about the graph that fail, each with the selected rules that
    /// could see only part of what they look for.
    pub blind: Vec<(Premise, Vec<&'static str>)>,
}

/// What changed in one weight. Every number the table and json show.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerDiff {
    /// The weight's name in the second checkpoint.
    pub name: String,
    /// Its name in the first, when pairing by position found it under another name.
    pub before_name: Option<String>,
    pub shape: Vec<i64>,
    pub elements: usize,
    /// ||A|| and ||B||.
    pub norm_a: f64,
    pub norm_b: f64,
    /// ||B - A|| / ||A|| (0 when A is all zeros and nothing changed, infinite otherwise).
    pub relative_update: f64,
    /// Elements bit-for-bit equal in both checkpoints.
    pub unchanged: usize,
    /// NaN or infinite elements in A and in B.
    pub non_finite_a: usize,
    pub non_finite_b: usize,
    /// Whether training is expected to change it: a float weight of two or more
    /// elements, and not a BatchNorm running statistic.
    pub trainable: bool,
    /// The first node that reads it, which findings are attached to.
    pub node: Option<String>,
}
