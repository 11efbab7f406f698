//! nnlint: a linter for neural-network graphs stored as ONNX.
//!
//! The data flows one way: [`onnx`] reads a model, [`graph`] builds the
//! petgraph view rules query, [`rules`] produce [`diag::Diagnostic`]s, and
//! [`diag::render`] formats them.

pub mod config;
pub mod diag;
pub mod diff;
pub mod graph;
pub mod onnx;
mod parallel;
pub mod probe;
pub mod python;
pub mod rules;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use config::{Config, ConfigError};
use diag::position::{Sources, MODEL};
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
    /// Keep findings that `# nnlint: ignore` comments suppress, marked as such.
    pub show_suppressed: bool,
    /// The forward pass after the static rules.
    pub probe: probe::ProbeOptions,
    /// `--model-state`: `None` when not given, `Some(None)` for `auto`.
    pub model_state: Option<Option<graph::ModelState>>,
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
    /// The model's text ([`MODEL`]; for a binary model, its `nnlint print`
    /// listing) and the Python sources its findings point into.
    pub sources: Sources,
    /// Sorted by position, then code.
    pub diagnostics: Vec<Diagnostic>,
    /// The file could not be read as a model (a text model with a syntax error):
    /// the diagnostics say why, and the exit status is 2.
    pub failed: bool,
    /// The model's state and what the rules' premises kept from running or
    /// from seeing; `None` when no model was read.
    pub coverage: Option<rules::premise::Coverage>,
    /// Why some of the file could not be read (a missing external data file):
    /// the rules that need no values ran, and the exit status is 2.
    pub unreadable: Option<LoadError>,
    /// The names the model's inputs answer to, for checking `--input` and
    /// `--dim` ([`probe::inputs::InputOptions::check`]).
    pub inputs: Option<probe::inputs::InputNames>,
}

/// File extensions nnlint lints when given a folder.
pub const MODEL_EXTENSIONS: &[&str] = &["onnx", "onnxtxt"];

/// A model file as nnlint reads it: the model and the text diagnostics point
/// into. That text is the file itself for `.onnxtxt`; a binary model has none
/// until its [`listing`] is printed, which [`lint_model`] does while it
/// builds the graph.
pub enum Read {
    Model(Box<(onnx::Model, Option<onnx::source::Source>)>),
    /// A text model that does not parse, as a report with the syntax error.
    Syntax(Box<FileReport>),
}

/// Reads a binary (`.onnx`) or text (`.onnxtxt`) model.
pub fn read_model(path: &Path) -> Result<Read, Error> {
    if path.extension().is_some_and(|e| e == "onnxtxt") {
        let err = |reason: String| LoadError {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read file: {e}")))?;
        if meta.is_dir() {
            return Err(err("is a directory".into()).into());
        }
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read file: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| err("is not UTF-8 text".into()))?;
        return match onnx::text::parse_model(&text) {
            Ok((proto, source)) => Ok(Read::Model(Box::new((
                onnx::Model::from_proto(path, proto)?,
                Some(source),
            )))),
            Err(e) => {
                let display = path.display().to_string();
                let mut sources = Sources::new();
                sources.add(display.clone(), text);
                let d =
                    Diagnostic::new(&rules::syntax_error::META, e.message).primary(e.span, "here");
                Ok(Read::Syntax(Box::new(FileReport {
                    path: display,
                    sources,
                    diagnostics: vec![d],
                    failed: true,
                    coverage: None,
                    unreadable: None,
                    inputs: None,
                })))
            }
        };
    }
    let model = onnx::load_partial(path)?;
    Ok(Read::Model(Box::new((model, None))))
}

