//! The rules: what each one is, the registry, and selection.
//!
//! Each rule lives in its own file with its metadata next to its logic, and
//! its explanation in `rules/<name>.md`, embedded into the binary. The files
//! are grouped in folders by the first digit of their code: `file` (NN0),
//! `loss` (NN1), `connections` (NN2), `parameters` (NN3), `measured` (NN4,
//! the probe's) and `checkpoints` (NN5, `nnlint diff`'s).

mod checkpoints;
mod connections;
mod file;
mod loss;
mod measured;
mod parameters;
pub mod premise;
pub mod select;

use crate::diag::report::{LayerDiff, RuleInfo};
use crate::diag::{Diagnostic, Severity};
use crate::graph::Graph;
use crate::probe::Probe;

pub use premise::{Facts, Half, Premise, Unmet};
pub use select::{Selection, SelectorError};

/// What kind of mistake a rule looks for; the sections of the debugging checklist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// The model file itself is broken.
    Validity,
    /// Section 2: the loss.
    Loss,
    /// Section 3: intermediate outputs and connections.
    Connections,
    /// Section 4: parameters and normalization.
    Parameters,
    /// Leftovers that do no harm but deserve a look.
    Hygiene,
    /// The probe itself: whether the forward pass ran.
    Probe,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Validity => "validity",
            Category::Loss => "loss",
            Category::Connections => "connections",
            Category::Parameters => "parameters",
            Category::Hygiene => "hygiene",
            Category::Probe => "probe",
        }
    }
}

/// Which pass of nnlint produces a rule's findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pass {
    /// Reading a text model ([`Rule::read`]).
    Read,
    /// Static checks of one graph, run by `nnlint MODEL` ([`Rule::check`]).
    Graph,
    /// The `# nnlint: ignore` comments in the author's Python code
    /// ([`Rule::suppressions`]).
    Suppressions,
    /// `nnlint diff BEFORE AFTER`, on two checkpoints of one model
    /// ([`Rule::diff`]; rules of other passes may compare checkpoints too).
    Diff,
    /// Only the probe's forward pass ([`Rule::probe`]). Rules of the `Graph`
    /// pass may measure too; [`Rule::measures`] says which.
    Probe,
}

/// A rule's identity, declared once next to its logic.
#[derive(Debug)]
pub struct RuleMeta {
    /// The public name: `--select`, config keys, json output, `rules/<name>.md`.
    pub name: &'static str,
    /// `NN` and three digits; the first digit groups rules by category.
    pub code: &'static str,
    pub severity: Severity,
    pub pass: Pass,
    pub category: Category,
    /// What the rule takes for granted about a model, and what becomes of
    /// its findings where that does not hold ([`premise::Facts::verdict`]).
    pub premises: &'static [premise::Requirement],
    /// Rules whose measured finding on the node this rule reported becomes
    /// a note on this rule's finding: the measurement of the same problem.
    pub absorbs: &'static [&'static str],
    /// One line, lowercase, no trailing period.
    pub summary: &'static str,
    /// The thresholds the rule's page documents, configurable per project.
    pub options: &'static [RuleOption],
    /// The page under `rules/`, in markdown.
    pub explanation: &'static str,
}

/// A threshold a rule uses, with its default.
#[derive(Debug)]
pub struct RuleOption {
    /// The key in `[rules.<rule>]`.
    pub name: &'static str,
    pub default: f64,
    pub summary: &'static str,
}

/// One rule's settings, from `[rules.<name>]` in the configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleConfig {
    pub severity: Option<Severity>,
    /// Thresholds by the names the rule declares.
    pub options: std::collections::BTreeMap<&'static str, f64>,
}

/// What a rule sees while it checks one graph: the graph, its settings, and
/// what is known of the model (its state, for messages).
pub struct Check<'a, 'm> {
    pub graph: &'a Graph<'m>,
    pub meta: &'static RuleMeta,
    pub settings: Option<&'a RuleConfig>,
    pub facts: &'a Facts,
}

impl Check<'_, '_> {
    /// A threshold, from the configuration or the rule's default.
    pub fn option(&self, option: &RuleOption) -> f64 {
        self::option(self.meta, self.settings, option)
    }
}

