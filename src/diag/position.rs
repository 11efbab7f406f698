//! Line and column numbers, computed in one place for every output format.

use std::ops::Range;

use codespan_reporting::files::{self, Files, SimpleFile};
use serde::Serialize;

/// The text of one linted file as diagnostics see it, addressable by codespan.
pub type SourceFile = SimpleFile<String, String>;

/// A 1-based position range; columns count characters, as rustc's do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

/// Where `span` is in `file`. Out-of-range spans clamp to the end of the text.
pub fn locate(file: &SourceFile, span: &Range<usize>) -> Location {
    let len = file.source().len();
    let start = clamp(file, span.start.min(len));
    let end = clamp(file, span.end.clamp(start, len));
    let at = |i: usize| -> files::Location {
        file.location((), i).unwrap_or(files::Location {
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
pub fn clamp(file: &SourceFile, mut i: usize) -> usize {
    let s = file.source();
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
