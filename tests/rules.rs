//! Every rule is declared completely: a page in `rules/` with the clippy/ruff
//! headings, a unique name and code, and a summary in rustc's message style.

mod common;

use common::isolated;

use std::collections::HashSet;

const HEADINGS: &[&str] = &[
    "## What it does",
    "## Why is this bad?",
    "## Example",
    "## How to fix",
    "## References",
];

#[test]
fn every_rule_has_a_complete_page() {
    for r in nnlint::rules::all() {
        let m = r.meta();
        let path = format!("rules/{}.md", m.name);
        let page = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{path} is missing"));
        assert_eq!(
            page, m.explanation,
            "{path} is not the page embedded for {}",
            m.name
        );
        assert!(
            page.starts_with(&format!("# {}\n", m.name)),
            "{path} must start with `# {}`",
            m.name
        );
        let mut last = 0;
        for h in HEADINGS {
            let at = page.find(h).unwrap_or_else(|| panic!("{path} lacks `{h}`"));
            assert!(at > last, "{path}: `{h}` is out of order");
            last = at;
        }
    }
}

#[test]
fn every_page_belongs_to_a_rule() {
    let names: HashSet<&str> = nnlint::rules::all().map(|r| r.meta().name).collect();
    for e in std::fs::read_dir("rules").unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(
            names.contains(stem.as_str()),
            "{} documents no rule",
            p.display()
        );
    }
}

#[test]
fn names_and_codes_are_unique_and_well_formed() {
    let mut names = HashSet::new();
    let mut codes = HashSet::new();
    for r in nnlint::rules::all() {
        let m = r.meta();
        assert!(
            names.insert(m.name) && codes.insert(m.code),
            "{} / {} repeats",
            m.name,
            m.code
        );
        assert!(
            m.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{}",
            m.name
        );
        assert!(
            m.code.len() == 5
                && m.code.starts_with("NN")
                && m.code[2..].chars().all(|c| c.is_ascii_digit())
        );
        assert!(
            !m.summary.starts_with(char::is_uppercase) && !m.summary.ends_with('.'),
            "{}",
            m.name
        );
    }
}

#[test]
fn messages_are_lowercase_without_trailing_period() {
    let report = |p: &str| nnlint::lint_file(std::path::Path::new(p), &isolated()).unwrap();
    let mut seen = 0;
    for dir in [
        "fixtures/torch",
        "fixtures/invalid",
        "fixtures/handmade",
        "fixtures/probe",
    ] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "onnx") {
                for d in report(p.to_str().unwrap()).diagnostics {
                    seen += 1;
                    for text in std::iter::once(&d.message)
                        .chain(d.labels.iter().map(|l| &l.message))
                        .chain(&d.notes)
                        .chain(&d.help)
                    {
                        assert!(!text.starts_with(char::is_uppercase), "{text}");
                        assert!(!text.ends_with('.') || text.ends_with("..."), "{text}");
                    }
                }
            }
        }
    }
    assert!(seen > 5);
}
