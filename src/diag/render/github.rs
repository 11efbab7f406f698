//! GitHub Actions workflow commands: one annotation per finding.

use std::io::{self, Write};

use crate::diag::position::{primary, Prefer};
use crate::diag::Severity;
use crate::FileReport;

pub fn render(reports: &[FileReport], prefer: Prefer, out: &mut dyn Write) -> io::Result<()> {
    for r in reports {
        for d in &r.diagnostics {
            let (path, at) = primary(r, d, prefer);
            let level = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Note => "notice",
            };
            writeln!(
                out,
                "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}",
                property(&path),
                at.line,
                at.column,
                at.end_line,
                at.end_column,
                property(&format!("nnlint ({})", d.code)),
                data(&format!("{} [{}]", d.message, d.rule)),
            )?;
        }
    }
    Ok(())
}

/// Escapes a command's message, as `@actions/core` does.
pub fn data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property value, as `@actions/core` does.
pub fn property(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_the_actions_toolkit() {
        assert_eq!(data("100% sure\nreally"), "100%25 sure%0Areally");
        assert_eq!(property("a:b,c%"), "a%3Ab%2Cc%25");
    }
}
