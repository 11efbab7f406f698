//! Two checkpoints that are not the same architecture.

use crate::diag::{Diagnostic, Severity};
use crate::rules::{Category, Checkpoints, DiffFindings, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "graph-mismatch",
    code: "NN503",
    severity: Severity::Error,
    pass: Pass::Diff,
    category: Category::Validity,
    premises: &[],
    absorbs: &[],
    summary: "the two checkpoints given to `nnlint diff` are not the same architecture",
    options: &[],
    explanation: include_str!("../../../rules/graph-mismatch.md"),
};

pub(crate) struct GraphMismatch;

impl Rule for GraphMismatch {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn diff(&self, cx: &Checkpoints<'_>, out: &mut DiffFindings) {
        let Some(m) = cx.mismatch else { return };
        let d = Diagnostic::new(&META, "the two checkpoints are not the same architecture")
            .primary(m.span.clone(), m.why.clone())
            .note(format!(
                "comparing {} with {}",
                m.before.display(),
                m.after.display()
            ))
            .help("diff two checkpoints of the same model, exported the same way");
        out.found.push((None, d));
    }
}
