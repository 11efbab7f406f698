//! The command line: parse arguments, call the library, choose the exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use nnlint::diag::render::{render, Format};
use nnlint::diag::Severity;
use nnlint::onnx::printer::{print_model, Values};
use nnlint::rules::{self, Selection};
use nnlint::{expand_paths, lint_file, Options};

/// A linter for neural-network graphs stored as ONNX.
///
/// Exit status: 0 when nothing at warning level or above was found, 1 when
/// something was, 2 when a file could not be read or the command line is wrong.
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
    /// Model files, or folders to search for *.onnx
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

    /// Rules not to run: names, codes or code prefixes, comma-separated
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    ignore: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// List every rule: name, code, default severity and summary
    Rules,
    /// Print a rule's explanation
    Explain {
        /// A rule name or code
        rule: String,
    },
    /// Print a model in the ONNX textual syntax, the listing diagnostics point into
    Print {
        path: PathBuf,
        /// Print initializer values too
        #[arg(long)]
        values: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Rules) => list_rules(),
        Some(Command::Explain { rule }) => explain(&rule),
        Some(Command::Print { path, values }) => print(&path, values),
        None => lint(cli.lint),
    };
    ExitCode::from(code)
}

fn lint(args: LintArgs) -> u8 {
    if args.paths.is_empty() {
        eprintln!("error: no model given\n\nUsage: nnlint [OPTIONS] <PATH>...\n\nFor more information, try '--help'.");
        return 2;
    }
    let selection = match Selection::new(&args.select, &args.ignore) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let options = Options { selection };
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut failed = false;
    let mut reports = Vec::new();
    for path in expand_paths(&args.paths) {
        match path.and_then(|p| lint_file(&p, &options)) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = render(args.format, &reports, color, &mut out).and_then(|_| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write output: {e}");
        }
        return 2;
    }
    let findings = reports
        .iter()
        .flat_map(|r| &r.diagnostics)
        .any(|d| d.severity >= Severity::Warning);
    if failed {
        2
    } else if findings {
        1
    } else {
        0
    }
}

fn list_rules() -> u8 {
    for r in rules::all() {
        let m = r.meta();
        println!(
            "{:<6} {:<28} {:<8} {}",
            m.code, m.name, m.severity, m.summary
        );
    }
    0
}

fn explain(rule: &str) -> u8 {
    match rules::find(rule) {
        Some(r) => {
            let m = r.meta();
            println!("{} ({}, {} by default)\n", m.code, m.name, m.severity);
            print!("{}", m.explanation);
            0
        }
        None => {
            eprintln!("error: no rule named `{rule}` (see `nnlint rules`)");
            2
        }
    }
}

fn print(path: &std::path::Path, values: bool) -> u8 {
    match nnlint::onnx::load(path) {
        Ok(m) => {
            let mode = if values { Values::Full } else { Values::Elide };
            print!("{}", print_model(&m.proto, mode).text);
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
