//! The command line: parse arguments, call the library, choose the exit code.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use nnlint::diag::position::Prefer;
use nnlint::diag::render::{render, sarif, Format, RenderOptions};
use nnlint::diag::Severity;
use nnlint::onnx::printer::{print_model, Values};
use nnlint::rules::{self, RuleMeta};
use nnlint::{config, expand_paths, lint_file, ConfigSource, FileReport, Options};

/// A linter for neural-network graphs stored as ONNX.
///
/// Exit status: 0 when nothing at the --fail-on level or above was found
/// (default: warning), 1 when something was, 2 when a file or configuration
/// could not be read or the command line is wrong.
#[derive(Parser)]
#[command(name = "nnlint", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    lint: LintArgs,
}

#[derive(clap::Args)]
struct LintArgs {
    /// Model files (.onnx, .onnxtxt), or folders to search for them
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// Colour for the human format
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,

    /// Rules to run: names, codes or code prefixes, comma-separated (default: all)
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    select: Vec<String>,

    /// Rules to run in addition to the selected ones
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    extend_select: Vec<String>,

    /// Rules not to run: names, codes or code prefixes, comma-separated
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    ignore: Vec<String>,

    /// Configuration file to use instead of the nearest nnlint.toml or pyproject.toml
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Ignore configuration files
    #[arg(long, conflicts_with = "config")]
    isolated: bool,

    /// Lowest severity that makes the exit status 1
    #[arg(long, value_enum, default_value_t = FailOn::Warning)]
    fail_on: FailOn,

    /// Print the findings only: no summary line
    #[arg(long, short)]
    quiet: bool,

    /// Also print the loss each model's graph was read to compute: its terms,
    /// what each scores and against which input
    #[arg(long, short, conflicts_with = "quiet")]
    verbose: bool,

    /// Exit 0 even when findings were reported (still 2 when a file cannot be read)
    #[arg(long)]
    exit_zero: bool,

    /// Search folders without skipping what .gitignore and .ignore files list
    #[arg(long)]
    no_respect_gitignore: bool,

    /// Print how many findings each rule produced instead of the findings
    #[arg(long)]
    statistics: bool,

    /// Location machine formats report: the Python line that created the node
    /// (when recorded and readable) or the model
    #[arg(long, value_enum, default_value_t = Prefer::Python)]
    location: Prefer,

    /// Also list findings that `# nnlint: ignore` comments suppress
    #[arg(long)]
    show_suppressed: bool,

    /// Whether the weights are still at initialization: decided from them (auto),
    /// or assumed. Rules that assume an untrained model run only on one
    #[arg(long, value_enum, value_name = "STATE")]
    model_state: Option<StateArg>,

    /// Skip the probe: run the static rules only, no forward pass
    #[arg(long, help_heading = "Probe")]
    no_probe: bool,

    /// Skip the backward pass: no gradients, only the forward probe
    #[arg(long, help_heading = "Probe")]
    no_grad: bool,

    /// Seed of the probe's synthesized inputs
    #[arg(long, default_value_t = 0, help_heading = "Probe")]
    seed: u64,

    /// Value of a dynamic dimension, by its name in the model or as INPUT:AXIS (repeatable)
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_dim, help_heading = "Probe")]
    dim: Vec<(String, usize)>,

    /// Feed real data from a .npy file instead of synthesized values (repeatable)
    #[arg(long, value_name = "NAME=FILE", value_parser = parse_input, help_heading = "Probe")]
    input: Vec<(String, PathBuf)>,

    /// Size of a dynamic batch dimension, before the memory budget caps it
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Probe")]
    batch: u64,

    /// MiB the probe's forward pass may use for weights and values
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 2048,
        help_heading = "Probe"
    )]
    probe_memory: usize,

    /// Seconds the probe's passes may take together, estimated before each runs: a pass over it is skipped with a note, and the forward pass shrinks its batch first
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 20.0,
        value_parser = parse_seconds,
        help_heading = "Probe"
    )]
    probe_time: f64,

    /// Adam steps of the one-batch fit (`cannot-overfit`); 0 turns it off. Unset, 200 steps run when their estimated time fits the budget
    #[arg(long, value_name = "N", help_heading = "Probe")]
    overfit_steps: Option<usize>,

    /// Predict each weight layer's first update at this learning rate (`update-ratio`)
    #[arg(long, value_name = "LR", value_parser = parse_lr, help_heading = "Probe")]
    lr: Option<f64>,

    /// The optimizer whose first step `--lr` predicts
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam, requires = "lr", help_heading = "Probe")]
    optimizer: OptimizerArg,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum OptimizerArg {
    Sgd,
    Adam,
}

