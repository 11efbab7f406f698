//! `path:line:col: severity[code]: message`, the line editors' problem matchers read.

use std::io::{self, Write};

use crate::diag::position::{primary, Prefer};
use crate::FileReport;

pub fn render(reports: &[FileReport], prefer: Prefer, out: &mut dyn Write) -> io::Result<()> {
    for r in reports {
        for d in &r.diagnostics {
            let (path, at) = primary(r, d, prefer);
            writeln!(
                out,
                "{}:{}:{}: {}[{}]: {}",
                path, at.line, at.column, d.severity, d.code, d.message
            )?;
        }
    }
    Ok(())
}
