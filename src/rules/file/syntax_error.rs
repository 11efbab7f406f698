//! Text models that do not parse.

use crate::diag::{Diagnostic, Severity};
use crate::onnx::text;
use crate::rules::{Category, Pass, Rule, RuleMeta};

pub(crate) static META: RuleMeta = RuleMeta {
    name: "syntax-error",
    code: "NN000",
    severity: Severity::Error,
    pass: Pass::Read,
    category: Category::Validity,
    premises: &[],
    absorbs: &[],
    summary: "a `.onnxtxt` model does not follow the ONNX textual syntax",
    options: &[],
    explanation: include_str!("../../../rules/syntax-error.md"),
};

pub(crate) struct SyntaxError;

impl Rule for SyntaxError {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn read(&self, error: &text::SyntaxError, out: &mut Vec<Diagnostic>) {
        out.push(Diagnostic::new(&META, error.message.clone()).primary(error.span.clone(), "here"));
    }
}
