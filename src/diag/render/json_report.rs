//! `--format json-report`: the whole run as one JSON object, versioned
//! ([`SCHEMA_VERSION`]): what reproduces it, and per file its sha256, its
//! findings (as `--format json` writes them) and what the probe measured.
//! The html page draws the same values.

use std::io::{self, Write};

use serde::Serialize;

use crate::diag::position::Prefer;
use crate::diag::report::{
    Coverage, DataFile, DiffTable, FileReport, LossReport, Measurements, Report, RuleInfo, Run,
    SCHEMA_VERSION,
};

#[derive(Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    version: u32,
    run: &'a Run,
    files: Vec<JsonFile<'a>>,
    /// The rules the findings cite, in code order.
    rules: Vec<&'a RuleInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<&'a DiffTable>,
}

#[derive(Serialize)]
struct JsonFile<'a> {
    path: &'a str,
    sha256: Option<&'a str>,
    /// The external data files, each with its sha256.
    data: &'a [DataFile],
    config: Option<&'a str>,
    failed: bool,
    coverage: Option<&'a Coverage>,
    findings: serde_json::Value,
    measurements: Option<&'a Measurements>,
    /// The loss the rules read: its terms, what each scores and against what.
    loss: Option<&'a LossReport>,
}

pub fn render(report: &Report, prefer: Prefer, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &value(report, prefer))?;
    writeln!(out)
}

/// The report as `json-report` writes it.
pub fn value(report: &Report, prefer: Prefer) -> serde_json::Value {
    let file = |r| json_file(r, prefer);
    let cited = cited(report);
    let value = JsonReport {
        schema: "nnlint-report",
        version: SCHEMA_VERSION,
        run: &report.run,
        files: report.files.iter().map(file).collect(),
        rules: cited,
        diff: report.diff.as_ref(),
    };
    serde_json::to_value(value).unwrap_or_default()
}

fn json_file(r: &FileReport, prefer: Prefer) -> JsonFile<'_> {
    JsonFile {
        path: &r.path,
        sha256: r.sha256.as_deref(),
        data: &r.data,
        config: r.config.as_deref(),
        failed: r.failed || r.unreadable.is_some(),
        coverage: r.coverage.as_ref(),
        findings: super::json::findings(std::slice::from_ref(r), prefer),
        measurements: r.measurements.as_ref(),
        loss: r.loss.as_ref(),
    }
}

/// The rules the report's findings cite, in code order.
pub fn cited(report: &Report) -> Vec<&RuleInfo> {
    let mut rules: Vec<&RuleInfo> = report
        .rules
        .iter()
        .filter(|r| {
            report
                .files
                .iter()
                .any(|f| f.diagnostics.iter().any(|d| d.rule == r.name))
        })
        .collect();
    rules.sort_by_key(|r| r.code);
    rules
}
