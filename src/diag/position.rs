//! Line and column numbers, computed in one place for every output format.

use std::ops::Range;

use codespan_reporting::files::{self, Files, SimpleFiles};
use serde::Serialize;

use super::Diagnostic;
use crate::diag::report::FileReport;

/// The texts of one report: the model (its listing, for a binary file) and
/// any Python sources its diagnostics point into.
pub type Sources = SimpleFiles<String, String>;

/// The model's text is always the first.
pub const MODEL: usize = 0;

/// A 1-based position range; columns count characters, as rustc's do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

/// Which location machine formats report first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Prefer {
    /// The Python line that created the node, when it is known and readable
    #[default]
    Python,
    /// The model (the listing of a binary model)
    Model,
}

/// Where `span` of text `file` is. Out-of-range spans clamp to the text.
pub fn locate(sources: &Sources, file: usize, span: &Range<usize>) -> Location {
    let Ok(text) = sources.source(file) else {
        return Location {
            line: 1,
            column: 1,
            end_line: 1,
            end_column: 1,
        };
    };
    let len = text.len();
    let start = clamp(text, span.start.min(len));
    let end = clamp(text, span.end.clamp(start, len));
    let at = |i: usize| -> files::Location {
        sources.location(file, i).unwrap_or(files::Location {
            line_number: 1,
            column_number: 1,
        })
    };
    let (s, e) = (at(start), at(end));
    Location {
        line: s.line_number,
        column: s.column_number,
        end_line: e.line_number,
        end_column: e.column_number,
    }
}

/// Moves a byte offset back onto a character boundary.
pub fn clamp(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The path and position a machine format reports for a diagnostic.
pub fn primary(report: &FileReport, d: &Diagnostic, prefer: Prefer) -> (String, Location) {
    if prefer == Prefer::Python {
        if let Some((file, span)) = d.origin.as_ref().and_then(|o| o.source.clone()) {
            let path = report
                .sources
                .name(file)
                .map(|n| n.to_string())
                .unwrap_or_default();
            return (path, locate(&report.sources, file, &span));
        }
    }
    let (file, span) = d.primary_span();
    let path = report
        .sources
        .name(file)
        .map(|n| n.to_string())
        .unwrap_or_else(|_| report.path.clone());
    (path, locate(&report.sources, file, &span))
}

/// One finding where a machine format reports it.
pub struct Placed<'r> {
    pub report: &'r FileReport,
    pub diagnostic: &'r Diagnostic,
    pub path: String,
    pub at: Location,
    /// The model, when the position is in another file (its Python line):
    /// two exports of one Python file are told apart by it.
    pub model: Option<&'r str>,
}

/// Every finding of `reports` at its reported position, sorted by file,
/// then model, then position, so that findings of several models in one
/// Python file come out in one deterministic order.
pub fn placed(reports: &[FileReport], prefer: Prefer) -> Vec<Placed<'_>> {
    let mut out: Vec<Placed<'_>> = reports
        .iter()
        .flat_map(|r| {
            r.diagnostics.iter().map(move |d| {
                let (path, at) = primary(r, d, prefer);
                let in_model = r.sources.name(MODEL).is_ok_and(|n| *n == path);
                Placed {
                    report: r,
                    diagnostic: d,
                    model: (!in_model).then_some(r.path.as_str()),
                    path,
                    at,
                }
            })
        })
        .collect();
    // Stable: findings at one position keep the order the report gave them.
    out.sort_by(|a, b| (&a.path, &a.report.path, a.at).cmp(&(&b.path, &b.report.path, b.at)));
    out
}