/// A rule's configured options, for the hooks that see no graph
/// ([`Rule::tune`]).
pub struct Tuning<'a> {
    pub meta: &'static RuleMeta,
    pub settings: Option<&'a RuleConfig>,
}

impl Tuning<'_> {
    /// A threshold, from the configuration or the rule's default.
    pub fn option(&self, option: &RuleOption) -> f64 {
        self::option(self.meta, self.settings, option)
    }
}

/// The probe's parameters as every rule sets them ([`Rule::tune`]), under
/// `config`: selected or not, as the measurements table reads them too.
pub fn plan(config: Option<&crate::config::Config>) -> crate::probe::Plan {
    let mut plan = crate::probe::Plan::default();
    for rule in all() {
        let meta = rule.meta();
        let cx = Tuning {
            meta,
            settings: config.and_then(|c| c.rules.get(meta.name)),
        };
        rule.tune(&cx, &mut plan);
    }
    plan
}

/// What `nnlint diff` hands each rule ([`Rule::diff`]): two checkpoints of
/// one model compared weight by weight, or why they could not be paired.
pub struct Checkpoints<'a> {
    /// The weights of the second checkpoint paired with the first, in graph
    /// order; empty when `mismatch` is set.
    pub layers: &'a [LayerDiff],
    /// Optimizer steps between the checkpoints (`--steps`).
    pub steps: f64,
    pub mismatch: Option<&'a Mismatch>,
    pub meta: &'static RuleMeta,
    pub settings: Option<&'a RuleConfig>,
}

impl Checkpoints<'_> {
    /// A threshold, from the configuration or the rule's default.
    pub fn option(&self, option: &RuleOption) -> f64 {
        self::option(self.meta, self.settings, option)
    }
}

/// Two checkpoints whose graphs differ, so that no weight can be paired.
pub struct Mismatch {
    /// Where they first differ.
    pub why: String,
    /// The second checkpoint's graph in its listing.
    pub span: std::ops::Range<usize>,
    pub before: std::path::PathBuf,
    pub after: std::path::PathBuf,
}

/// What the rules of `nnlint diff` find.
#[derive(Default)]
pub struct DiffFindings {
    /// Each finding with the weight of [`Checkpoints::layers`] it is about,
    /// or `None` for one already placed.
    pub found: Vec<(Option<usize>, Diagnostic)>,
    /// The band of healthy relative updates per step that the table marks,
    /// from the rule that judges them.
    pub band: Option<(f64, f64)>,
}

impl RuleMeta {
    /// The rule as the renderers cite it.
    pub fn info(&self) -> RuleInfo {
        RuleInfo {
            name: self.name,
            code: self.code,
            severity: self.severity,
            category: self.category.as_str(),
            summary: self.summary,
            explanation: self.explanation,
        }
    }
}

/// Every rule as the renderers cite it, in the registry's order.
pub fn infos() -> Vec<RuleInfo> {
    all().map(|r| r.meta().info()).collect()
}

/// A rule's threshold: the configured value, or the option's default.
/// Options are constants the rule declares in its metadata and reads by
/// name of constant, so a misspelt one does not compile.
pub fn option(meta: &RuleMeta, settings: Option<&RuleConfig>, option: &RuleOption) -> f64 {
    debug_assert!(
        meta.options.iter().any(|o| o.name == option.name),
        "{} reads `{}`, which its metadata does not declare",
        meta.name,
        option.name
    );
    settings
        .and_then(|s| s.options.get(option.name).copied())
        .unwrap_or(option.default)
}

impl Diagnostic {
    /// A diagnostic of `rule` at its default severity.
    pub fn new(rule: &RuleMeta, message: impl Into<String>) -> Self {
        Diagnostic::of(rule.name, rule.code, rule.severity, message)
    }
}

