//! `path:line:col: severity[code]: message`, the line editors' problem matchers read.

use std::io::{self, Write};

use crate::diag::position::locate;
use crate::FileReport;

pub fn render(reports: &[FileReport], out: &mut dyn Write) -> io::Result<()> {
    for r in reports {
        for d in &r.diagnostics {
            let at = locate(&r.file, &d.primary_span());
            writeln!(
                out,
                "{}:{}:{}: {}[{}]: {}",
                r.path, at.line, at.column, d.severity, d.code, d.message
            )?;
        }
    }
    Ok(())
}
