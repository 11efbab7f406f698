//! nnlint: a linter for neural-network graphs stored as ONNX.
//!
//! The data flows one way: [`onnx`] reads a model (`read` picks binary or
//! text), [`graph`] builds the petgraph view rules query, [`rules`] and
//! [`probe`] produce [`diag::Diagnostic`]s and measurements (`measure`), the
//! run's [`diag::report::Report`] holds them with what reproduces the run,
//! and [`diag::render`] formats it. No module imports this one: the front
//! door only wires them together.

pub mod config;
pub mod diag;
pub mod diff;
pub mod graph;
mod measure;
pub mod onnx;
mod options;
mod parallel;
pub mod probe;
pub mod python;
mod read;
pub mod rules;

pub use options::{ConfigSource, Error, Options, Settings};
pub use read::{listing, read_model, Read};

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use diag::position::{Sources, MODEL};
use diag::Diagnostic;
use onnx::LoadError;

pub use diag::report::{FileReport, Report};

/// The report of a run: its files, and the metadata of every rule.
pub fn report(run: diag::report::Run, files: Vec<FileReport>) -> Report {
    Report::new(run, files, rules::infos())
}

/// What reproduces a lint run with `options`, given as `arguments`.
pub fn run_record(
    command: &'static str,
    arguments: Vec<String>,
    options: &Options,
) -> diag::report::Run {
    let p = &options.probe;
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let on = |b: bool| if b { "on" } else { "off" }.to_string();
    let mut o = std::collections::BTreeMap::new();
    o.insert("select".to_string(), list(&options.select));
    o.insert("extend-select".to_string(), list(&options.extend_select));
    o.insert("ignore".to_string(), list(&options.ignore));
    o.insert(
        "model-state".to_string(),
        match options.model_state {
            Some(Some(s)) => s.as_str().to_string(),
            _ => "auto".to_string(),
        },
    );
    o.insert("probe".to_string(), on(p.enabled));
    o.insert("gradients".to_string(), on(p.gradients));
    o.insert("batch".to_string(), p.batch.to_string());
    o.insert("probe-memory".to_string(), format!("{} MiB", p.memory_mib));
    o.insert("probe-time".to_string(), format!("{} s", p.seconds));
    let pairs = |m: Vec<String>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.join(",")
        }
    };
    o.insert(
        "dim".to_string(),
        pairs(p.dims.iter().map(|(k, v)| format!("{k}={v}")).collect()),
    );
    o.insert(
        "input".to_string(),
        pairs(
            p.files
                .iter()
                .map(|(k, v)| format!("{k}={}", v.display()))
                .collect(),
        ),
    );
    o.insert(
        "overfit-steps".to_string(),
        p.fit_steps
            .map_or("rule default".to_string(), |s| s.to_string()),
    );
    if let Some(step) = &p.first_step {
        o.insert("lr".to_string(), step.lr.to_string());
        o.insert(
            "optimizer".to_string(),
            step.optimizer.name().to_lowercase(),
        );
    }
    diag::report::Run {
        tool: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        command,
        arguments,
        seed: p.seed,
        options: o,
    }
}

/// Records the sha256 of `model`'s file and of each of its data files in
/// `report`; a file that cannot be read meanwhile is left out (its weights
/// already failed the lint, or will be read by nobody).
pub fn fingerprint(model: &onnx::Model, report: &mut FileReport) {
    report.sha256 = sha256(&model.path).ok();
    report.data = model
        .data_files()
        .into_iter()
        .filter_map(|(location, file)| {
            Some(diag::report::DataFile {
                location,
                sha256: sha256(&file).ok()?,
            })
        })
        .collect();
}

