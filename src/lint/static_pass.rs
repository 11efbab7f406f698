//! The static pass: the facts every rule's premises are judged on, and
//! the graph rules run on every core.

use crate::diag::{self, Diagnostic};
use crate::options::Settings;
use crate::{graph, onnx, parallel, rules};

/// The facts the premises are judged on, for `graphs` as `settings` lint them.
pub(crate) fn facts(graphs: &[graph::Graph<'_>], settings: &Settings) -> rules::Facts {
    rules::Facts::gather(graphs, settings.model_state, real_inputs(graphs, settings))
}

/// Which selected rules run, which are blind to part of the model, and why.
pub(crate) fn coverage(
    facts: &rules::Facts,
    settings: &Settings,
    valid: bool,
) -> rules::premise::Coverage {
    let mut coverage = rules::premise::Coverage::new(facts.state.clone());
    for r in rules::all().filter(|r| settings.selection.enabled(r.meta())) {
        let probes = valid && settings.probe.enabled && r.measures();
        coverage.account(facts, r.meta(), probes);
    }
    coverage
}

/// The graph rules' findings, in rule order.
pub(crate) fn run(
    graphs: &[graph::Graph<'_>],
    settings: &Settings,
    facts: &rules::Facts,
) -> Vec<Diagnostic> {
    let selected: Vec<&dyn rules::Rule> = rules::all()
        .filter(|r| r.meta().pass == rules::Pass::Graph && settings.selection.enabled(r.meta()))
        .filter(|r| {
            facts.verdict(r.meta().premises, rules::Half::Static) != Some(rules::Unmet::Skip)
        })
        .collect();
    // Rules are independent: run them on every core, then merge in rule order.
    let per_rule = parallel::map(&selected, |rule| {
        let mut found = Vec::new();
        for g in graphs {
            rule.check(&settings.check(g, rule.meta(), facts), &mut found);
        }
        settings.apply_severity(rule.meta(), &mut found);
        demote(facts, rule.meta(), rules::Half::Static, &mut found);
        found
    });
    per_rule.into_iter().flatten().collect()
}

/// Whether every float input of the main graph is fed real data (`--input`).
fn real_inputs(graphs: &[graph::Graph<'_>], settings: &Settings) -> bool {
    let Some(main) = graphs.first() else {
        return false;
    };
    let mut floats = main
        .fed_inputs()
        .filter(|i| {
            main.elem_type(i)
                .is_some_and(onnx::proto::data_type::is_float)
        })
        .peekable();
    floats.peek().is_some() && floats.all(|i| settings.probe.files.contains_key(i))
}

/// Reports a rule's findings as notes where a premise whose failure demotes
/// them does not hold, saying why.
pub(crate) fn demote(
    facts: &rules::Facts,
    meta: &rules::RuleMeta,
    half: rules::Half,
    found: &mut [Diagnostic],
) {
    if facts.verdict(meta.premises, half) != Some(rules::Unmet::Note) {
        return;
    }
    let why = facts
        .failing(meta.premises, rules::Unmet::Note)
        .iter()
        .map(|p| p.describe())
        .collect::<Vec<_>>()
        .join(" and ");
    for d in found
        .iter_mut()
        .filter(|d| d.severity > diag::Severity::Note)
    {
        d.severity = diag::Severity::Note;
        d.notes.push(format!(
            "reported as a note: this rule assumes {why}, and the model looks {} ({})",
            facts.state.state, facts.state.evidence
        ));
    }
}
