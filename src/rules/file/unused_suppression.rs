//! `# nnlint: ignore` comments that suppress nothing.

use crate::diag::{self, Diagnostic, Label, LabelStyle, Severity};
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

    fn suppressions(&self, unused: &[diag::UnusedSuppression], out: &mut Vec<Diagnostic>) {
        out.extend(unused.iter().map(report));
    }
}

/// The finding for a comment whose rules suppressed nothing.
fn report(unused: &diag::UnusedSuppression) -> Diagnostic {
    let what = match &unused.comment.rules {
        None => "suppresses nothing".to_string(),
        Some(_) => {
            let names: Vec<String> = unused.rules.iter().map(|n| format!("`{n}`")).collect();
            format!("does not suppress {}", names.join(", "))
        }
    };
    let mut d = Diagnostic::new(&META, format!("suppression comment {what}"));
    d.labels.push(Label {
        style: LabelStyle::Primary,
        file: unused.file,
        span: unused.comment.span.clone(),
        message: "no finding on a node created by this line matches".into(),
    });
    d.help("remove the comment, or the rules it no longer needs to name")
}
