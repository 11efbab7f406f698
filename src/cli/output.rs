//! Writing a report: the one place `lint` and `diff` print what they found
//! and choose the exit code.

use std::collections::BTreeMap;
use std::io::Write;

use nnlint::diag::render::{render, Format, RenderOptions};
use nnlint::diag::Severity;
use nnlint::{FileReport, Report};

/// How a report is written, and what fails the run.
pub(crate) struct Output {
    pub(crate) format: Format,
    pub(crate) render: RenderOptions,
    /// One line per rule that fired instead of the findings (`--statistics`).
    pub(crate) statistics: bool,
    /// The least severity that fails the run (`--fail-on`).
    pub(crate) fail_on: Severity,
    /// Findings do not fail the run (`--exit-zero`).
    pub(crate) exit_zero: bool,
}

/// Writes `report` to standard output and returns the exit code: 2 when
/// `failed` (a file could not be read, the checkpoints do not pair) or the
/// output cannot be written, 1 when a finding not suppressed reaches
/// `fail_on`, and 0 otherwise.
pub(crate) fn write(report: &Report, output: &Output, failed: bool) -> u8 {
    let files = &report.files;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if output.statistics {
        statistics(files, &mut out)
    } else {
        // Checkpoints that do not pair have their findings only.
        let paired = report.diff.as_ref().is_none_or(|d| d.paired);
        render(output.format, report, &output.render, &mut out).and_then(|_| {
            if output.format == Format::Human && !output.render.quiet && !files.is_empty() && paired
            {
                summary(files, &mut out)
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
    let findings = files
        .iter()
        .flat_map(|r| &r.diagnostics)
        .any(|d| d.severity >= output.fail_on && d.suppressed_by.is_none());
    if failed {
        2
    } else if findings && !output.exit_zero {
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
