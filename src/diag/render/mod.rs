//! Output formats. Each renderer only formats: the findings, their order and
//! their positions are decided before they get here.

mod github;
mod human;
mod json;
pub mod sarif;
mod short;

use std::io::{self, Write};

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

/// Writes every report's diagnostics in `format`. `color` applies to `human` only.
pub fn render(
    format: Format,
    reports: &[FileReport],
    color: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Human => human::render(reports, color, out),
        Format::Short => short::render(reports, out),
        Format::Json => json::render(reports, out),
        Format::Sarif => sarif::render(reports, out),
        Format::Github => github::render(reports, out),
    }
}