/// The sha256 of a file, in hex.
pub fn sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// File extensions nnlint lints when given a folder.
pub const MODEL_EXTENSIONS: &[&str] = &["onnx", "onnxtxt"];

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
            if settings.fingerprint {
                fingerprint(&model, &mut report);
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
        Read::Syntax(report) => Ok(*report),
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
    let measurements = match graphs.first() {
        Some(main) if valid => probe_pass(model, main, settings, &facts, &mut diagnostics),
        _ => None,
    };
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
        failed: false,
        coverage: Some(coverage),
        measurements,
        loss: graphs.first().map(loss_report),
        ..FileReport::new(path, sources, diagnostics)
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

/// Runs the probe on the main graph, appends what the measuring rules find,
/// and returns what it measured.
///
/// A measured finding on a node its rule already reported statically becomes
/// a note on that finding: one finding per problem.
fn probe_pass(
    model: &onnx::Model,
    main: &graph::Graph<'_>,
    settings: &Settings,
    facts: &rules::Facts,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<diag::report::Measurements> {
    let measuring: Vec<&dyn rules::Rule> = rules::all()
        .filter(|r| r.measures() && settings.selection.enabled(r.meta()))
        .filter(|r| {
            facts.verdict(r.meta().premises, rules::Half::Measured) != Some(rules::Unmet::Skip)
        })
        .collect();
    if !settings.probe.enabled || measuring.is_empty() {
        return None;
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
            return None;
        }
    };
    if let Some(Err(skip)) = &probe.gradients {
        skipped(
            diagnostics,
            rules::probe_skipped::backward_diagnostic(main, skip),
        );
    }
    match &probe.fit {
        Some(Err(skip)) => skipped(
            diagnostics,
            rules::probe_skipped::fit_diagnostic(main, skip),
        ),
        Some(Ok(f)) => {
            if let Some(asked) = f.cut_short() {
                skipped(
                    diagnostics,
                    rules::probe_skipped::fit_cut_diagnostic(main, f, asked, fit.budget),
                );
            }
        }
        None => {}
    }
    for rule in measuring {
        let cx = settings.check(main, rule.meta(), facts);
        diagnostics.retain(|d| d.rule != rule.meta().name || !rule.refuted(&cx, &probe, d));
        let mut found = Vec::new();
        rule.probe(&cx, &probe, &mut found);
        settings.apply_severity(rule.meta(), &mut found);
        demote(facts, rule.meta(), rules::Half::Measured, &mut found);
        let mut index = Concerning::of(diagnostics);
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
            let first = index
                .candidates(&d)
                .into_iter()
                .filter(|&i| explains(&diagnostics[i]) && same(&diagnostics[i]))
                .min();
            match first.map(|i| &mut diagnostics[i]) {
                Some(s) => {
                    // The rule's own measurement that judges more severely
                    // than its static half (a note on the weights as
                    // written, a warning on the values they give) raises the
                    // finding; another rule's finding it absorbs does not.
                    if s.rule == d.rule {
                        s.severity = s.severity.max(d.severity);
                    }
                    s.notes
                        .push(format!("the probe measured it: {}", d.message))
                }
                None => {
                    index.add(diagnostics.len(), &d);
                    diagnostics.push(d);
                }
            }
        }
    }
    Some(measure::of(&probe, main, settings))
}

/// Findings by the nodes they concern (their node and the nodes they span)
/// and, for those about no node, by their primary span: where a measured
/// finding looks for the finding it adds to, without scanning every finding
/// for each measurement (a 100,000-node chain measures 50,000 dead layers).
#[derive(Default)]
struct Concerning {
    by_node: rustc_hash::FxHashMap<String, Vec<usize>>,
    by_span: rustc_hash::FxHashMap<(usize, usize, usize), Vec<usize>>,
}

impl Concerning {
    fn of(diagnostics: &[Diagnostic]) -> Concerning {
        let mut index = Concerning::default();
        for (i, d) in diagnostics.iter().enumerate() {
            index.add(i, d);
        }
        index
    }

    fn span(d: &Diagnostic) -> (usize, usize, usize) {
        let (file, span) = d.primary_span();
        (file, span.start, span.end)
    }

    fn add(&mut self, i: usize, d: &Diagnostic) {
        for name in d.node.iter().chain(&d.spans_nodes) {
            self.by_node.entry(name.clone()).or_default().push(i);
        }
        if d.node.is_none() {
            self.by_span.entry(Self::span(d)).or_default().push(i);
        }
    }

    /// The findings that may concern what `d` does: a superset of those
    /// `same` in [`probe_pass`] accepts.
    fn candidates(&self, d: &Diagnostic) -> Vec<usize> {
        match &d.node {
            Some(n) => std::iter::once(n)
                .chain(&d.spans_nodes)
                .filter_map(|n| self.by_node.get(n))
                .flatten()
                .copied()
                .collect(),
            None => self
                .by_span
                .get(&Self::span(d))
                .cloned()
                .unwrap_or_default(),
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

/// The loss the rules read in `graph`, for `--verbose` and the json report.
fn loss_report(graph: &graph::Graph<'_>) -> diag::report::LossReport {
    let loss = graph.loss();
    let name = |t: graph::TensorId| graph.tensor_name(t).to_string();
    diag::report::LossReport {
        output: loss.total.map(name),
        terms: loss
            .terms
            .iter()
            .map(|t| diag::report::LossTermReport {
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
