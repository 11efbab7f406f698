//! One JSON array of findings, every span with its byte and line/column range.

use std::io::{self, Write};

use serde::Serialize;

use crate::diag::position::{locate, Location};
use crate::diag::{LabelStyle, Severity};
use crate::FileReport;

#[derive(Serialize)]
struct Finding<'a> {
    file: &'a str,
    rule: &'a str,
    code: &'a str,
    severity: Severity,
    message: &'a str,
    node: Option<&'a str>,
    #[serde(flatten)]
    location: Location,
    notes: &'a [String],
    help: &'a [String],
    labels: Vec<JsonLabel<'a>>,
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    primary: bool,
    message: &'a str,
    byte_start: usize,
    byte_end: usize,
    #[serde(flatten)]
    location: Location,
}

pub fn render(reports: &[FileReport], out: &mut dyn Write) -> io::Result<()> {
    let findings: Vec<Finding> = reports
        .iter()
        .flat_map(|r| {
            r.diagnostics.iter().map(move |d| Finding {
                file: &r.path,
                rule: d.rule,
                code: d.code,
                severity: d.severity,
                message: &d.message,
                node: d.node.as_deref(),
                location: locate(&r.file, &d.primary_span()),
                notes: &d.notes,
                help: &d.help,
                labels: d
                    .labels
                    .iter()
                    .map(|l| JsonLabel {
                        primary: l.style == LabelStyle::Primary,
                        message: &l.message,
                        byte_start: l.span.start,
                        byte_end: l.span.end,
                        location: locate(&r.file, &l.span),
                    })
                    .collect(),
            })
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &findings)?;
    writeln!(out)
}
