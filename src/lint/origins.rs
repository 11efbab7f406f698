//! The author's Python sources: finding them, showing their lines, and the
//! `# nnlint: ignore[...]` comments written there.
//!
//! torch records the paths of the machine that exported. A recorded path is
//! looked up, first hit wins:
//! 1. rewritten by the configuration's `[paths]` entries (coverage.py's
//!    `[paths]`: a local folder, then the recorded prefixes it stands for);
//! 2. as recorded: relative to the model's folder, then to the current
//!    directory, or as is when absolute;
//! 3. by suffix, longest first, under the project's folders (the
//!    configuration's folder, the current directory, the model's folder and
//!    the folders above it up to the repository root), so that a checkout
//!    moved to another machine still finds `models/net.py` of
//!    `/home/alice/proj/models/net.py`. A bare file name is looked up only
//!    beside the model and in the `[paths]` folders.
//!
//! Only `.py` files are read: a model cannot make nnlint print a line of an
//! arbitrary file. A line is shown only when it is the line that created the
//! node: dynamo records each frame's text, and a file edited since export
//! is searched near the recorded line for it ([`SourceCheck`]).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use crate::config::{components, Config, PathAlias};
use crate::diag::position::Sources;
use crate::diag::{PythonLocation, SourceCheck};
use crate::graph::PyOrigin;

/// Python files larger than this are not read.
const MAX_SOURCE: u64 = 8 << 20;

/// How many lines above and below the recorded one are searched for its text.
const MOVED_WITHIN: usize = 200;

/// How many trailing components of a recorded path are tried as suffixes.
const MAX_SUFFIX: usize = 16;

/// How many folders above the model's are searched by suffix, at most.
const MAX_ANCESTORS: usize = 8;

/// The Python files one report has read, as texts of its [`Sources`].
pub struct PythonFiles<'a, 'o> {
    model_dir: PathBuf,
    aliases: Vec<PathAlias>,
    /// Folders a recorded path's suffix is looked up under, and whether a
    /// bare file name may match there.
    roots: Vec<(PathBuf, bool)>,
    sources: &'a mut Sources,
    /// Recorded path -> (source id, path shown), `None` when it could not be read.
    loaded: HashMap<String, Option<(usize, String)>>,
    /// Every origin the model records, by recorded path, for [`file_shift`].
    recorded: HashMap<&'o str, Vec<&'o PyOrigin>>,
    /// Recorded path -> how far its lines moved since export.
    shifts: HashMap<String, Option<isize>>,
    /// Source id -> the byte range of each line, found once per file.
    lines: HashMap<usize, Vec<Range<usize>>>,
}

/// A file's text and where its lines are.
struct Lines<'t> {
    text: &'t str,
    ranges: &'t [Range<usize>],
}

impl<'t> Lines<'t> {
    /// The byte range of each line, without its newline.
    fn ranges(text: &str) -> Vec<Range<usize>> {
        let mut start = 0;
        text.split_inclusive('\n')
            .map(|l| {
                let range = start..start + l.trim_end_matches(['\n', '\r']).len();
                start += l.len();
                range
            })
            .collect()
    }

    /// Line `n` (1-based), without its newline.
    fn get(&self, n: usize) -> Option<&'t str> {
        let r = self.ranges.get(n.checked_sub(1)?)?;
        self.text.get(r.clone())
    }

    /// The span of line `n` (1-based) without its indentation and newline.
    fn span(&self, n: usize) -> Option<Range<usize>> {
        let r = self.ranges.get(n.checked_sub(1)?)?;
        let content = self.text.get(r.clone())?;
        let indent = content.len() - content.trim_start().len();
        Some(r.start + indent..r.end)
    }
}

pub use crate::diag::Suppression;

