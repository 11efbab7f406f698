//! GitHub Actions workflow commands: one annotation per finding.

use std::io::{self, Write};

use crate::diag::position::{placed, Prefer};
use crate::diag::report::FileReport;
use crate::diag::Severity;

/// A finding at a Python line names its model in the title.
pub(super) fn render(
    reports: &[FileReport],
    prefer: Prefer,
    out: &mut dyn Write,
) -> io::Result<()> {
    for p in placed(reports, prefer) {
        let d = p.diagnostic;
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "notice",
        };
        let title = match p.model {
            Some(model) => format!("nnlint ({}) in {model}", d.code),
            None => format!("nnlint ({})", d.code),
        };
        writeln!(
            out,
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}",
            property(&p.path),
            p.at.line,
            p.at.column,
            p.at.end_line,
            p.at.end_column,
            property(&title),
            data(&format!("{} [{}]", d.message, d.rule)),
        )?;
    }
    Ok(())
}

/// Escapes a command's message, as `@actions/core` does.
pub(super) fn data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property value, as `@actions/core` does.
pub(super) fn property(s: &str) -> String {
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
