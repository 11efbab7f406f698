//! The command line's arguments, as clap parses them.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use nnlint::diag::position::Prefer;
use nnlint::diag::render::Format;
use nnlint::diag::Severity;

/// A linter for neural-network graphs stored as ONNX.
///
/// Exit status: 0 when nothing at the --fail-on level or above was found
/// (default: warning), 1 when something was, 2 when a file or configuration
/// could not be read or the command line is wrong.
#[derive(Parser)]
#[command(name = "nnlint", version, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    #[command(flatten)]
    pub(crate) lint: LintArgs,
}

#[derive(clap::Args)]
pub(crate) struct LintArgs {
    /// Model files (.onnx, .onnxtxt), or folders to search for them
    #[arg(value_name = "PATH")]
    pub(crate) paths: Vec<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub(crate) format: Format,

    /// Colour for the human format
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub(crate) color: Color,

    /// Rules to run: names, codes or code prefixes, comma-separated (default: all)
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    pub(crate) select: Vec<String>,

    /// Rules to run in addition to the selected ones
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    pub(crate) extend_select: Vec<String>,

    /// Rules not to run: names, codes or code prefixes, comma-separated
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    pub(crate) ignore: Vec<String>,

    /// Configuration file to use instead of the nearest nnlint.toml or pyproject.toml
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Ignore configuration files
    #[arg(long, conflicts_with = "config")]
    pub(crate) isolated: bool,

    /// Lowest severity that makes the exit status 1
    #[arg(long, value_enum, default_value_t = FailOn::Warning)]
    pub(crate) fail_on: FailOn,

    /// Print the findings only: no summary line
    #[arg(long, short)]
    pub(crate) quiet: bool,

    /// Also print the loss each model's graph was read to compute: its terms,
    /// what each scores and against which input
    #[arg(long, short, conflicts_with = "quiet")]
    pub(crate) verbose: bool,

    /// Exit 0 even when findings were reported (still 2 when a file cannot be read)
    #[arg(long)]
    pub(crate) exit_zero: bool,

    /// Search folders without skipping what .gitignore and .ignore files list
    #[arg(long)]
    pub(crate) no_respect_gitignore: bool,

    /// Print how many findings each rule produced instead of the findings
    #[arg(long)]
    pub(crate) statistics: bool,

    /// Location machine formats report: the Python line that created the node
    /// (when recorded and readable) or the model
    #[arg(long, value_enum, default_value_t = Prefer::Python)]
    pub(crate) location: Prefer,

    /// Also list findings that `# nnlint: ignore` comments suppress
    #[arg(long)]
    pub(crate) show_suppressed: bool,

    /// Whether the weights are still at initialization: decided from them (auto),
    /// or assumed. Rules that assume an untrained model run only on one
    #[arg(long, value_enum, value_name = "STATE")]
    pub(crate) model_state: Option<StateArg>,

    /// Skip the probe: run the static rules only, no forward pass
    #[arg(long, help_heading = "Probe")]
    pub(crate) no_probe: bool,

    /// Skip the backward pass: no gradients, only the forward probe
    #[arg(long, help_heading = "Probe")]
    pub(crate) no_grad: bool,

    /// Seed of the probe's synthesized inputs
    #[arg(long, default_value_t = 0, help_heading = "Probe")]
    pub(crate) seed: u64,

    /// Value of a dynamic dimension, by its name in the model or as INPUT:AXIS (repeatable)
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_dim, help_heading = "Probe")]
    pub(crate) dim: Vec<(String, usize)>,

    /// Feed real data from a .npy file instead of synthesized values (repeatable)
    #[arg(long, value_name = "NAME=FILE", value_parser = parse_input, help_heading = "Probe")]
    pub(crate) input: Vec<(String, PathBuf)>,

    /// Size of a dynamic batch dimension, before the memory budget caps it
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Probe")]
    pub(crate) batch: u64,

    /// MiB the probe's forward pass may use for weights and values
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 2048,
        help_heading = "Probe"
    )]
    pub(crate) probe_memory: usize,

    /// Seconds the probe's passes may take together, estimated before each runs: a pass over it is skipped with a note, and the forward pass shrinks its batch first
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 20.0,
        value_parser = parse_seconds,
        help_heading = "Probe"
    )]
    pub(crate) probe_time: f64,

    /// Adam steps of the one-batch fit (`cannot-overfit`); 0 turns it off. Unset, 200 steps run when their estimated time fits the budget
    #[arg(long, value_name = "N", help_heading = "Probe")]
    pub(crate) overfit_steps: Option<usize>,

    /// Predict each weight layer's first update at this learning rate (`update-ratio`)
    #[arg(long, value_name = "LR", value_parser = parse_lr, help_heading = "Probe")]
    pub(crate) lr: Option<f64>,

    /// The optimizer whose first step `--lr` predicts
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam, requires = "lr", help_heading = "Probe")]
    pub(crate) optimizer: OptimizerArg,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum OptimizerArg {
    Sgd,
    Adam,
}

impl OptimizerArg {
    pub(crate) fn optimizer(self) -> nnlint::probe::Optimizer {
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
pub(crate) struct DiffArgs {
    /// The earlier checkpoint
    pub(crate) before: PathBuf,
    /// The later checkpoint; findings point into it
    pub(crate) after: PathBuf,
    /// How many optimizer steps separate the checkpoints
    #[arg(long, default_value_t = 1.0, value_parser = parse_steps)]
    pub(crate) steps: f64,
    /// Output format (human adds a per-layer table; json adds every number; html draws the updates)
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub(crate) format: Format,
    /// Colour for the human format
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub(crate) color: Color,
    /// Location machine formats report
    #[arg(long, value_enum, default_value_t = Prefer::Python)]
    pub(crate) location: Prefer,
    /// Configuration file to use instead of the nearest one above AFTER
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Ignore configuration files
    #[arg(long, conflicts_with = "config")]
    pub(crate) isolated: bool,
    /// Print the findings only: no table, no summary line
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

fn parse_steps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of steps")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether the human format is coloured: always, never, or when
    /// standard output is a terminal and `NO_COLOR` is unset.
    pub(crate) fn enabled(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StateArg {
    Auto,
    Trained,
    Untrained,
}

impl StateArg {
    pub(crate) fn assumed(self) -> Option<nnlint::graph::ModelState> {
        use nnlint::graph::ModelState;
        match self {
            StateArg::Auto => None,
            StateArg::Trained => Some(ModelState::Trained),
            StateArg::Untrained => Some(ModelState::Untrained),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FailOn {
    Error,
    Warning,
    Note,
}

impl FailOn {
    /// The least severity that fails the run.
    pub(crate) fn severity(self) -> Severity {
        match self {
            FailOn::Error => Severity::Error,
            FailOn::Warning => Severity::Warning,
            FailOn::Note => Severity::Note,
        }
    }
}

#[derive(Clone, Copy, Default, ValueEnum)]
pub(crate) enum ListFormat {
    #[default]
    Text,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
