//! The author's Python sources: finding them, showing their lines, and the
//! `# nnlint: ignore[...]` comments written there.
//!
//! A recorded path is looked up relative to the model's folder, then to the
//! current directory, then (when absolute) as recorded. Only `.py` files are
//! read: a model cannot make nnlint print a line of an arbitrary file.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use crate::diag::position::Sources;
use crate::diag::PythonLocation;
use crate::graph::PyOrigin;

/// Python files larger than this are not read.
const MAX_SOURCE: u64 = 8 << 20;

/// The Python files one report has read, as texts of its [`Sources`].
pub struct PythonFiles<'a> {
    model_dir: PathBuf,
    sources: &'a mut Sources,
    /// Recorded path -> (source id, path shown), `None` when it could not be read.
    loaded: HashMap<String, Option<(usize, String)>>,
}

/// A suppression comment: `None` for every rule, or the named rules and codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub rules: Option<Vec<String>>,
    /// The comment's span in its file.
    pub span: Range<usize>,
    pub text: String,
}

impl<'a> PythonFiles<'a> {
    pub fn new(model: &Path, sources: &'a mut Sources) -> Self {
        let model_dir = model.parent().map(Path::to_path_buf).unwrap_or_default();
        PythonFiles {
            model_dir,
            sources,
            loaded: HashMap::new(),
        }
    }

    /// Where an origin is, reading its file the first time it is asked for.
    pub fn locate(&mut self, origin: &PyOrigin) -> PythonLocation {
        let loaded = match self.loaded.get(&origin.file) {
            Some(l) => l.clone(),
            None => {
                let l = self.load(&origin.file);
                self.loaded.insert(origin.file.clone(), l.clone());
                l
            }
        };
        let source = loaded
            .as_ref()
            .and_then(|(id, _)| Some((*id, line_span(self.text(*id), origin.line)?)));
        PythonLocation {
            origin: origin.clone(),
            path: loaded
                .map(|(_, shown)| shown)
                .unwrap_or_else(|| origin.file.clone()),
            source,
        }
    }

    fn text(&self, id: usize) -> &str {
        self.sources
            .get(id)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    fn load(&mut self, recorded: &str) -> Option<(usize, String)> {
        let rel = Path::new(recorded);
        if rel.extension().is_none_or(|e| e != "py") {
            return None;
        }
        let candidates: Vec<PathBuf> = if rel.is_absolute() {
            vec![rel.to_path_buf()]
        } else {
            vec![normalize(&self.model_dir.join(rel)), rel.to_path_buf()]
        };
        for path in candidates {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() || meta.len() > MAX_SOURCE {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let shown = path.display().to_string();
            let id = self.sources.add(shown.clone(), text);
            return Some((id, shown));
        }
        None
    }

    /// The `# nnlint: ignore` comment on an origin's line, if any.
    pub fn suppression(&self, at: &PythonLocation) -> Option<Suppression> {
        let (id, span) = at.source.as_ref()?;
        let text = self.text(*id);
        parse_suppression(text.get(span.clone())?, span.start)
    }
}

/// The span of line `line` (1-based) without its indentation and newline.
fn line_span(text: &str, line: usize) -> Option<Range<usize>> {
    let mut start = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let content = l.trim_end_matches(['\n', '\r']);
            let indent = content.len() - content.trim_start().len();
            return Some(start + indent..start + content.len());
        }
        start += l.len();
    }
    None
}

/// Lexically removes `.` and `a/..` from a path.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses `# nnlint: ignore` or `# nnlint: ignore[rule, CODE]` in a line.
pub fn parse_suppression(line: &str, offset: usize) -> Option<Suppression> {
    let hash = line.find('#')?;
    let comment = &line[hash + 1..];
    let rest = comment.trim_start().strip_prefix("nnlint:")?.trim_start();
    let rest = rest.strip_prefix("ignore")?;
    let (rules, used) = match rest.strip_prefix('[') {
        Some(list) => {
            let close = list.find(']')?;
            let names = list[..close]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            (
                Some(names),
                hash + 1 + (comment.len() - rest.len()) + close + 2,
            )
        }
        None => (None, hash + 1 + comment.len() - rest.len()),
    };
    let end = used.min(line.len());
    Some(Suppression {
        rules,
        span: offset + hash..offset + end,
        text: line[hash..end].to_string(),
    })
}

