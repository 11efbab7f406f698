//! Every rule is declared completely: a page in `rules/` with the clippy/ruff
//! headings, a unique name and code, and a summary in rustc's message style.

use crate::common::{self, linted};

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

/// The table of docs/rules.md is the registry's, in its order: a rule
/// added, renamed or re-summarized shows there after a re-bless.
#[test]
fn the_user_guide_lists_every_rule() {
    const BEGIN: &str = "never edit it by hand. -->\n\n";
    const END: &str = "<!-- end of the generated table -->";
    let path = std::path::Path::new("docs/rules.md");
    let page = std::fs::read_to_string(path).expect("docs/rules.md is readable");
    let (Some(begin), Some(end)) = (page.find(BEGIN), page.find(END)) else {
        panic!("docs/rules.md lacks the generated table's markers");
    };
    let mut table = String::from("| code | rule | default | what |\n|---|---|---|---|\n");
    for r in nnlint::rules::all() {
        let m = r.meta();
        table += &format!(
            "| {} | `{}` | {} | {} |\n",
            m.code,
            m.name,
            m.severity,
            m.summary.replace('|', "\\|")
        );
    }
    let now = format!("{}{table}\n{}", &page[..begin + BEGIN.len()], &page[end..]);
    let failure = common::snapshot(path, &now);
    common::assert_snapshots(failure.as_slice());
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
    let report = |p: &str| linted(std::path::Path::new(p));
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
                for d in &report(p.to_str().unwrap()).files[0].diagnostics {
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

/// Every rule declares what it takes for granted, and its page says what
/// becomes of it where that fails. The declarations are pinned here, so a
/// rule cannot lose (or gain) a premise without this list changing too.
#[test]
fn every_rule_declares_its_premises() {
    use nnlint::rules::{Half, Premise, Unmet};
    type Declared = (Premise, Half, Unmet);
    // What a rule judges against a fresh model, or against the data a model
    // was designed for, by the issue that made these premises data.
    let expected: &[(&str, &[Declared])] = &[
        (
            "init-scale",
            &[(Premise::Untrained, Half::Static, Unmet::Skip)],
        ),
        (
            "initial-loss",
            &[(Premise::Untrained, Half::Measured, Unmet::Skip)],
        ),
        (
            "dead-relu",
            &[
                (Premise::Untrained, Half::Static, Unmet::Skip),
                (Premise::RepresentativeInputs, Half::Measured, Unmet::Skip),
            ],
        ),
        (
            "saturated-activation",
            &[(Premise::RepresentativeInputs, Half::Measured, Unmet::Skip)],
        ),
        // Trained weights set each layer's scale, and adapted to the data's:
        // neither is judged against an initializer's once training is done.
        (
            "activation-scale",
            &[(Premise::Untrained, Half::Measured, Unmet::Skip)],
        ),
        (
            "unnormalized-input",
            &[(Premise::Untrained, Half::Measured, Unmet::Skip)],
        ),
        (
            "linear-stack",
            &[(Premise::InDesign, Half::Static, Unmet::Skip)],
        ),
        (
            "missing-normalization",
            &[(Premise::InDesign, Half::Static, Unmet::Skip)],
        ),
        (
            "bias-before-batchnorm",
            &[(Premise::InDesign, Half::Static, Unmet::Skip)],
        ),
        (
            "hidden-softmax",
            &[(Premise::InDesign, Half::Static, Unmet::Skip)],
        ),
        (
            "constant-weights",
            &[(Premise::Untrained, Half::Static, Unmet::Note)],
        ),
        // Gradients of a trained model on synthesized data say little, and
        // a trained graph may carry post-processing its training graph had not.
        (
            "gradient-scale",
            &[(Premise::Untrained, Half::Measured, Unmet::Skip)],
        ),
        (
            "zero-gradient",
            &[(Premise::Untrained, Half::Both, Unmet::Skip)],
        ),
        // A layer left random among trained ones: only a trained model has them.
        (
            "layer-left-random",
            &[(Premise::Trained, Half::Static, Unmet::Skip)],
        ),
        // A trained model has left its initialization: the fit from there
        // says nothing about whether the architecture can learn.
        (
            "cannot-overfit",
            &[(Premise::Untrained, Half::Measured, Unmet::Skip)],
        ),
    ];
    // What a model computes wrongly whatever its state: no premise about the
    // model's state may turn these off or down.
    const ANY_STATE: &[&str] = &[
        "non-finite",
        "double-softmax",
        "nll-without-log",
        "relu-on-logits",
        "softmax-batch-axis",
        "softmax-single-class",
        "invalid-graph",
        "dropout-before-batchnorm",
        "batch-mixing",
    ];
    let state = [
        Premise::Untrained,
        Premise::Trained,
        Premise::RepresentativeInputs,
        Premise::InDesign,
    ];
    for r in nnlint::rules::all() {
        let m = r.meta();
        let declared: Vec<Declared> = m
            .premises
            .iter()
            .map(|p| (p.premise, p.half, p.unmet))
            .collect();
        let of_state: Vec<_> = declared
            .iter()
            .filter(|p| state.contains(&p.0))
            .copied()
            .collect();
        match expected.iter().find(|(name, _)| *name == m.name) {
            Some((_, want)) => assert_eq!(of_state, want.to_vec(), "{}", m.name),
            None => assert!(
                of_state.is_empty(),
                "{} declares an undocumented state premise",
                m.name
            ),
        }
        if ANY_STATE.contains(&m.name) {
            assert!(
                of_state.is_empty(),
                "{} must fire on trained models too",
                m.name
            );
        }
        // Premises about the graph never silence a rule; they make the summary speak.
        for p in declared.iter().filter(|p| !state.contains(&p.0)) {
            assert_eq!(p.2, Unmet::Blind, "{}: {:?}", m.name, p.0);
        }
        if !declared.is_empty() {
            let at = m.explanation.find("## Premises");
            let refs = m.explanation.find("## References");
            assert!(
                at.is_some() && at < refs,
                "rules/{}.md lacks `## Premises` before `## References`",
                m.name
            );
        }
    }
}

#[test]
fn explain_shows_the_premises() {
    let out = common::nnlint(&["explain", "init-scale"]);
    let page = common::text(&out.stdout);
    assert!(
        page.contains("Premises:\n- the weights are at initialization: otherwise it does not run"),
        "{page}"
    );
    let out = common::nnlint(&["explain", "non-finite"]);
    assert!(common::text(&out.stdout).contains("Premises: none"));
    let out = common::nnlint(&["rules"]);
    let list = common::text(&out.stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("NN306") && l.ends_with("[assumes: untrained]")),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &common::nnlint(&["explain", "dead-relu", "--format", "json"]).stdout,
    )
    .unwrap();
    assert_eq!(json["premises"][1]["premise"], "representative-inputs");
    assert_eq!(json["premises"][1]["half"], "measured");
}
