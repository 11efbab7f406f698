//! rustc-style diagnostics through codespan-reporting.

use std::io::{self, Write};

use codespan_reporting::diagnostic as cs;
use codespan_reporting::term::{self, termcolor, Config, Styles, StylesWriter};

use crate::diag::position::clamp;
use crate::diag::{Diagnostic, LabelStyle, Severity};
use crate::FileReport;

pub fn render(reports: &[FileReport], color: bool, out: &mut dyn Write) -> io::Result<()> {
    let config = Config::default();
    let styles = Styles::default();
    for r in reports {
        for d in &r.diagnostics {
            let cd = to_codespan(r, d);
            let result = if color {
                let mut w = StylesWriter::new(termcolor::Ansi::new(&mut *out), &styles);
                term::emit_to_write_style(&mut w, &config, &r.file, &cd)
            } else {
                term::emit_to_io_write(&mut *out, &config, &r.file, &cd)
            };
            result.map_err(|e| io::Error::other(e.to_string()))?;
        }
    }
    Ok(())
}

fn to_codespan(r: &FileReport, d: &Diagnostic) -> cs::Diagnostic<()> {
    let severity = match d.severity {
        Severity::Error => cs::Severity::Error,
        Severity::Warning => cs::Severity::Warning,
        Severity::Note => cs::Severity::Note,
    };
    let labels = d
        .labels
        .iter()
        .map(|l| {
            let span = clamp(&r.file, l.span.start)..clamp(&r.file, l.span.end);
            let label = match l.style {
                LabelStyle::Primary => cs::Label::primary((), span),
                LabelStyle::Secondary => cs::Label::secondary((), span),
            };
            label.with_message(&l.message)
        })
        .collect();
    let mut notes: Vec<String> = d.notes.iter().map(|n| format!("note: {n}")).collect();
    notes.extend(d.help.iter().map(|h| format!("help: {h}")));
    notes.push(format!("note: run `nnlint explain {}` for details", d.rule));
    cs::Diagnostic::new(severity)
        .with_code(d.code)
        .with_message(&d.message)
        .with_labels(labels)
        .with_notes(notes)
}
