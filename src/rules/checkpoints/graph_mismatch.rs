//! Two checkpoints that are not the same architecture.

use crate::diag::Severity;
use crate::rules::{Category, Pass, Rule, RuleMeta};

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
}
