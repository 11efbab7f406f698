//! `path:line:col: severity[code]: message`, the line editors' problem matchers read.

use std::io::{self, Write};

use crate::diag::position::{placed, Prefer};
use crate::diag::report::FileReport;

/// A finding at a Python line names its model: `... [in models/a.onnx]`.
pub(super) fn render(
    reports: &[FileReport],
    prefer: Prefer,
    out: &mut dyn Write,
) -> io::Result<()> {
    for p in placed(reports, prefer) {
        let d = p.diagnostic;
        write!(
            out,
            "{}:{}:{}: {}[{}]: {}",
            p.path, p.at.line, p.at.column, d.severity, d.code, d.message
        )?;
        match p.model {
            Some(model) => writeln!(out, " [in {model}]")?,
            None => writeln!(out)?,
        }
    }
    Ok(())
}
