//! One JSON array of findings, every span with its byte and line/column range.

use std::io::{self, Write};

use serde::Serialize;

use crate::diag::position::{locate, placed, Location, Prefer};
use crate::diag::report::FileReport;
use crate::diag::{LabelStyle, Severity};

#[derive(Serialize)]
struct Finding<'a> {
    /// The reported location: the Python line or the model, per `--location`.
    file: String,
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
    /// Where the finding is in the model (its listing, for a binary model).
    model: ModelLocation<'a>,
    /// The Python line that created the node, when the exporter recorded it.
    python: Option<PythonLocation<'a>>,
    /// The model's state and the evidence that decided it.
    model_state: Option<&'a crate::graph::StateDecision>,
    /// What the rule measured along the way (the loss at each step of the
    /// one-batch fit); left out when empty.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    series: &'a [crate::diag::Series],
    /// The finding as the human format writes it, without colour.
    rendered: String,
}

#[derive(Serialize)]
struct ModelLocation<'a> {
    file: &'a str,
    #[serde(flatten)]
    location: Location,
}

#[derive(Serialize)]
struct PythonLocation<'a> {
    file: &'a str,
    /// The line in the file as it is now.
    line: usize,
    /// The line the exporter recorded.
    recorded_line: usize,
    /// Whether the file reads as the exporter saw it there.
    check: crate::diag::SourceCheck,
    function: &'a str,
    module: Option<&'a str>,
    class: Option<&'a str>,
    /// Whether the file was found and read.
    readable: bool,
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

pub fn render(reports: &[FileReport], prefer: Prefer, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &findings(reports, prefer))?;
    writeln!(out)
}

/// The findings as the json format writes them.
pub fn findings(reports: &[FileReport], prefer: Prefer) -> serde_json::Value {
    let findings: Vec<Finding> = placed(reports, prefer)
        .into_iter()
        .map(|p| {
            let (r, d, file, location) = (p.report, p.diagnostic, p.path, p.at);
            let (model_file, model_span) = d.primary_span();
            Finding {
                file,
                rule: d.rule,
                code: d.code,
                severity: d.severity,
                message: &d.message,
                node: d.node.as_deref(),
                location,
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
                        location: locate(&r.sources, l.file, &l.span),
                    })
                    .collect(),
                model: ModelLocation {
                    file: &r.path,
                    location: locate(&r.sources, model_file, &model_span),
                },
                python: d.origin.as_ref().map(|o| PythonLocation {
                    file: &o.path,
                    line: o.line,
                    recorded_line: o.origin.line,
                    check: o.check,
                    function: &o.origin.function,
                    module: o.origin.module.as_deref(),
                    class: o.origin.class.as_deref(),
                    readable: o.source.is_some(),
                }),
                model_state: r.coverage.as_ref().map(|c| &c.state),
                series: &d.series,
                rendered: super::human::rendered(r, d),
            }
        })
        .collect();
    serde_json::to_value(findings).unwrap_or_default()
}
