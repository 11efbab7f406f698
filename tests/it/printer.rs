//! `nnlint print --values` writes what `onnx.printer.to_text` writes.
//!
//! `fixtures/reference/printer/<path>.txt` is onnx.printer's output for
//! `fixtures/<path>`, recorded by `fixtures/generate.py`; no Python runs here.

use crate::common;

use std::path::Path;

use nnlint::onnx::printer::{print_model, Values};

#[test]
fn full_listing_matches_onnx_printer_for_every_fixture() {
    let root = Path::new("fixtures/reference/printer");
    let mut refs = Vec::new();
    refs.extend(common::files(root, ".txt"));
    refs.sort();
    assert!(refs.len() > 150, "printer references are missing");
    let mut mismatches = Vec::new();
    for r in &refs {
        let model_path =
            Path::new("fixtures").join(r.strip_prefix(root).unwrap().with_extension(""));
        let model = nnlint::onnx::load(&model_path).unwrap();
        let ours = print_model(&model.proto, Values::Full).text;
        let theirs = std::fs::read_to_string(r).unwrap();
        if ours.strip_suffix('\n') != Some(theirs.as_str()) {
            mismatches.push(model_path.display().to_string());
        }
    }
    assert!(
        mismatches.is_empty(),
        "listing differs from onnx.printer for {mismatches:#?}"
    );
}

#[test]
fn elided_listing_keeps_every_node_on_the_same_line() {
    // Diagnostics on binary models point into the elided listing: a node's line
    // there must be its line in `nnlint print --values` too, initializers aside.
    let model = nnlint::onnx::load(Path::new(
        "fixtures/torch/dropout_bn_mlp_torchscript_train.onnx",
    ))
    .unwrap();
    let elided = print_model(&model.proto, Values::Elide);
    let full = print_model(&model.proto, Values::Full);
    let line = |text: &str, at: usize| text[..at].matches('\n').count();
    let mut compared = 0;
    for (scope, spans) in &elided.nodes {
        for (span, other) in spans.iter().zip(&full.nodes[scope]) {
            assert_eq!(
                line(&elided.text, span.stmt.start),
                line(&full.text, other.stmt.start)
            );
            assert_eq!(
                &elided.text[span.stmt.clone()],
                &full.text[other.stmt.clone()]
            );
            compared += 1;
        }
    }
    assert_eq!(compared, model.graph().node.len());
    assert!(
        !elided.text.contains("{-0.0"),
        "initializer values leaked into the listing"
    );
}
