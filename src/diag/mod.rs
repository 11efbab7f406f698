//! Diagnostics as plain values, and where they point.
//!
//! Rules build [`Diagnostic`]s; the renderers in [`render`] only format them.
//! Every renderer takes line and column numbers from [`position`], so all
//! output formats agree.

mod measure;
pub mod position;
pub mod render;
pub mod report;

use std::fmt;
use std::ops::Range;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LabelStyle {
    Primary,
    Secondary,
}

/// A span of one of a report's source texts, with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub style: LabelStyle,
    /// Which text: [`position::MODEL`] for the model, others for Python sources.
    pub file: usize,
    pub span: Range<usize>,
    pub message: String,
}

/// The Python line that created the diagnostic's node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonLocation {
    pub origin: crate::graph::PyOrigin,
    /// The path to show: as resolved on disk, or as recorded when it is not readable.
    pub path: String,
    /// The line in the file as it is now (the recorded one unless it moved).
    pub line: usize,
    /// How far the file on disk was checked against what the exporter saw.
    pub check: SourceCheck,
    /// The source text and the span of the line in it, when the file was read
    /// and the line is known to be the one that created the node.
    pub source: Option<(usize, Range<usize>)>,
}

/// Whether the line shown is the line the exporter recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceCheck {
    /// The file was not found or not read.
    Unread,
    /// It reads as the exporter recorded it.
    Verified,
    /// The exporter recorded no text (TorchScript); the line is inside the
    /// function it recorded.
    Unverified,
    /// Lines were added or removed above it: the recorded text is at
    /// [`PythonLocation::line`] now.
    Moved,
    /// No line near the recorded one reads as recorded: nothing is shown.
    Changed,
}

/// One finding. The first label is the primary one.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub rule: &'static str,
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// The ONNX node the finding is about, when it has a name.
    pub node: Option<String>,
    /// Other nodes the problem spans (the second log of a binary
    /// cross-entropy): a measurement on one of them is this finding's too.
    pub spans_nodes: Vec<String>,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
    pub help: Vec<String>,
    /// Where the node came from in the author's code, attached after the rules ran.
    pub origin: Option<PythonLocation>,
    /// Set when a `# nnlint: ignore` comment suppressed it (`--show-suppressed`).
    pub suppressed_by: Option<String>,
    /// What was measured along the way, for machine formats (json).
    pub series: Vec<Series>,
}

/// A measured sequence a finding carries: the loss at each step of the
/// one-batch fit.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Series {
    /// What the values are, kebab-case: `loss`.
    pub name: &'static str,
    /// What they are indexed by: `step`.
    pub index: &'static str,
    /// A non-finite value is written as `null`.
    pub values: Vec<f64>,
}

impl Diagnostic {
    /// A diagnostic with this code, at this severity (rules build theirs
    /// with `Diagnostic::new`, from their metadata).
    pub fn of(
        rule: &'static str,
        code: &'static str,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            rule,
            code,
            severity,
            message: message.into(),
            node: None,
            spans_nodes: Vec::new(),
            labels: Vec::new(),
            notes: Vec::new(),
            help: Vec::new(),
            origin: None,
            suppressed_by: None,
            series: Vec::new(),
        }
    }

    pub fn with_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn with_node(mut self, name: &str) -> Self {
        self.node = (!name.is_empty()).then(|| name.to_string());
        self
    }

    /// Another node the problem spans.
    pub fn spanning(mut self, name: &str) -> Self {
        if !name.is_empty() {
            self.spans_nodes.push(name.to_string());
        }
        self
    }

    /// Whether the finding is about the node named `name`.
    pub fn concerns(&self, name: &str) -> bool {
        self.node.as_deref() == Some(name) || self.spans_nodes.iter().any(|n| n == name)
    }

    pub fn primary(mut self, span: Range<usize>, message: impl Into<String>) -> Self {
        self.labels.insert(
            0,
            Label {
                style: LabelStyle::Primary,
                file: position::MODEL,
                span,
                message: message.into(),
            },
        );
        self
    }

    pub fn secondary(mut self, span: Range<usize>, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            style: LabelStyle::Secondary,
            file: position::MODEL,
            span,
            message: message.into(),
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    /// The primary label's file and span.
    pub fn primary_span(&self) -> (usize, Range<usize>) {
        self.labels
            .iter()
            .find(|l| l.style == LabelStyle::Primary)
            .map(|l| (l.file, l.span.clone()))
            .unwrap_or((position::MODEL, 0..0))
    }
}

/// A measured number for a message: up to three decimals in the readable
/// range, scientific notation outside it.
/// `values` as a line of block characters, at most `width` wide, on a log
/// scale (losses span decades): `█` is the largest, `▁` the smallest. Each
/// character shows the mean of its share of the values; non-finite values
/// are a space.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let width = width.max(1).min(values.len());
    let log = |v: f64| if v > 0.0 { v.ln() } else { f64::NAN };
    let cells: Vec<f64> = (0..width)
        .map(|i| {
            let (a, b) = (i * values.len() / width, (i + 1) * values.len() / width);
            let part = &values[a..b.max(a + 1)];
            log(part.iter().sum::<f64>() / part.len() as f64)
        })
        .collect();
    let finite = cells.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    cells
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                ' '
            } else if hi - lo < 1e-12 {
                BLOCKS[3]
            } else {
                let k = ((v - lo) / (hi - lo) * 7.0).round() as usize;
                BLOCKS[k.min(7)]
            }
        })
        .collect()
}

pub fn short_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if (1e-3..1e4).contains(&a) {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.2e}")
    }
}

/// A suppression comment: `None` for every rule, or the named rules and codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub rules: Option<Vec<String>>,
    /// The comment's span in its file.
    pub span: Range<usize>,
    pub text: String,
}

/// A suppression comment that suppressed less than it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnusedSuppression {
    /// The file of the comment, as the report's sources number it.
    pub file: usize,
    pub comment: Suppression,
    /// The rules it names that matched no finding, or `*` for a comment
    /// naming none that suppressed nothing.
    pub rules: std::collections::BTreeSet<String>,
}