/// Points findings at the Python lines that created their nodes, applies the
/// `# nnlint: ignore` comments written there, and reports the unused ones.
pub fn attach_origins(
    model: &crate::onnx::Model,
    graphs: &[crate::graph::Graph<'_>],
    settings: &crate::Settings,
    sources: &mut Sources,
    diagnostics: &mut Vec<crate::diag::Diagnostic>,
) {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    let origins: HashMap<&str, crate::graph::PyOrigin> = graphs
        .iter()
        .flat_map(|g| g.nodes())
        .filter(|n| !n.name().is_empty())
        .filter_map(|n| Some((n.name(), n.python_origin()?)))
        .collect();
    if origins.is_empty() {
        return;
    }
    let mut py = PythonFiles::new(&model.path, sources);
    // Per commented line: the comment and which of its names suppressed something.
    let mut comments: BTreeMap<(usize, usize), (Suppression, BTreeSet<String>)> = BTreeMap::new();
    for d in diagnostics.iter_mut() {
        let Some(origin) = d.node.as_deref().and_then(|n| origins.get(n)) else {
            continue;
        };
        let at = py.locate(origin);
        if let (Some(s), Some((file, line))) = (py.suppression(&at), at.source.clone()) {
            let hit = match &s.rules {
                None => Some("*".to_string()),
                Some(names) => names
                    .iter()
                    .find(|n| *n == d.rule || n.eq_ignore_ascii_case(d.code))
                    .cloned(),
            };
            let entry = comments
                .entry((file, line.start))
                .or_insert_with(|| (s.clone(), BTreeSet::new()));
            if let Some(name) = hit {
                entry.1.insert(name);
                d.suppressed_by = Some(s.text.clone());
            }
        }
        d.origin = Some(at);
    }
    // Every commented line that created a node of this model is judged, not only
    // the lines that have findings.
    let mut seen: BTreeSet<&crate::graph::PyOrigin> = BTreeSet::new();
    let mut all: Vec<&crate::graph::PyOrigin> = origins.values().collect();
    all.sort();
    for origin in all {
        if !seen.insert(origin) {
            continue;
        }
        let at = py.locate(origin);
        if let (Some(s), Some((file, line))) = (py.suppression(&at), at.source) {
            comments
                .entry((file, line.start))
                .or_insert_with(|| (s, BTreeSet::new()));
        }
    }
    if settings
        .selection
        .enabled(&crate::rules::unused_suppression::META)
    {
        for ((file, _), (s, used)) in &comments {
            let unused: BTreeSet<String> = match &s.rules {
                None if used.is_empty() => BTreeSet::from(["*".to_string()]),
                None => BTreeSet::new(),
                Some(names) => names
                    .iter()
                    .filter(|n| !used.contains(*n))
                    .cloned()
                    .collect(),
            };
            if !unused.is_empty() {
                diagnostics.push(crate::rules::unused_suppression::report(*file, s, &unused));
            }
        }
    }
    if !settings.show_suppressed {
        diagnostics.retain(|d| d.suppressed_by.is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suppression_comments() {
        let s = parse_suppression(
            "x = self.drop(x)  # nnlint: ignore[dropout-before-batchnorm, NN302]",
            100,
        )
        .unwrap();
        assert_eq!(
            s.rules,
            Some(vec!["dropout-before-batchnorm".into(), "NN302".into()])
        );
        assert_eq!(s.text, "# nnlint: ignore[dropout-before-batchnorm, NN302]");
        assert_eq!(s.span.start, 118);
        let all = parse_suppression("y = f(x) #nnlint: ignore", 0).unwrap();
        assert_eq!(all.rules, None);
        assert_eq!(all.text, "#nnlint: ignore");
        assert!(parse_suppression("y = f(x)  # noqa", 0).is_none());
        assert!(parse_suppression("y = f(x)", 0).is_none());
    }

    #[test]
    fn line_spans_skip_indentation() {
        let text = "a\n    b = 1\nc";
        assert_eq!(line_span(text, 2), Some(6..11));
        assert_eq!(&text[6..11], "b = 1");
        assert_eq!(line_span(text, 9), None);
        assert_eq!(
            normalize(Path::new("fixtures/torch/../generate.py")),
            PathBuf::from("fixtures/generate.py")
        );
    }
}