impl<'a, 'o> PythonFiles<'a, 'o> {
    /// `origins`: every origin the model records; a file's lines are checked
    /// against all of them at once.
    pub fn new(
        model: &Path,
        config: Option<&Config>,
        sources: &'a mut Sources,
        origins: impl Iterator<Item = &'o PyOrigin>,
    ) -> Self {
        let mut recorded: HashMap<&'o str, Vec<&'o PyOrigin>> = HashMap::new();
        for o in origins {
            recorded.entry(o.file.as_str()).or_default().push(o);
        }
        let model_dir = model.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = config.map(Config::base);
        let aliases = config
            .map(|c| {
                c.paths
                    .iter()
                    .map(|a| PathAlias {
                        local: base.clone().unwrap_or_default().join(&a.local),
                        ..a.clone()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut roots: Vec<(PathBuf, bool)> = Vec::new();
        if let Some(b) = &base {
            roots.push((b.clone(), false));
        }
        roots.push((PathBuf::new(), false));
        let dir = if model_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            model_dir.clone()
        };
        if let Ok(dir) = dir.canonicalize() {
            for (i, d) in dir.ancestors().take(MAX_ANCESTORS).enumerate() {
                roots.push((d.to_path_buf(), i == 0));
                if d.join(".git").exists() {
                    break;
                }
            }
        }
        PythonFiles {
            model_dir,
            aliases,
            roots,
            sources,
            loaded: HashMap::new(),
            recorded,
            shifts: HashMap::new(),
            lines: HashMap::new(),
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
        let Some((id, shown)) = loaded else {
            return PythonLocation {
                origin: origin.clone(),
                path: origin.file.clone(),
                line: origin.line,
                check: SourceCheck::Unread,
                source: None,
            };
        };
        if !self.lines.contains_key(&id) {
            let ranges = Lines::ranges(self.text(id));
            self.lines.insert(id, ranges);
        }
        let shift = match self.shifts.get(&origin.file) {
            Some(s) => *s,
            None => {
                let all = self
                    .recorded
                    .get(origin.file.as_str())
                    .into_iter()
                    .flatten()
                    .copied();
                let s = file_shift(&self.lines_of(id), all.chain([origin]));
                self.shifts.insert(origin.file.clone(), s);
                s
            }
        };
        let lines = self.lines_of(id);
        let (line, check) = check_line(&lines, origin, shift);
        let source = match check {
            SourceCheck::Changed | SourceCheck::Unread => None,
            _ => lines.span(line).map(|span| (id, span)),
        };
        PythonLocation {
            origin: origin.clone(),
            path: shown,
            line,
            check,
            source,
        }
    }

    /// Source `id`'s lines; [`Self::locate`] has found their ranges.
    fn lines_of(&self, id: usize) -> Lines<'_> {
        Lines {
            text: self.text(id),
            ranges: self.lines.get(&id).map_or(&[], Vec::as_slice),
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
        if !recorded.ends_with(".py") {
            return None;
        }
        let mut candidates: Vec<PathBuf> = self
            .aliases
            .iter()
            .filter_map(|a| a.rewrite(recorded))
            .collect();
        if rel.is_absolute() {
            candidates.push(rel.to_path_buf());
        } else {
            candidates.push(normalize(&self.model_dir.join(rel)));
            candidates.push(rel.to_path_buf());
        }
        // Suffixes, longest first; a bare name beside the model or under `[paths]`.
        let parts: Vec<&str> = components(recorded)
            .into_iter()
            .filter(|c| !matches!(*c, "/" | "." | "..") && !c.ends_with(':'))
            .collect();
        // The last MAX_SUFFIX components at most: a real path is shorter, and a
        // model's made-up one must not cost a stat per component per root.
        for start in parts.len().saturating_sub(MAX_SUFFIX)..parts.len() {
            let suffix: PathBuf = parts[start..].iter().collect();
            let bare = start + 1 == parts.len();
            for (root, names) in &self.roots {
                if !bare || *names {
                    candidates.push(root.join(&suffix));
                }
            }
            if bare {
                candidates.extend(self.aliases.iter().map(|a| a.local.join(&suffix)));
            }
        }
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

/// How far the recorded lines of one file have moved. Lines added or
/// removed above move every line below by one amount, so the shift is the
/// one that puts the most recorded texts back on their lines, at least
/// half of them and two at least; 0 whenever 0 does that for half. `None` when no shift
/// fits, or when several fit as well (a block pasted twice in a file fits
/// two): which one the edit made would be a guess. A line the shift does
/// not explain is changed, never matched to a look-alike elsewhere.
fn file_shift<'o>(lines: &Lines<'_>, origins: impl Iterator<Item = &'o PyOrigin>) -> Option<isize> {
    let mut recorded: Vec<(usize, &str, &str)> = origins
        .filter_map(|o| {
            let t = o.text.as_deref()?;
            Some((o.line, t.trim(), code(t)))
        })
        .collect();
    recorded.sort();
    recorded.dedup();
    // A line that reads exactly as recorded scores 2; one that differs only
    // by a comment (added since, as `# nnlint: ignore` is) scores 1, so that
    // the block a shift lands on exactly wins over a look-alike copy.
    let points = |(line, exact, stripped): &(usize, &str, &str), d: isize| {
        let n = line.checked_add_signed(d)?;
        let l = lines.get(n)?.trim();
        match (l == *exact, code(l) == *stripped) {
            (true, _) => Some(2),
            (false, true) => Some(1),
            _ => None,
        }
    };
    let enough = recorded.len();
    // The file as recorded: the common case, and no search.
    let unmoved: usize = recorded.iter().filter_map(|r| points(r, 0)).sum();
    if unmoved >= enough {
        return Some(0);
    }
    let mut score: HashMap<isize, (usize, usize)> = HashMap::new();
    let window = MOVED_WITHIN as isize;
    for r in &recorded {
        for d in (-window..=window).filter(|&d| d != 0) {
            if let Some(p) = points(r, d) {
                let entry = score.entry(d).or_default();
                entry.0 += p;
                entry.1 += 1;
            }
        }
    }
    // Half of the lines back in place, exactly; a move needs two lines to
    // agree on it, as one line alone may have a look-alike anywhere.
    score.retain(|_, &mut (_, lines)| lines >= 2);
    let best = score
        .values()
        .map(|&(n, _)| n)
        .max()
        .filter(|&n| n >= enough)?;
    let mut fitting = score.iter().filter(|&(_, &(n, _))| n == best);
    match (fitting.next(), fitting.next()) {
        (Some((&d, _)), None) => Some(d),
        // Several shifts fit as well: which one the edit made is a guess,
        // and a guess may be a wrong line.
        _ => None,
    }
}

/// Which line of `text` created the node, and how sure that is. `shift` is
/// the file's [`file_shift`].
fn check_line(lines: &Lines<'_>, origin: &PyOrigin, shift: Option<isize>) -> (usize, SourceCheck) {
    let at = |n: usize| lines.get(n).map(code);
    match origin.text.as_deref().map(code) {
        Some(recorded) => {
            let moved = origin.line.checked_add_signed(shift.unwrap_or(0));
            match moved.filter(|&n| at(n) == Some(recorded)) {
                Some(moved) if moved == origin.line => (moved, SourceCheck::Verified),
                Some(moved) => (moved, SourceCheck::Moved),
                None => (origin.line, SourceCheck::Changed),
            }
        }
        // TorchScript records no text: the line must at least be a statement
        // that can compute something, inside a function of the recorded name.
        None => match enclosing_function(lines, origin.line) {
            _ if !computes(at(origin.line).unwrap_or("")) => (origin.line, SourceCheck::Changed),
            // `<lambda>`, `<module>`, `<listcomp>`: no `def` to look for.
            Some(f) if f != origin.function && !origin.function.starts_with('<') => {
                (origin.line, SourceCheck::Changed)
            }
            _ => (origin.line, SourceCheck::Unverified),
        },
    }
}

/// A line without its indentation and trailing comment: a comment added
/// since export (`# nnlint: ignore`, most often) leaves the line the same one.
fn code(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => return line[..i].trim(),
            _ => {}
        }
    }
    line.trim()
}

/// Whether a line (without its comment) is a statement that can create a
/// node: not blank, not a `def`, `class`, decorator or import.
fn computes(code: &str) -> bool {
    let keyword = |k: &str| {
        code.strip_prefix(k)
            .is_some_and(|rest| rest.starts_with([' ', '(', ':']))
    };
    !(code.is_empty()
        || code.starts_with('@')
        || ["def", "async", "class", "import", "from"]
            .into_iter()
            .any(keyword))
}

/// The name of the innermost `def` whose body holds line `line` (1-based).
fn enclosing_function<'t>(lines: &Lines<'t>, line: usize) -> Option<&'t str> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let own = indent(lines.get(line)?);
    (1..line).rev().filter_map(|n| lines.get(n)).find_map(|l| {
        let t = l.trim_start();
        if t.is_empty() || indent(l) >= own {
            return None;
        }
        let rest = t.strip_prefix("async ").unwrap_or(t).strip_prefix("def ")?;
        Some(rest.split(['(', ' ', ':']).next().unwrap_or(rest))
    })
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
pub fn attach(
    model: &crate::onnx::Model,
    graphs: &[crate::graph::Graph<'_>],
    settings: &crate::options::Settings,
    sources: &mut Sources,
    diagnostics: &mut Vec<crate::diag::Diagnostic>,
) {
    use crate::diag::UnusedSuppression;
    use crate::rules;
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
    let mut py = PythonFiles::new(
        &model.path,
        settings.config.as_ref(),
        sources,
        origins.values(),
    );
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
    let unused: Vec<UnusedSuppression> = comments
        .into_iter()
        .filter_map(|((file, _), (comment, used))| {
            let rules: BTreeSet<String> = match &comment.rules {
                None if used.is_empty() => BTreeSet::from(["*".to_string()]),
                None => BTreeSet::new(),
                Some(names) => names
                    .iter()
                    .filter(|n| !used.contains(*n))
                    .cloned()
                    .collect(),
            };
            (!rules.is_empty()).then_some(UnusedSuppression {
                file,
                comment,
                rules,
            })
        })
        .collect();
    for rule in rules::all().filter(|r| {
        r.meta().pass == rules::Pass::Suppressions && settings.selection.enabled(r.meta())
    }) {
        rule.suppressions(&unused, diagnostics);
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
    fn comments_and_indentation_do_not_change_a_line() {
        assert_eq!(
            code("    x = self.drop(x)  # nnlint: ignore"),
            "x = self.drop(x)"
        );
        assert_eq!(code("s = '#not a comment'  # one"), "s = '#not a comment'");
        assert_eq!(code(r##"t = "a\"#b""##), r##"t = "a\"#b""##);
        let text = "class Net:\n    def forward(self, x):\n        for i in x:\n            y = i\nz = 1\n";
        let ranges = Lines::ranges(text);
        let lines = Lines {
            text,
            ranges: &ranges,
        };
        assert_eq!(enclosing_function(&lines, 4), Some("forward"));
        assert!(computes("x = self.drop(x)"));
        assert!(computes("return x + y"));
        assert!(computes("classes = self.head(x)"));
        assert!(!computes("def forward(self, x):"));
        assert!(!computes("@torch.no_grad()"));
        assert!(!computes("from torch import nn"));
        assert!(!computes(""));
        assert_eq!(enclosing_function(&lines, 5), None);
    }

    #[test]
    fn a_file_shift_is_the_one_that_fits_best_or_none() {
        let o = |line, text: &str| PyOrigin {
            file: "m.py".into(),
            line,
            function: "forward".into(),
            module: None,
            class: None,
            text: Some(text.into()),
        };
        let block = "a = f(x)\nb = g(a)\nc = h(b)\n";
        // The same block twice: lines 1-3 and 4-6.
        let file = format!("{block}{block}");
        let rec = [o(4, "a = f(x)"), o(5, "b = g(a)"), o(6, "c = h(b)")];
        let shift = |text: &str, rec: &[PyOrigin]| {
            let ranges = Lines::ranges(text);
            file_shift(
                &Lines {
                    text,
                    ranges: &ranges,
                },
                rec.iter(),
            )
        };
        assert_eq!(shift(&file, &rec), Some(0));
        let once = "a = f(x)\nb = g(a)\nc = h(b)\nd = 1\n";
        let rec_once = [o(1, "a = f(x)"), o(2, "b = g(a)"), o(3, "c = h(b)")];
        assert_eq!(shift(&format!("import os\n\n{once}"), &rec_once), Some(2));
        // Shifted, with the block twice: -1 and +2 both fit.
        assert_eq!(shift(&format!("import os\n\n{file}"), &rec), None);
        assert_eq!(shift("nothing\n", &rec), None);
        // Line numbers a model made up do not overflow the search.
        let far = [
            o(usize::MAX, "a = f(x)"),
            o(isize::MAX as usize, "b = g(a)"),
            o(0, "c = h(b)"),
        ];
        assert_eq!(shift(&file, &far), None);
        let ranges = Lines::ranges(&file);
        let lines = Lines {
            text: &file,
            ranges: &ranges,
        };
        assert_eq!(
            check_line(&lines, &far[1], Some(200)).1,
            SourceCheck::Changed
        );
        // One recorded line, gone from its place, and a look-alike below: no move.
        let one = [o(1, "y = self.fc(x)")];
        assert_eq!(
            shift("y = self.fc2(x)\nz = 1\ny = self.fc(x)\n", &one),
            None
        );
        // One line of the three edited: the others keep the shift, and it is changed.
        let edited =
            file.replacen("b = g(a)\nc", "b = g2(a)\nc", 2)
                .replacen("b = g2(a)", "b = g(a)", 1);
        assert_eq!(shift(&edited, &rec), Some(0));
        let ranges = Lines::ranges(&edited);
        let lines = Lines {
            text: &edited,
            ranges: &ranges,
        };
        assert_eq!(check_line(&lines, &rec[1], Some(0)).1, SourceCheck::Changed);
        assert_eq!(
            check_line(&lines, &rec[0], Some(0)),
            (4, SourceCheck::Verified)
        );
    }

    #[test]
    fn line_spans_skip_indentation() {
        let text = "a\n    b = 1\nc";
        let ranges = Lines::ranges(text);
        let lines = Lines {
            text,
            ranges: &ranges,
        };
        assert_eq!(lines.span(2), Some(6..11));
        assert_eq!(&text[6..11], "b = 1");
        assert_eq!(lines.span(9), None);
        assert_eq!(
            normalize(Path::new("fixtures/torch/../generate.py")),
            PathBuf::from("fixtures/generate.py")
        );
    }
}
