//! Output formats. Each renderer only formats: the findings, their order and
//! their positions are decided before they get here.

mod github;
pub mod human;
pub mod json;
pub mod sarif;
mod short;

use std::io::{self, Write};

use crate::diag::position::Prefer;
use crate::FileReport;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// rustc-style diagnostics with source snippets
    Human,
    /// one `path:line:col: severity[code]: message` line per finding
    Short,
    /// one JSON array of findings
    Json,
    /// SARIF 2.1.0, for GitHub code scanning
    Sarif,
    /// GitHub Actions annotations
    Github,
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
}

/// Writes every report's diagnostics in `format`.
pub fn render(
    format: Format,
    reports: &[FileReport],
    options: &RenderOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Human => human::render(reports, options, out),
        Format::Short => short::render(reports, options.prefer, out),
        Format::Json => json::render(reports, options.prefer, out),
        Format::Sarif => sarif::render(reports, options.prefer, out),
        Format::Github => github::render(reports, options.prefer, out),
    }
}
