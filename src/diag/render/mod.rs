//! Output formats. Each renderer only formats: the findings, their order and
//! their positions are decided before they get here.

pub mod diff;
mod github;
pub mod html;
pub mod human;
pub mod json;
pub mod json_report;
pub mod sarif;
mod short;

use std::io::{self, Write};

use crate::diag::position::Prefer;
use crate::diag::report::Report;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// rustc-style diagnostics with source snippets
    Human,
    /// one `path:line:col: severity[code]: message` line per finding
    Short,
    /// one JSON array of findings
    Json,
    /// one JSON object: the run, each file's findings and measurements
    JsonReport,
    /// SARIF 2.1.0, for GitHub code scanning
    Sarif,
    /// GitHub Actions annotations
    Github,
    /// one self-contained HTML page: findings, depth profile, loss, diff
    Html,
}

/// How to render, beyond the format.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions {
    /// ANSI colour, for `human` only.
    pub color: bool,
    /// Which location `short`, `json`, `sarif` and `github` report first.
    pub prefer: Prefer,
    /// Leave out `human`'s lines on each model's state and on what its
    /// rules could not check (`--quiet`).
    pub quiet: bool,
    /// Also print, per model, the loss its graph was read to compute (`--verbose`).
    pub verbose: bool,
}

/// Writes the run's report in `format`.
pub fn render(
    format: Format,
    report: &Report,
    options: &RenderOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    let files = &report.files;
    match format {
        Format::Human => {
            human::render(files, options, out)?;
            match &report.diff {
                Some(d) if d.paired && !options.quiet => diff::render_human(report, d, out),
                _ => Ok(()),
            }
        }
        Format::Short => short::render(files, options.prefer, out),
        Format::Json => match &report.diff {
            Some(d) => diff::render_json(report, d, options.prefer, out),
            None => json::render(files, options.prefer, out),
        },
        Format::JsonReport => json_report::render(report, options.prefer, out),
        Format::Sarif => sarif::render(report, options.prefer, out),
        Format::Github => github::render(files, options.prefer, out),
        Format::Html => html::render(report, options.prefer, out),
    }
}
