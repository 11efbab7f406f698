//! UI tests: every fixture model has its expected human output beside it.
//!
//! `fixtures/<dir>/<name>.onnx` is linted with every rule and rendered in the
//! human format without colour; the result must equal `<name>.expected` byte
//! for byte. After an intended change, re-bless with [`crate::common::BLESS`]
//! and review the diff of the `.expected` files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{assert_snapshots, linted, snapshot};
use nnlint::diag::render::{render, Format};

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

fn rendered(model: &Path) -> String {
    let mut out = Vec::new();
    render(Format::Human, linted(model), &Default::default(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Each model's output against its `.expected` file. The models are shared
/// out over the machine's cores: linting them is most of the suite's time.
#[test]
fn every_fixture_matches_its_expected_output() {
    let models = models();
    assert!(models.len() >= 12, "fixtures are missing: {models:?}");
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let mut failures: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut failed = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(model) = models.get(i) else {
                            return failed;
                        };
                        let expected = model.with_extension("expected");
                        if let Some(f) = snapshot(&expected, &rendered(model)) {
                            failed.push((i, f));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker panicked"))
            .collect()
    });
    failures.sort();
    let failures: Vec<String> = failures.into_iter().map(|(_, f)| f).collect();
    assert_snapshots(&failures);
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
        let hits = linted(model).files[0]
            .diagnostics
            .iter()
            .filter(|d| d.rule == "dropout-before-batchnorm")
            .count();
        assert_eq!(hits, usize::from(fires), "{name}");
    }
}
