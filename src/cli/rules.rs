//! `nnlint rules` and `nnlint explain`: the rules' metadata, as text or json.

use nnlint::diag::render::sarif;
use nnlint::rules::{self, RuleMeta};

use crate::args::ListFormat;

/// A rule's metadata as `--format json` gives it.
fn rule_json(m: &RuleMeta) -> serde_json::Value {
    serde_json::json!({
        "name": m.name,
        "code": m.code,
        "severity": m.severity,
        "category": m.category,
        "summary": m.summary,
        "options": m.options.iter().map(|o| serde_json::json!({
            "name": o.name, "default": o.default, "summary": o.summary,
        })).collect::<Vec<_>>(),
        "premises": m.premises.iter().map(|r| serde_json::json!({
            "premise": r.premise, "describe": r.premise.describe(),
            "holds_when": r.premise.holds_when(), "half": r.half, "unmet": r.unmet,
        })).collect::<Vec<_>>(),
        "explanation": m.explanation,
        "help_uri": sarif::help_uri(m.name),
    })
}

/// A rule's premises, one line each, for `nnlint explain`.
fn premise_lines(m: &RuleMeta) -> String {
    use nnlint::rules::{Half, Unmet};
    let mut out = String::new();
    for r in m.premises {
        let half = match (r.half, m.pass) {
            (Half::Static, rules::Pass::Graph)
                if m.premises.iter().any(|o| o.half != Half::Static) =>
            {
                " (static half)"
            }
            (Half::Measured, rules::Pass::Graph) => " (measured half)",
            _ => "",
        };
        let unmet = match r.unmet {
            Unmet::Skip => "otherwise it does not run",
            Unmet::Note => "otherwise its findings are notes",
            Unmet::Blind => {
                "otherwise it sees only part of what it looks for, and the summary says so"
            }
        };
        out.push_str(&format!(
            "- {}{half}: {unmet}\n  holds when {}\n",
            r.premise.describe(),
            r.premise.holds_when()
        ));
    }
    out
}

/// `nnlint rules`: every rule, a line each or as json.
pub(crate) fn list(format: ListFormat) -> u8 {
    match format {
        ListFormat::Text => {
            for r in rules::all() {
                let m = r.meta();
                let premises: Vec<String> = m
                    .premises
                    .iter()
                    .map(|r| {
                        serde_json::to_value(r.premise)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default()
                    })
                    .collect();
                let premises = if premises.is_empty() {
                    String::new()
                } else {
                    format!(" [assumes: {}]", premises.join(", "))
                };
                println!(
                    "{:<6} {:<28} {:<8} {}{premises}",
                    m.code, m.name, m.severity, m.summary
                );
            }
        }
        ListFormat::Json => {
            let all: Vec<_> = rules::all().map(|r| rule_json(r.meta())).collect();
            println!("{}", serde_json::Value::from(all));
        }
    }
    0
}

/// `nnlint explain RULE`: a rule's premises and explanation.
pub(crate) fn explain(rule: &str, format: ListFormat) -> u8 {
    match (rules::find(rule), format) {
        (Some(r), ListFormat::Text) => {
            let m = r.meta();
            println!("{} ({}, {} by default)\n", m.code, m.name, m.severity);
            if m.premises.is_empty() {
                println!("Premises: none; it runs on every model, trained or not\n");
            } else {
                println!("Premises:\n{}", premise_lines(m));
            }
            print!("{}", m.explanation);
            0
        }
        (Some(r), ListFormat::Json) => {
            println!("{}", rule_json(r.meta()));
            0
        }
        (None, _) => {
            eprintln!(
                "error: no rule named `{rule}`{} (see `nnlint rules`)",
                rules::suggest(rule)
            );
            2
        }
    }
}