impl OptimizerArg {
    fn optimizer(self) -> nnlint::probe::Optimizer {
        match self {
            OptimizerArg::Sgd => nnlint::probe::Optimizer::Sgd,
            OptimizerArg::Adam => nnlint::probe::Optimizer::Adam,
        }
    }
}

fn parse_lr(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive learning rate")),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    match value.trim().parse::<usize>() {
        Ok(v) if v > 0 && !name.is_empty() => Ok((name.to_string(), v)),
        _ => Err(format!("`{s}`: the value must be a positive integer")),
    }
}

fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("`{s}` is not NAME=FILE")),
    }
}

#[derive(clap::Args)]
struct DiffArgs {
    /// The earlier checkpoint
    before: PathBuf,
    /// The later checkpoint; findings point into it
    after: PathBuf,
    /// How many optimizer steps separate the checkpoints
    #[arg(long, default_value_t = 1.0, value_parser = parse_steps)]
    steps: f64,
    /// Output format (human adds a per-layer table; json adds every number; html draws the updates)
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Colour for the human format
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Location machine formats report
    #[arg(long, value_enum, default_value_t = Prefer::Python)]
    location: Prefer,
    /// Configuration file to use instead of the nearest one above AFTER
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ignore configuration files
    #[arg(long, conflicts_with = "config")]
    isolated: bool,
    /// Print the findings only: no table, no summary line
    #[arg(long, short)]
    quiet: bool,
}

fn parse_steps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of steps")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum)]
enum StateArg {
    Auto,
    Trained,
    Untrained,
}