pub trait Rule: Sync {
    fn meta(&self) -> &'static RuleMeta;
    /// Appends the rule's findings on a text model that does not parse
    /// ([`Pass::Read`]).
    fn read(&self, _error: &crate::onnx::text::SyntaxError, _out: &mut Vec<Diagnostic>) {}
    /// Adds the rule's findings on two checkpoints of one model (`nnlint
    /// diff`), whatever its [`Pass`].
    fn diff(&self, _cx: &Checkpoints<'_>, _out: &mut DiffFindings) {}
    /// Appends the rule's findings on the suppression comments that
    /// suppressed less than they name ([`Pass::Suppressions`]).
    fn suppressions(&self, _unused: &[crate::diag::UnusedSuppression], _out: &mut Vec<Diagnostic>) {
    }
    /// Appends the rule's findings on one graph of a model. Rules of other
    /// passes keep this default and report from their pass (see [`Pass`]).
    fn check(&self, _cx: &Check<'_, '_>, _out: &mut Vec<Diagnostic>) {}
    /// Whether the rule reads the probe's measurements ([`Rule::probe`]).
    fn measures(&self) -> bool {
        false
    }
    /// What the rule needs from the probe's backward pass under these
    /// options; empty for none.
    fn backward(&self, _options: &crate::probe::ProbeOptions) -> &'static [crate::probe::Backward] {
        &[]
    }
    /// Sets the probe's parameters the rule owns (a threshold the probe
    /// counts by, the one-batch fit's steps), selected or not.
    fn tune(&self, _cx: &Tuning<'_>, _plan: &mut crate::probe::Plan) {}
    /// Appends the rule's findings on a pass of the probe that did not run
    /// on the main graph, or stopped short.
    fn skipped(
        &self,
        _graph: &Graph<'_>,
        _skipped: &crate::probe::Skipped<'_>,
        _out: &mut Vec<Diagnostic>,
    ) {
    }
    /// Adds to the report's measurements of the main graph what the rule
    /// judges them by: its thresholds ([`Bands`](crate::diag::report::Bands)),
    /// and values only its own formula reads from the probe. Selected or
    /// not: the table shows them either way.
    fn measurements(
        &self,
        _cx: &Check<'_, '_>,
        _probe: &Probe,
        _out: &mut crate::diag::report::Measurements,
    ) {
    }
    /// Appends the rule's findings from the probe's forward pass over the main graph.
    fn probe(&self, _cx: &Check<'_, '_>, _probe: &Probe, _out: &mut Vec<Diagnostic>) {}
    /// Whether the probe's measurements refute one of the rule's static
    /// findings on the main graph: what the finding predicts did not happen
    /// there. A refuted finding is dropped.
    fn refuted(&self, _cx: &Check<'_, '_>, _probe: &Probe, _finding: &Diagnostic) -> bool {
        false
    }
}

// Every rule, as build.rs finds them: a file per rule under a group folder.
include!(concat!(env!("OUT_DIR"), "/rules.rs"));

/// Every rule, in code order.
pub fn all() -> impl Iterator<Item = &'static dyn Rule> {
    let mut v: Vec<&'static dyn Rule> = RULES.to_vec();
    v.sort_by_key(|r| r.meta().code);
    v.into_iter()
}

/// The rule with this name or code.
/// `; did you mean `a` or `b`?` for a name no rule has: the rule names
/// within a small edit distance or sharing its words, closest first, as
/// rustc and clap suggest; empty when none is close.
pub fn suggest(unknown: &str) -> String {
    let wanted = unknown.to_ascii_lowercase();
    let mut close: Vec<(usize, &'static str)> = all()
        .map(|r| r.meta().name)
        .filter_map(|name| {
            let distance = strsim::levenshtein(&wanted, name);
            let words = name.contains(wanted.as_str()) && wanted.len() >= 4;
            (distance <= (wanted.len() / 3).max(2) || words).then_some((distance, name))
        })
        .collect();
    close.sort();
    let names: Vec<String> = close
        .iter()
        .take(3)
        .map(|(_, n)| format!("`{n}`"))
        .collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => format!("; did you mean {one}?"),
        [init @ .., last] => format!("; did you mean {} or {last}?", init.join(", ")),
    }
}

pub fn find(name_or_code: &str) -> Option<&'static dyn Rule> {
    all().find(|r| {
        let m = r.meta();
        m.name == name_or_code || m.code.eq_ignore_ascii_case(name_or_code)
    })
}