/// The listing of a binary model, weights elided, that findings point into.
pub fn listing(model: &onnx::Model) -> onnx::source::Source {
    print_model(&model.proto, Values::Elide)
}

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
            report.inputs = Some(probe::inputs::InputNames::of(model.graph()));
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
        Read::Syntax(report) => Ok(*report),
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

    /// A rule's threshold, from the configuration or the rule's default.
    pub fn option(&self, meta: &rules::RuleMeta, name: &str) -> f64 {
        let configured = self.config.as_ref().and_then(|c| c.rules.get(meta.name));
        rules::option(meta, configured, name)
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
    let facts = rules::Facts::gather(
        &graphs,
        settings.model_state,
        real_inputs(&graphs, settings),
    );
    let valid = graphs.iter().all(|g| g.problems().is_empty());
    let mut coverage = rules::premise::Coverage::new(facts.state.clone());
    for r in rules::all().filter(|r| settings.selection.enabled(r.meta())) {
        let probes = valid && settings.probe.enabled && r.measures();
        coverage.account(&facts, r.meta(), probes);
    }
    let selected: Vec<&dyn rules::Rule> = rules::all()
        .filter(|r| r.meta().pass == rules::Pass::Graph && settings.selection.enabled(r.meta()))
        .filter(|r| {
            facts.verdict(r.meta().premises, rules::Half::Static) != Some(rules::Unmet::Skip)
        })
        .collect();
    // Rules are independent: run them on every core, then merge in rule order.
    let per_rule = parallel::map(&selected, |rule| {
        let mut found = Vec::new();
        for g in &graphs {
            rule.check(&settings.check(g, rule.meta(), &facts), &mut found);
        }
        settings.apply_severity(rule.meta(), &mut found);
        demote(&facts, rule.meta(), rules::Half::Static, &mut found);
        found
    });
    let mut diagnostics: Vec<Diagnostic> = per_rule.into_iter().flatten().collect();
    // An invalid graph cannot run; `invalid-graph` already says why.
    if valid {
        if let Some(main) = graphs.first() {
            probe_pass(model, main, settings, &facts, &mut diagnostics);
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
    let path = model.path.display().to_string();
    let mut sources = Sources::new();
    let model_file = sources.add(path.clone(), source.text.clone());
    debug_assert_eq!(model_file, MODEL);
    python::attach_origins(model, &graphs, settings, &mut sources, &mut diagnostics);
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
        path,
        sources,
        diagnostics,
        failed: false,
        coverage: Some(coverage),
        unreadable: None,
        inputs: None,
    }
}

/// Whether every float input of the main graph is fed real data (`--input`).
fn real_inputs(graphs: &[graph::Graph<'_>], settings: &Settings) -> bool {
    let Some(main) = graphs.first() else {
        return false;
    };
    let mut floats = main
        .fed_inputs()
        .filter(|i| {
            main.elem_type(i)
                .is_some_and(onnx::proto::data_type::is_float)
        })
        .peekable();
    floats.peek().is_some() && floats.all(|i| settings.probe.files.contains_key(i))
}

/// Reports a rule's findings as notes where a premise whose failure demotes
/// them does not hold, saying why.
fn demote(
    facts: &rules::Facts,
    meta: &rules::RuleMeta,
    half: rules::Half,
    found: &mut [Diagnostic],
) {
    if facts.verdict(meta.premises, half) != Some(rules::Unmet::Note) {
        return;
    }
    let why = facts
        .failing(meta.premises, rules::Unmet::Note)
        .iter()
        .map(|p| p.describe())
        .collect::<Vec<_>>()
        .join(" and ");
    for d in found
        .iter_mut()
        .filter(|d| d.severity > diag::Severity::Note)
    {
        d.severity = diag::Severity::Note;
        d.notes.push(format!(
            "reported as a note: this rule assumes {why}, and the model looks {} ({})",
            facts.state.state, facts.state.evidence
        ));
    }
}

/// Runs the probe on the main graph and appends what the measuring rules find.
///
/// A measured finding on a node its rule already reported statically becomes
/// a note on that finding: one finding per problem.
fn probe_pass(
    model: &onnx::Model,
    main: &graph::Graph<'_>,
    settings: &Settings,
    facts: &rules::Facts,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let measuring: Vec<&dyn rules::Rule> = rules::all()
        .filter(|r| r.measures() && settings.selection.enabled(r.meta()))
        .filter(|r| {
            facts.verdict(r.meta().premises, rules::Half::Measured) != Some(rules::Unmet::Skip)
        })
        .collect();
    if !settings.probe.enabled || measuring.is_empty() {
        return;
    }
    let saturation = settings.option(&rules::saturated_activation::META, "threshold") as f32;
    let mut backward: Vec<probe::Backward> = measuring
        .iter()
        .flat_map(|r| r.backward(&settings.probe).iter().copied())
        .collect();
    backward.sort();
    backward.dedup();
    // A pass that did not run is a `probe-skipped` note, when that rule is selected.
    let skipped = |diagnostics: &mut Vec<Diagnostic>, d: Diagnostic| {
        let meta = &rules::probe_skipped::META;
        if settings.selection.enabled(meta) {
            let mut d = vec![d];
            settings.apply_severity(meta, &mut d);
            diagnostics.extend(d);
        }
    };
    let fit = probe::FitPlan::of(|name| settings.option(&rules::cannot_overfit::META, name));
    let probe = match probe::run(model, main, &settings.probe, saturation, &backward, &fit) {
        Ok(p) => p,
        Err(skip) => {
            skipped(diagnostics, rules::probe_skipped::diagnostic(main, &skip));
            return;
        }
    };
    if let Some(Err(skip)) = &probe.gradients {
        skipped(
            diagnostics,
            rules::probe_skipped::backward_diagnostic(main, skip),
        );
    }
    if let Some(Err(skip)) = &probe.fit {
        skipped(
            diagnostics,
            rules::probe_skipped::fit_diagnostic(main, skip),
        );
    }
    for rule in measuring {
        let mut found = Vec::new();
        rule.probe(
            &settings.check(main, rule.meta(), facts),
            &probe,
            &mut found,
        );
        settings.apply_severity(rule.meta(), &mut found);
        demote(facts, rule.meta(), rules::Half::Measured, &mut found);
        for d in found {
            // One finding per problem: a node the rule already reported statically
            // gets the measurement as a note.
            let explains = |s: &Diagnostic| {
                s.rule == d.rule
                    || rules::find(s.rule).is_some_and(|r| r.meta().absorbs.contains(&d.rule))
            };
            // The same node: by name (the measured finding's own, or one it
            // spans), or, for a node without one, by place.
            let same = |s: &Diagnostic| match d.node.as_deref() {
                Some(n) => s.concerns(n) || d.spans_nodes.iter().any(|m| s.concerns(m)),
                None => s.node.is_none() && s.primary_span() == d.primary_span(),
            };
            match diagnostics.iter_mut().find(|s| explains(s) && same(s)) {
                Some(s) => s
                    .notes
                    .push(format!("the probe measured it: {}", d.message)),
                None => diagnostics.push(d),
            }
        }
    }
}

/// How a folder named on the command line is searched for models.
#[derive(Clone, Copy, Debug)]
pub struct Walk {
    /// Skip what `.gitignore`, `.ignore` and `.git/info/exclude` list.
    pub respect_gitignore: bool,
}

impl Default for Walk {
    fn default() -> Self {
        Walk {
            respect_gitignore: true,
        }
    }
}

/// The models the command line names, in order.
#[derive(Debug, Default)]
pub struct Expanded {
    /// Each model file, or why a path could not be searched.
    pub files: Vec<Result<PathBuf, Error>>,
    /// Folders that were searched and hold no model.
    pub empty: Vec<PathBuf>,
}

/// The model files `args` name: files as given (whatever excludes say, as
/// ruff lints a file it is given), folders searched as ruff searches them:
/// hidden folders, what `.gitignore` lists, virtual environments and the
/// configuration's `exclude` are skipped; each folder's files come sorted.
pub fn expand_paths(args: &[PathBuf], config: &ConfigSource, walk: Walk) -> Expanded {
    let mut out = Expanded::default();
    for a in args {
        if a.is_dir() {
            let config = match config {
                ConfigSource::Fixed(c) => Some(c.clone()),
                ConfigSource::None => None,
                ConfigSource::Discover => match config::discover_from(a) {
                    Ok(c) => c.map(Arc::new),
                    Err(e) => {
                        out.files.push(Err(Error::Config(e)));
                        continue;
                    }
                },
            };
            let excludes = config::Excludes::new(config.as_deref());
            let mut found = Vec::new();
            let walker = ignore::WalkBuilder::new(a)
                .hidden(true)
                .parents(true)
                .ignore(walk.respect_gitignore)
                .git_ignore(walk.respect_gitignore)
                .git_global(walk.respect_gitignore)
                .git_exclude(walk.respect_gitignore)
                .require_git(false)
                .follow_links(false)
                .filter_entry(move |e| {
                    let is_dir = e.file_type().is_some_and(|t| t.is_dir());
                    e.depth() == 0 || !excludes.skips(e.path(), is_dir)
                })
                .build();
            for entry in walker.flatten() {
                let path = entry.path();
                if entry.file_type().is_some_and(|t| t.is_file())
                    && path
                        .extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| MODEL_EXTENSIONS.contains(&x))
                {
                    found.push(path.to_path_buf());
                }
            }
            if found.is_empty() {
                out.empty.push(a.clone());
            }
            found.sort();
            out.files.extend(found.into_iter().map(Ok));
        } else if a.exists() {
            out.files.push(Ok(a.clone()));
        } else {
            out.files.push(Err(Error::Load(LoadError {
                path: a.clone(),
                reason: "no such file or folder".into(),
            })));
        }
    }
    out
}
