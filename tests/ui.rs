//! UI tests: every fixture model has its expected human output beside it.
//!
//! `fixtures/<dir>/<name>.onnx` is linted with every rule and rendered in the
//! human format without colour; the result must equal `<name>.expected` byte
//! for byte. After an intended change, re-bless with
//!
//!     NNLINT_BLESS=1 cargo test --locked --test ui
//!
//! and review the diff of the `.expected` files.

mod common;

use common::isolated;

use std::path::{Path, PathBuf};

use nnlint::diag::render::{render, Format};
use nnlint::lint_file;

const UI_DIRS: &[&str] = &[
    "fixtures/torch",
    "fixtures/invalid",
    "fixtures/handmade",
    "fixtures/architectures",
    "fixtures/python",
    "fixtures/text",
    "fixtures/probe",
    "fixtures/trained",
    "fixtures/left_random",
    "fixtures/loss_terms",
    "fixtures/loss_forms",
    "fixtures/published_losses",
    "fixtures/tf_losses",
    "fixtures/keras",
    "fixtures/jax",
    "fixtures/coverage",
    "fixtures/losses",
    "fixtures/published",
    "fixtures/hostile",
    "fixtures/gradients",
    "fixtures/overfit",
    "fixtures/recurrent",
    "fixtures/report",
];

fn models() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in UI_DIRS {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "onnx" || x == "onnxtxt") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn expected_path(model: &Path) -> PathBuf {
    model.with_extension("expected")
}

fn rendered(model: &Path) -> String {
    let report =
        lint_file(model, &isolated()).unwrap_or_else(|e| panic!("fixture does not load: {e}"));
    let mut out = Vec::new();
    let report = nnlint::report(Default::default(), vec![report]);
    render(Format::Human, &report, &Default::default(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn every_fixture_matches_its_expected_output() {
    let bless = std::env::var_os("NNLINT_BLESS").is_some();
    let mut failures = Vec::new();
    let models = models();
    assert!(models.len() >= 12, "fixtures are missing: {models:?}");
    for model in &models {
        let actual = rendered(model);
        let path = expected_path(model);
        if bless {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{} differs from its expected output\n--- expected\n{expected}\n+++ actual\n{actual}",
                model.display()
            )),
            Err(_) => failures.push(format!("{} is missing", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nre-bless with: NNLINT_BLESS=1 cargo test --locked --test ui",
        failures.join("\n\n")
    );
}

#[test]
fn no_expected_file_is_orphaned() {
    for dir in UI_DIRS {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "expected") {
                assert!(
                    p.with_extension("onnx").exists() || p.with_extension("onnxtxt").exists(),
                    "{} has no model beside it",
                    p.display()
                );
            }
        }
    }
}

/// The fixtures the issue names: train-mode exports with Dropout before
/// BatchNorm fire, the healthy order and eval exports do not.
#[test]
fn dropout_before_batchnorm_fires_exactly_where_expected() {
    for model in models().iter().filter(|m| m.starts_with("fixtures/torch")) {
        let name = model.file_stem().unwrap().to_str().unwrap();
        let fires = name.starts_with("dropout_bn") && name.ends_with("_train");
        let report = lint_file(model, &isolated()).unwrap();
        let hits = report
            .diagnostics
            .iter()
            .filter(|d| d.rule == "dropout-before-batchnorm")
            .count();
        assert_eq!(hits, usize::from(fires), "{name}");
    }
}
