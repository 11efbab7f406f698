//! rustc-style diagnostics through codespan-reporting.

use std::io::{self, Write};

use codespan_reporting::diagnostic as cs;
use codespan_reporting::term::{self, termcolor, Config, Styles, StylesWriter};

use crate::diag::position::clamp;
use crate::diag::report::{Coverage, FileReport};
use crate::diag::{Diagnostic, LabelStyle, Severity, SourceCheck};
use crate::graph::ModelState;
use crate::graph::Premise;

pub fn render(
    reports: &[FileReport],
    options: &super::RenderOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    let color = options.color;
    let config = Config::default();
    let styles = Styles::default();
    for r in reports {
        for d in &r.diagnostics {
            let cd = to_codespan(r, d);
            let result = if color {
                let mut w = StylesWriter::new(termcolor::Ansi::new(&mut *out), &styles);
                term::emit_to_write_style(&mut w, &config, &r.sources, &cd)
            } else {
                term::emit_to_io_write(&mut *out, &config, &r.sources, &cd)
            };
            // A write error stays one (a closed pipe must read as one); the
            // others are codespan's own.
            result.map_err(|e| match e {
                codespan_reporting::files::Error::Io(io) => io,
                other => io::Error::other(other.to_string()),
            })?;
        }
        if let Some(c) = r.coverage.as_ref().filter(|_| !options.quiet) {
            coverage(&r.path, c, out)?;
        }
        if let Some(l) = r.loss.as_ref().filter(|_| options.verbose) {
            writeln!(out, "{}: {}", r.path, l.describe())?;
        }
    }
    Ok(())
}

/// One diagnostic as the human format writes it without colour, for the
/// json format's `rendered` (as rustc's JSON diagnostics carry theirs).
pub fn rendered(r: &FileReport, d: &Diagnostic) -> String {
    let mut out = Vec::new();
    let cd = to_codespan(r, d);
    match term::emit_to_io_write(&mut out, &Config::default(), &r.sources, &cd) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => format!("{}[{}]: {} ({e})\n", d.severity, d.code, d.message),
    }
}

/// What the model's state and graph kept the rules from doing, after the
/// file's findings: a clean run is not a clean bill where rules did not look.
fn coverage(path: &str, c: &Coverage, out: &mut dyn Write) -> io::Result<()> {
    let s = &c.state;
    match (s.forced, s.state) {
        (true, state) => write!(out, "{path}: the model is taken as {state}: {}", s.evidence)?,
        (false, ModelState::Unknown) => {
            write!(out, "{path}: the model's state is unknown: {}", s.evidence)?
        }
        (false, state) => write!(out, "{path}: the model looks {state}: {}", s.evidence)?,
    }
    let mut off = Vec::new();
    if !c.skipped.is_empty() {
        off.push(format!("{} off", count(c.skipped.len())));
    }
    if !c.demoted.is_empty() {
        off.push(format!("{} at note level", count(c.demoted.len())));
    }
    if off.is_empty() {
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "; {} that assume an untrained model (`--model-state untrained` turns them on)",
            off.join(" and ")
        )?;
    }
    let blind = |p: Premise| c.blind.iter().any(|(q, _)| *q == p);
    let (loss, training) = (blind(Premise::LossInGraph), blind(Premise::TrainingExport));
    let (families, call) = match (loss, training) {
        (true, true) => (
            "loss rules (the graph has no loss) and dropout and batch-norm rules (the graph has no Dropout or training-mode BatchNorm)",
            "export with the loss inside `forward` (in training mode if the model has Dropout or BatchNorm): `model.train(); torch.onnx.export(WithLoss(model), (x, y), path, dynamo=True)`",
        ),
        (true, false) => (
            "loss rules (the graph has no loss)",
            "export with the loss inside `forward`: `torch.onnx.export(WithLoss(model), (x, y), path, dynamo=True)`",
        ),
        (false, true) => (
            "dropout and batch-norm rules (the graph has no Dropout or training-mode BatchNorm)",
            "if the model has them, export in training mode: `model.train()` before `torch.onnx.export(..., dynamo=True)`, or `training=torch.onnx.TrainingMode.TRAINING` with `dynamo=False`",
        ),
        (false, false) => return Ok(()),
    };
    writeln!(
        out,
        "{path}: {families} could not look; {call} (README: Exporting for nnlint)"
    )?;
    Ok(())
}

fn count(n: usize) -> String {
    format!("{n} rule{}", if n == 1 { "" } else { "s" })
}

fn to_codespan(r: &FileReport, d: &Diagnostic) -> cs::Diagnostic<usize> {
    let severity = match d.severity {
        Severity::Error => cs::Severity::Error,
        Severity::Warning => cs::Severity::Warning,
        Severity::Note => cs::Severity::Note,
    };
    let text = |file: usize| {
        r.sources
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    };
    let mut labels: Vec<cs::Label<usize>> = d
        .labels
        .iter()
        .map(|l| {
            let t = text(l.file);
            let span = clamp(t, l.span.start)..clamp(t, l.span.end);
            let label = match l.style {
                LabelStyle::Primary => cs::Label::primary(l.file, span),
                LabelStyle::Secondary => cs::Label::secondary(l.file, span),
            };
            label.with_message(&l.message)
        })
        .collect();
    let mut notes: Vec<String> = Vec::new();
    if let Some(o) = &d.origin {
        let module = match (&o.origin.module, o.origin.short_class()) {
            (Some(m), Some(c)) => format!(" (module {m}: {c})"),
            (Some(m), None) => format!(" (module {m})"),
            (None, Some(c)) => format!(" ({c})"),
            (None, None) => String::new(),
        };
        notes.push(format!(
            "note: created at {}:{} in {}{module}",
            o.path, o.line, o.origin.function
        ));
        match o.check {
            SourceCheck::Moved => notes.push(format!(
                "note: the file changed since export: this line was line {} then",
                o.origin.line
            )),
            SourceCheck::Changed => notes.push(match &o.origin.text {
                Some(t) => format!(
                    "note: the file changed since export: no line near {} reads `{t}`; export again to point at the line",
                    o.line
                ),
                None => format!(
                    "note: the file changed since export: line {} is no longer a statement of `{}`; export again to point at the line",
                    o.line, o.origin.function
                ),
            }),
            _ => {}
        }
        if let Some((file, span)) = &o.source {
            labels.push(cs::Label::secondary(*file, span.clone()).with_message("created here"));
        }
    }
    if let Some(by) = &d.suppressed_by {
        notes.push(format!("note: suppressed by `{by}`"));
    }
    notes.extend(d.notes.iter().map(|n| format!("note: {n}")));
    notes.extend(d.help.iter().map(|h| format!("help: {h}")));
    notes.push(format!("note: run `nnlint explain {}` for details", d.rule));
    cs::Diagnostic::new(severity)
        .with_code(d.code)
        .with_message(&d.message)
        .with_labels(labels)
        .with_notes(notes)
}
