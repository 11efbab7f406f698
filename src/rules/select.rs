//! `--select` / `--ignore`: rule names, codes and code prefixes, the more specific winning.

use std::fmt;

use super::{all, RuleMeta};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Selector {
    All,
    Rule(&'static str),
    Prefix(String),
}

impl Selector {
    fn parse(s: &str) -> Option<Selector> {
        if s.eq_ignore_ascii_case("all") {
            return Some(Selector::All);
        }
        if let Some(r) = super::find(s) {
            return Some(Selector::Rule(r.meta().name));
        }
        let upper = s.to_ascii_uppercase();
        all()
            .any(|r| r.meta().code.starts_with(&upper))
            .then_some(Selector::Prefix(upper))
    }

    /// How specifically this selector matches `rule`, `None` when it does not.
    fn specificity(&self, rule: &RuleMeta) -> Option<usize> {
        match self {
            Selector::All => Some(0),
            Selector::Prefix(p) => rule.code.starts_with(p.as_str()).then_some(p.len()),
            Selector::Rule(name) => (*name == rule.name).then_some(usize::MAX),
        }
    }
}

/// A selector that names no rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    pub selector: String,
    pub origin: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown rule selector `{}` in {}: expected a rule name, a code or a code prefix{} (see `nnlint rules`)",
            self.selector,
            self.origin,
            super::suggest(&self.selector)
        )
    }
}

/// Which rules run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    select: Vec<Selector>,
    ignore: Vec<Selector>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            select: vec![Selector::All],
            ignore: Vec::new(),
        }
    }
}

impl Selection {
    /// An empty `select` means every rule.
    pub fn new(select: &[String], ignore: &[String]) -> Result<Selection, SelectorError> {
        let parse = |list: &[String], origin: &str| -> Result<Vec<Selector>, SelectorError> {
            list.iter()
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    Selector::parse(s).ok_or_else(|| SelectorError {
                        selector: s.to_string(),
                        origin: origin.to_string(),
                    })
                })
                .collect()
        };
        let mut select = parse(select, "--select")?;
        if select.is_empty() {
            select.push(Selector::All);
        }
        Ok(Selection {
            select,
            ignore: parse(ignore, "--ignore")?,
        })
    }

    /// Whether one of the `select` selectors names `rule` (ignoring `ignore`).
    pub fn enabled_explicitly(&self, rule: &RuleMeta) -> bool {
        self.select.iter().any(|s| s.specificity(rule).is_some())
    }

    /// Whether `rule` runs: the most specific selector decides, and `ignore` wins a tie.
    pub fn enabled(&self, rule: &RuleMeta) -> bool {
        let best = |list: &[Selector]| list.iter().filter_map(|s| s.specificity(rule)).max();
        match (best(&self.select), best(&self.ignore)) {
            (Some(s), Some(i)) => s > i,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &[&str], i: &[&str]) -> Selection {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Selection::new(&v(s), &v(i)).unwrap()
    }

    #[test]
    fn more_specific_selector_wins() {
        let rule = super::super::find("dropout-before-batchnorm")
            .unwrap()
            .meta();
        assert!(sel(&[], &[]).enabled(rule));
        assert!(!sel(&[], &["dropout-before-batchnorm"]).enabled(rule));
        assert!(!sel(&["NN3"], &[rule.code]).enabled(rule));
        assert!(sel(&[rule.code], &["NN3"]).enabled(rule));
        assert!(sel(&["dropout-before-batchnorm"], &["ALL"]).enabled(rule));
        assert!(!sel(&["NN3"], &["NN3"]).enabled(rule));
        assert!(!sel(&["invalid-graph"], &[]).enabled(rule));
        assert!(sel(&["nn"], &[]).enabled(rule));
    }

    #[test]
    fn unknown_selector_is_an_error() {
        let e = Selection::new(&["no-such-rule".into()], &[]).unwrap_err();
        assert_eq!(e.selector, "no-such-rule");
        assert!(e.to_string().contains("--select"));
        assert!(Selection::new(&[], &["NN9".into()]).is_err());
    }
}
