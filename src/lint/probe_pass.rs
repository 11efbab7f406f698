//! The probe pass: the measuring rules' one run of the probe, and their
//! findings merged into the static pass's, one finding per problem.

use crate::diag::{self, Diagnostic};
use crate::lint::demote;
use crate::lint::measure;
use crate::options::Settings;
use crate::{graph, onnx, probe, rules};

/// Runs the probe on the main graph, appends what the measuring rules find,
/// and returns what it measured.
///
/// A measured finding on a node its rule already reported statically becomes
/// a note on that finding: one finding per problem.
pub(crate) fn run(
    model: &onnx::Model,
    main: &graph::Graph<'_>,
    settings: &Settings,
    facts: &rules::Facts,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<diag::report::Measurements> {
    let measuring: Vec<&dyn rules::Rule> = rules::all()
        .filter(|r| r.measures() && settings.selection.enabled(r.meta()))
        .filter(|r| {
            facts.verdict(r.meta().premises, rules::Half::Measured) != Some(rules::Unmet::Skip)
        })
        .collect();
    if !settings.probe.enabled || measuring.is_empty() {
        return None;
    }
    let plan = rules::plan(settings.config.as_ref());
    let mut backward: Vec<probe::Backward> = measuring
        .iter()
        .flat_map(|r| r.backward(&settings.probe).iter().copied())
        .collect();
    backward.sort();
    backward.dedup();
    // A pass that did not run, as the selected rules report it.
    let skipped = |diagnostics: &mut Vec<Diagnostic>, skipped: probe::Skipped<'_>| {
        for rule in rules::all().filter(|r| settings.selection.enabled(r.meta())) {
            let mut found = Vec::new();
            rule.skipped(main, &skipped, &mut found);
            settings.apply_severity(rule.meta(), &mut found);
            diagnostics.extend(found);
        }
    };
    let probe = match probe::run(model, main, &settings.probe, &plan, &backward) {
        Ok(p) => p,
        Err(skip) => {
            skipped(diagnostics, probe::Skipped::Probe(&skip));
            return None;
        }
    };
    if let Some(Err(skip)) = &probe.gradients {
        skipped(diagnostics, probe::Skipped::Backward(skip));
    }
    match (&probe.fit, &plan.fit) {
        (Some(Err(skip)), _) => skipped(diagnostics, probe::Skipped::Fit(skip)),
        (Some(Ok(fit)), Some(planned)) => {
            if let Some(asked) = fit.cut_short() {
                skipped(
                    diagnostics,
                    probe::Skipped::FitCut {
                        fit,
                        asked,
                        budget: planned.budget,
                    },
                );
            }
        }
        _ => {}
    }
    for rule in measuring {
        let cx = settings.check(main, rule.meta(), facts);
        diagnostics.retain(|d| d.rule != rule.meta().name || !rule.refuted(&cx, &probe, d));
        let mut found = Vec::new();
        rule.probe(&cx, &probe, &mut found);
        settings.apply_severity(rule.meta(), &mut found);
        demote(facts, rule.meta(), rules::Half::Measured, &mut found);
        let mut index = Concerning::of(diagnostics);
        for d in found {
            // One finding per problem: a node the rule already reported statically
            // gets the measurement as a note.
            let explains = |s: &Diagnostic| {
                s.rule == d.rule
                    || rules::find(s.rule).is_some_and(|r| r.meta().absorbs.contains(&d.rule))
            };
            // The same node: by name (the measured finding's own, or one it
            // spans), or, for a node without one, by place.
            let same = |s: &Diagnostic| match d.node.as_deref() {
                Some(n) => s.concerns(n) || d.spans_nodes.iter().any(|m| s.concerns(m)),
                None => s.node.is_none() && s.primary_span() == d.primary_span(),
            };
            let first = index
                .candidates(&d)
                .into_iter()
                .filter(|&i| explains(&diagnostics[i]) && same(&diagnostics[i]))
                .min();
            match first.map(|i| &mut diagnostics[i]) {
                Some(s) => {
                    // The rule's own measurement that judges more severely
                    // than its static half (a note on the weights as
                    // written, a warning on the values they give) raises the
                    // finding; another rule's finding it absorbs does not.
                    if s.rule == d.rule {
                        s.severity = s.severity.max(d.severity);
                    }
                    s.notes
                        .push(format!("the probe measured it: {}", d.message))
                }
                None => {
                    index.add(diagnostics.len(), &d);
                    diagnostics.push(d);
                }
            }
        }
    }
    Some(measure::of(&probe, main, settings, facts))
}

/// Findings by the nodes they concern (their node and the nodes they span)
/// and, for those about no node, by their primary span: where a measured
/// finding looks for the finding it adds to, without scanning every finding
/// for each measurement (a 100,000-node chain measures 50,000 dead layers).
#[derive(Default)]
struct Concerning {
    by_node: rustc_hash::FxHashMap<String, Vec<usize>>,
    by_span: rustc_hash::FxHashMap<(usize, usize, usize), Vec<usize>>,
}

impl Concerning {
    fn of(diagnostics: &[Diagnostic]) -> Concerning {
        let mut index = Concerning::default();
        for (i, d) in diagnostics.iter().enumerate() {
            index.add(i, d);
        }
        index
    }

    fn span(d: &Diagnostic) -> (usize, usize, usize) {
        let (file, span) = d.primary_span();
        (file, span.start, span.end)
    }

    fn add(&mut self, i: usize, d: &Diagnostic) {
        for name in d.node.iter().chain(&d.spans_nodes) {
            self.by_node.entry(name.clone()).or_default().push(i);
        }
        if d.node.is_none() {
            self.by_span.entry(Self::span(d)).or_default().push(i);
        }
    }

    /// The findings that may concern what `d` does: a superset of those
    /// `same` in [`run`] accepts.
    fn candidates(&self, d: &Diagnostic) -> Vec<usize> {
        match &d.node {
            Some(n) => std::iter::once(n)
                .chain(&d.spans_nodes)
                .filter_map(|n| self.by_node.get(n))
                .flatten()
                .copied()
                .collect(),
            None => self
                .by_span
                .get(&Self::span(d))
                .cloned()
                .unwrap_or_default(),
        }
    }
}
