//! The rules: what each one is, the registry, and selection.
//!
//! Each rule lives in its own file with its metadata next to its logic, and
//! its explanation in `rules/<name>.md`, embedded into the binary.

mod dropout_before_batchnorm;
mod invalid_graph;
pub mod select;

use crate::diag::{Diagnostic, Severity};
use crate::graph::Graph;

pub use select::{Selection, SelectorError};

/// What kind of mistake a rule looks for; the sections of the debugging checklist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// The model file itself is broken.
    Validity,
    /// Section 2: the loss.
    Loss,
    /// Section 3: intermediate outputs and connections.
    Connections,
    /// Section 4: parameters and normalization.
    Parameters,
    /// Leftovers that do no harm but deserve a look.
    Hygiene,
}

/// A rule's identity, declared once next to its logic.
#[derive(Debug)]
pub struct RuleMeta {
    /// The public name: `--select`, config keys, json output, `rules/<name>.md`.
    pub name: &'static str,
    /// `NN` and three digits; the first digit groups rules by category.
    pub code: &'static str,
    pub severity: Severity,
    pub category: Category,
    /// One line, lowercase, no trailing period.
    pub summary: &'static str,
    /// The page under `rules/`, in markdown.
    pub explanation: &'static str,
}

pub trait Rule: Sync {
    fn meta(&self) -> &'static RuleMeta;
    /// Appends the rule's findings on one graph of a model.
    fn check(&self, graph: &Graph<'_>, out: &mut Vec<Diagnostic>);
}

static RULES: &[&dyn Rule] = &[
    &invalid_graph::InvalidGraph,
    &dropout_before_batchnorm::DropoutBeforeBatchnorm,
];

/// Every rule, in code order.
pub fn all() -> impl Iterator<Item = &'static dyn Rule> {
    let mut v: Vec<&'static dyn Rule> = RULES.to_vec();
    v.sort_by_key(|r| r.meta().code);
    v.into_iter()
}

/// The rule with this name or code.
pub fn find(name_or_code: &str) -> Option<&'static dyn Rule> {
    all().find(|r| {
        let m = r.meta();
        m.name == name_or_code || m.code.eq_ignore_ascii_case(name_or_code)
    })
}
