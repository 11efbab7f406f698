//! `# nnlint: ignore` comments that suppress nothing.

use std::collections::BTreeSet;

use crate::diag::Suppression;
use crate::diag::{Diagnostic, Label, LabelStyle, Severity};
use crate::rules::{Category, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "unused-suppression",
    code: "NN006",
    severity: Severity::Note,
    pass: Pass::Suppressions,
    category: Category::Hygiene,
    premises: &[],
    absorbs: &[],
    summary: "a `# nnlint: ignore` comment that suppresses nothing",
    options: &[],
    explanation: include_str!("../../../rules/unused-suppression.md"),
};

pub(crate) struct UnusedSuppression;

impl Rule for UnusedSuppression {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }
}

/// The finding for a comment at `file` whose rules in `unused` suppressed nothing.
pub(crate) fn report(file: usize, s: &Suppression, unused: &BTreeSet<String>) -> Diagnostic {
    let what = match &s.rules {
        None => "suppresses nothing".to_string(),
        Some(_) => {
            let names: Vec<String> = unused.iter().map(|n| format!("`{n}`")).collect();
            format!("does not suppress {}", names.join(", "))
        }
    };
    let mut d = Diagnostic::new(&META, format!("suppression comment {what}"));
    d.labels.push(Label {
        style: LabelStyle::Primary,
        file,
        span: s.span.clone(),
        message: "no finding on a node created by this line matches".into(),
    });
    d.help("remove the comment, or the rules it no longer needs to name")
}
