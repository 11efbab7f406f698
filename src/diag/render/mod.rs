//! Output formats. Each renderer only formats: the findings, their order and
//! their positions are decided before they get here.

mod human;
mod json;
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
    }
}