impl StateArg {
    fn assumed(self) -> Option<nnlint::graph::ModelState> {
        use nnlint::graph::ModelState;
        match self {
            StateArg::Auto => None,
            StateArg::Trained => Some(ModelState::Trained),
            StateArg::Untrained => Some(ModelState::Untrained),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum FailOn {
    Error,
    Warning,
    Note,
}

#[derive(Clone, Copy, Default, ValueEnum)]
enum ListFormat {
    #[default]
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// List every rule: code, name, default severity and summary
    Rules {
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Print a rule's explanation
    Explain {
        /// A rule name or code
        rule: String,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Compare two checkpoints of one model: weights that never changed, steps too small or too large
    Diff(DiffArgs),
    /// Print a model in the ONNX textual syntax, the listing diagnostics point into
    Print {
        path: PathBuf,
        /// Print initializer values too
        #[arg(long)]
        values: bool,
    },
}

/// A model decodes into hundreds of thousands of small allocations (names,
/// attributes, shapes). mimalloc serves them from thread-local pages and
/// faults in fewer fresh ones: the static pass on a 100k-node chain takes
/// 0.19 s with it and 0.31 s with glibc's allocator (median of 11 runs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_huge_pages();
    pin_candle_threads();
    let cli = Cli::parse();
    // As given, for the reports that record what reproduces a run.
    let arguments: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = match cli.command {
        Some(Command::Rules { format }) => list_rules(format),
        Some(Command::Explain { rule, format }) => explain(&rule, format),
        Some(Command::Print { path, values }) => print(&path, values),
        Some(Command::Diff(args)) => {
            let after_command = arguments.iter().skip_while(|a| *a != "diff").skip(1);
            diff(args, after_command.cloned().collect())
        }
        None => lint(cli.lint, arguments),
    };
    ExitCode::from(code)
}

/// candle sizes each matrix product's threads from `RAYON_NUM_THREADS`,
/// or, when that is unset, from what it finds on every product: on Linux a
/// `CANDLE_CPU_MASK`, the cores of highest `cpu_capacity` when they differ,
/// and otherwise the physical core count, which it finds by parsing
/// `/proc/cpuinfo` again each time: over a quarter of a one-batch fit's time,
/// and an eighth of a large graph's run even on machines that report equal
/// capacities. Asking candle once, here, before any thread exists, and
/// setting the variable to its answer keeps candle's choice and drops the
/// parsing. A mask (which candle caches) or a variable already set is left
/// alone.
fn pin_candle_threads() {
    let unset = |v| std::env::var_os(v).is_none();
    if unset("RAYON_NUM_THREADS") && unset("CANDLE_CPU_MASK") {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// mimalloc asks for transparent huge pages on its arenas, and the kernel
/// zeroes each 2 MiB page whole on its first touch, however little of it is
/// used. Measured after another process had freed its memory (the paired
/// runs of the scaling benchmark, a pre-commit hook after other hooks): the
/// static pass on a 100k-node chain took 0.49 s wall with 0.25 s of it in
/// the kernel, and 0.42 s with 0.10 s without huge pages; a default run of
/// timm's EfficientNet-B0 1.00 s against 0.87 s, and 386 MiB of peak memory
/// against 356 MiB. Disabled for this process only, before its threads start.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes
    // no memory the program holds; a kernel without it returns an error,
    // which changes nothing either.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn use_color(c: Color) -> bool {
    match c {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

fn config_source(isolated: bool, path: Option<&PathBuf>) -> Result<ConfigSource, u8> {
    if isolated {
        return Ok(ConfigSource::None);
    }
    match path {
        Some(p) => config::load(p)
            .map(|c| ConfigSource::Fixed(Arc::new(c)))
            .map_err(|e| {
                eprintln!("error: {e}");
                2
            }),
        None => Ok(ConfigSource::Discover),
    }
}

fn diff(args: DiffArgs, arguments: Vec<String>) -> u8 {
    let config = match config_source(args.isolated, args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config = match config {
        ConfigSource::Fixed(c) => Some((*c).clone()),
        ConfigSource::None => None,
        ConfigSource::Discover => match config::discover(&args.after) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
    };
    let options = Options {
        fingerprint: matches!(args.format, Format::Html | Format::JsonReport),
        ..Default::default()
    };
    let settings = match nnlint::Settings::new(&options, config.as_ref(), &args.after) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let result = match nnlint::diff::diff_files(&args.before, &args.after, &settings, args.steps) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let band = |name: &str| settings.option(&nnlint::rules::update_ratio::META, name);
    let mut run = nnlint::run_record("diff", arguments, &Options::default());
    run.options = [("steps".to_string(), args.steps.to_string())].into();
    let mut report = nnlint::report(run, vec![result.report]);
    report.diff = Some(nnlint::diag::report::DiffTable {
        steps: args.steps,
        band: (band("low"), band("high")),
        layers: result.layers,
    });
    let reports = &report.files;
    let layers = report.diff.as_ref().map_or(&[][..], |d| &d.layers);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match args.format {
        Format::Json => {
            let value = serde_json::json!({
                "steps": args.steps,
                "findings": nnlint::diag::render::json::findings(reports, args.location),
                "layers": layers,
            });
            serde_json::to_writer_pretty(&mut out, &value)
                .map_err(std::io::Error::from)
                .and_then(|_| writeln!(out))
        }
        format => {
            let options = RenderOptions {
                color: use_color(args.color),
                prefer: args.location,
                quiet: args.quiet,
                verbose: false,
            };
            render(format, &report, &options, &mut out).and_then(|_| {
                if format != Format::Human || args.quiet || result.mismatch {
                    return Ok(());
                }
                if !reports[0].diagnostics.is_empty() {
                    writeln!(out)?;
                }
                write!(
                    out,
                    "{}",
                    nnlint::diff::table(layers, args.steps, band("low"), band("high"))
                )?;
                summary(reports, &mut out)
            })
        }
    };
    if let Err(e) = written.and_then(|_| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write output: {e}");
        }
        return 2;
    }
    if result.mismatch {
        2
    } else if reports[0]
        .diagnostics
        .iter()
        .any(|d| d.severity >= Severity::Warning && d.suppressed_by.is_none())
    {
        1
    } else {
        0
    }
}

fn lint(args: LintArgs, arguments: Vec<String>) -> u8 {
    if args.paths.is_empty() {
        eprintln!("error: no model given\n\nUsage: nnlint [OPTIONS] <PATH>...\n\nFor more information, try '--help'.");
        return 2;
    }
    let config = match config_source(args.isolated, args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let options = Options {
        select: args.select,
        extend_select: args.extend_select,
        ignore: args.ignore,
        config,
        show_suppressed: args.show_suppressed,
        model_state: args.model_state.map(StateArg::assumed),
        fingerprint: matches!(args.format, Format::Html | Format::JsonReport),
        probe: nnlint::probe::ProbeOptions {
            enabled: !args.no_probe,
            gradients: !args.no_grad,
            seed: args.seed,
            dims: args.dim.into_iter().collect(),
            files: args.input.into_iter().collect(),
            batch: args.batch as usize,
            memory_mib: args.probe_memory,
            seconds: args.probe_time,
            progress: std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
            fit_steps: args.overfit_steps,
            first_step: args.lr.map(|lr| nnlint::probe::FirstStep {
                optimizer: args.optimizer.optimizer(),
                lr,
            }),
            piece_nodes: nnlint::probe::segment::NODES,
        },
    };
    // Selectors from the command line are checked once, before any file is read.
    if let Err(e) = nnlint::Settings::new(&options, None, std::path::Path::new("")) {
        eprintln!("error: {e}");
        return 2;
    }
    let color = use_color(args.color);
    let mut failed = false;
    let mut reports = Vec::new();
    let walk = nnlint::Walk {
        respect_gitignore: !args.no_respect_gitignore,
    };
    let expanded = expand_paths(&args.paths, &options.config, walk);
    for dir in &expanded.empty {
        eprintln!(
            "warning: no models (.onnx, .onnxtxt) found in {}",
            dir.display()
        );
    }
    for path in expanded.files {
        match path.and_then(|p| lint_file(&p, &options)) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    // A name no model has is a typo: a usage error, before any output.
    let names: Vec<_> = reports.iter().filter_map(|r| r.inputs.as_ref()).collect();
    let given = nnlint::probe::inputs::InputOptions {
        dims: options.probe.dims.clone(),
        files: options.probe.files.clone(),
        ..Default::default()
    };
    if !names.is_empty() {
        if let Err(e) = given.check(&names) {
            eprintln!("error: {e}");
            return 2;
        }
    }
    failed |= reports.iter().any(|r| r.failed);
    for e in reports.iter().filter_map(|r| r.unreadable.as_ref()) {
        eprintln!("error: {e}");
    }
    let report = nnlint::report(nnlint::run_record("lint", arguments, &options), reports);
    let reports = &report.files;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if args.statistics {
        statistics(reports, &mut out)
    } else {
        let render_options = RenderOptions {
            color,
            prefer: args.location,
            quiet: args.quiet,
            verbose: args.verbose,
        };
        render(args.format, &report, &render_options, &mut out).and_then(|_| {
            if args.format == Format::Human && !args.quiet && !reports.is_empty() {
                summary(reports, &mut out)
            } else {
                Ok(())
            }
        })
    };
    if let Err(e) = written.and_then(|_| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write output: {e}");
        }
        return 2;
    }
    let threshold = match args.fail_on {
        FailOn::Error => Severity::Error,
        FailOn::Warning => Severity::Warning,
        FailOn::Note => Severity::Note,
    };
    let findings = reports
        .iter()
        .flat_map(|r| &r.diagnostics)
        .any(|d| d.severity >= threshold && d.suppressed_by.is_none());
    if failed {
        2
    } else if findings && !args.exit_zero {
        1
    } else {
        0
    }
}

/// `nnlint: 1 error, 2 warnings` after human output with findings, or
/// `All checks passed!` as ruff says it.
fn summary(reports: &[FileReport], out: &mut dyn Write) -> std::io::Result<()> {
    let mut counts = [0usize; 3];
    let mut suppressed = 0;
    for d in reports.iter().flat_map(|r| &r.diagnostics) {
        if d.suppressed_by.is_some() {
            suppressed += 1;
        } else {
            counts[d.severity as usize] += 1;
        }
    }
    let [notes, warnings, errors] = counts;
    let mut parts = Vec::new();
    for (n, word) in [(errors, "error"), (warnings, "warning"), (notes, "note")] {
        if n > 0 {
            parts.push(format!("{n} {word}{}", if n == 1 { "" } else { "s" }));
        }
    }
    if suppressed > 0 {
        parts.push(format!("{suppressed} suppressed"));
    }
    if parts.is_empty() {
        writeln!(out, "All checks passed!")?;
    } else {
        writeln!(out, "nnlint: {}", parts.join(", "))?;
    }
    Ok(())
}

/// One line per rule that fired: count, code, name, like `ruff --statistics`.
fn statistics(reports: &[FileReport], out: &mut dyn Write) -> std::io::Result<()> {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for d in reports.iter().flat_map(|r| &r.diagnostics) {
        *counts.entry((d.code, d.rule)).or_default() += 1;
    }
    for ((code, rule), n) in counts {
        writeln!(out, "{n:>5}  {code}  {rule}")?;
    }
    Ok(())
}

fn rule_json(m: &RuleMeta) -> serde_json::Value {
    serde_json::json!({
        "name": m.name,
        "code": m.code,
        "severity": m.severity,
        "category": m.category,
        "summary": m.summary,
        "options": m.options.iter().map(|o| serde_json::json!({
            "name": o.name, "default": o.default, "summary": o.summary,
        })).collect::<Vec<_>>(),
        "premises": m.premises.iter().map(|r| serde_json::json!({
            "premise": r.premise, "describe": r.premise.describe(),
            "holds_when": r.premise.holds_when(), "half": r.half, "unmet": r.unmet,
        })).collect::<Vec<_>>(),
        "explanation": m.explanation,
        "help_uri": sarif::help_uri(m.name),
    })
}

/// A rule's premises, one line each, for `nnlint explain`.
fn premise_lines(m: &RuleMeta) -> String {
    use nnlint::rules::{Half, Unmet};
    let mut out = String::new();
    for r in m.premises {
        let half = match (r.half, m.pass) {
            (Half::Static, rules::Pass::Graph)
                if m.premises.iter().any(|o| o.half != Half::Static) =>
            {
                " (static half)"
            }
            (Half::Measured, rules::Pass::Graph) => " (measured half)",
            _ => "",
        };
        let unmet = match r.unmet {
            Unmet::Skip => "otherwise it does not run",
            Unmet::Note => "otherwise its findings are notes",
            Unmet::Blind => {
                "otherwise it sees only part of what it looks for, and the summary says so"
            }
        };
        out.push_str(&format!(
            "- {}{half}: {unmet}\n  holds when {}\n",
            r.premise.describe(),
            r.premise.holds_when()
        ));
    }
    out
}

fn list_rules(format: ListFormat) -> u8 {
    match format {
        ListFormat::Text => {
            for r in rules::all() {
                let m = r.meta();
                let premises: Vec<String> = m
                    .premises
                    .iter()
                    .map(|r| {
                        serde_json::to_value(r.premise)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default()
                    })
                    .collect();
                let premises = if premises.is_empty() {
                    String::new()
                } else {
                    format!(" [assumes: {}]", premises.join(", "))
                };
                println!(
                    "{:<6} {:<28} {:<8} {}{premises}",
                    m.code, m.name, m.severity, m.summary
                );
            }
        }
        ListFormat::Json => {
            let all: Vec<_> = rules::all().map(|r| rule_json(r.meta())).collect();
            println!("{}", serde_json::Value::from(all));
        }
    }
    0
}

fn explain(rule: &str, format: ListFormat) -> u8 {
    match (rules::find(rule), format) {
        (Some(r), ListFormat::Text) => {
            let m = r.meta();
            println!("{} ({}, {} by default)\n", m.code, m.name, m.severity);
            if m.premises.is_empty() {
                println!("Premises: none; it runs on every model, trained or not\n");
            } else {
                println!("Premises:\n{}", premise_lines(m));
            }
            print!("{}", m.explanation);
            0
        }
        (Some(r), ListFormat::Json) => {
            println!("{}", rule_json(r.meta()));
            0
        }
        (None, _) => {
            eprintln!(
                "error: no rule named `{rule}`{} (see `nnlint rules`)",
                rules::suggest(rule)
            );
            2
        }
    }
}

fn print(path: &std::path::Path, values: bool) -> u8 {
    match nnlint::read_model(path) {
        Ok(nnlint::Read::Model(read)) => {
            let mode = if values { Values::Full } else { Values::Elide };
            print!("{}", print_model(&read.0.proto, mode).text);
            // The listing is whole without the values; say which could not be read.
            match read.0.unreadable {
                Some(reason) => {
                    eprintln!("error: {}: {reason}", path.display());
                    2
                }
                None => 0,
            }
        }
        Ok(nnlint::Read::Syntax(report)) => {
            let options = RenderOptions {
                color: use_color(Color::Auto),
                prefer: Prefer::Model,
                quiet: true,
                verbose: false,
            };
            let report = nnlint::report(Default::default(), vec![*report]);
            let _ = render(Format::Human, &report, &options, &mut std::io::stderr());
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
