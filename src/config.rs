//! Project configuration: `nnlint.toml`, or `[tool.nnlint]` in `pyproject.toml`.
//!
//! Found by walking up from each linted file; `--config` names one explicitly.
//! Every key, rule name, selector and threshold is checked when the file is
//! read, and a mistake is an error that names the file, line and column.
//!
//! ```toml
//! select = ["ALL"]            # rules to run (default: all)
//! extend-select = []          # added to select
//! ignore = ["NN307"]          # rules not to run
//! model-state = "auto"        # auto | trained | untrained
//! exclude = ["models/legacy"]  # what a folder walk skips, instead of the defaults
//! extend-exclude = []         # added to the default excludes
//!
//! [rules.dropout-rate]
//! severity = "error"          # error | warning | note
//! high = 0.3                  # a threshold the rule's page documents
//!
//! [per-file-ignores]
//! "models/legacy/*.onnx" = ["init-scale"]   # relative to this file
//!
//! [per-node-ignores]
//! "/encoder/*" = ["linear-stack"]
//!
//! [paths]                     # where recorded Python paths are here,
//! source = ["src/", "/home/ci/*/project/src/"]  # as coverage.py's [paths]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diag::Severity;
use crate::rules::{self, Selection};

pub const FILE_NAME: &str = "nnlint.toml";

/// A configuration mistake, at its place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

pub use crate::rules::RuleConfig;

/// A parsed configuration file.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The file it came from, and the folder its globs are relative to.
    pub path: Option<PathBuf>,
    pub select: Option<Vec<String>>,
    pub extend_select: Vec<String>,
    pub ignore: Vec<String>,
    pub rules: BTreeMap<&'static str, RuleConfig>,
    pub per_file_ignores: Vec<(GlobMatcher, Vec<String>)>,
    pub per_node_ignores: Vec<(GlobMatcher, Vec<String>)>,
    /// `model-state`: the state to assume instead of deciding it (`None`: auto).
    pub model_state: Option<crate::graph::ModelState>,
    /// `exclude`: replaces [`DEFAULT_EXCLUDE`] when given.
    pub exclude: Option<Vec<GlobMatcher>>,
    /// `extend-exclude`: added to the excludes.
    pub extend_exclude: Vec<GlobMatcher>,
    /// `[paths]`: recorded Python path prefixes and the folder each is here.
    pub paths: Vec<PathAlias>,
}

/// Folders a folder walk skips unless `exclude` replaces the list, after
/// ruff's: version control, caches, virtual environments, installed packages.
/// Hidden folders and what `.gitignore` lists are skipped as well.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    ".bzr",
    ".direnv",
    ".eggs",
    ".git",
    ".hg",
    ".ipynb_checkpoints",
    ".mypy_cache",
    ".nox",
    ".pytest_cache",
    ".ruff_cache",
    ".svn",
    ".tox",
    ".venv",
    "__pycache__",
    "__pypackages__",
    "node_modules",
    "site-packages",
    "venv",
];

/// What a folder walk skips: names and globs, matched against an entry's
/// name and against its path relative to the configuration's folder.
pub struct Excludes {
    base: Option<PathBuf>,
    globs: Vec<GlobMatcher>,
}

impl Excludes {
    pub fn new(config: Option<&Config>) -> Excludes {
        let defaults = || {
            DEFAULT_EXCLUDE
                .iter()
                .filter_map(|n| Glob::new(n).ok().map(|g| g.compile_matcher()))
                .collect::<Vec<_>>()
        };
        let mut globs = config
            .and_then(|c| c.exclude.clone())
            .unwrap_or_else(defaults);
        globs.extend(config.iter().flat_map(|c| c.extend_exclude.iter().cloned()));
        Excludes {
            base: config.and_then(|c| c.base().canonicalize().ok()),
            globs,
        }
    }

    /// Whether the walk skips `path`, a file or folder it reached. A folder
    /// with a `pyvenv.cfg` is a virtual environment whatever its name.
    pub fn skips(&self, path: &Path, is_dir: bool) -> bool {
        if is_dir && path.join("pyvenv.cfg").is_file() {
            return true;
        }
        let name = path.file_name().map(Path::new);
        let rel = self.base.as_deref().and_then(|base| {
            let abs = path.canonicalize().ok()?;
            abs.strip_prefix(base).ok().map(Path::to_path_buf)
        });
        self.globs.iter().any(|g| {
            name.is_some_and(|n| g.is_match(n)) || rel.as_deref().is_some_and(|r| g.is_match(r))
        })
    }
}

/// One `[paths]` entry: recorded prefixes (globs per path component) that
/// stand for `local`, as coverage.py's `[paths]` does.
#[derive(Clone, Debug)]
pub struct PathAlias {
    pub name: String,
    /// The folder here, relative to the configuration's folder when relative.
    pub local: PathBuf,
    pub recorded: Vec<Vec<GlobMatcher>>,
}

impl PathAlias {
    /// `recorded` rewritten under `local`, when one of the prefixes matches it.
    pub fn rewrite(&self, recorded: &str) -> Option<PathBuf> {
        let parts = components(recorded);
        self.recorded.iter().find_map(|prefix| {
            if prefix.len() > parts.len() || !prefix.iter().zip(&parts).all(|(g, p)| g.is_match(p))
            {
                return None;
            }
            let mut out = self.local.clone();
            out.extend(&parts[prefix.len()..]);
            Some(out)
        })
    }
}

/// A recorded path's components, for either separator; a leading `/` or a
/// drive letter is its first component.
pub fn components(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = path.split(['/', '\\']).filter(|c| !c.is_empty()).collect();
    if path.starts_with(['/', '\\']) {
        parts.insert(0, "/");
    }
    parts
}

impl Config {
    /// The folder globs are relative to.
    pub fn base(&self) -> PathBuf {
        self.path
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Selectors that `per-file-ignores` turns off for `file`.
    pub fn ignored_for_file(&self, file: &Path) -> Vec<String> {
        let base = self.base().canonicalize().unwrap_or_default();
        let file = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
        let rel = file.strip_prefix(&base).unwrap_or(&file).to_path_buf();
        let name = file.file_name().map(PathBuf::from).unwrap_or_default();
        self.per_file_ignores
            .iter()
            .filter(|(g, _)| g.is_match(&rel) || g.is_match(&name))
            .flat_map(|(_, s)| s.iter().cloned())
            .collect()
    }

    /// Whether a finding of `rule` on node `node` is ignored by `per-node-ignores`.
    pub fn ignored_for_node(&self, rule: &crate::rules::RuleMeta, node: &str) -> bool {
        self.per_node_ignores.iter().any(|(g, selectors)| {
            g.is_match(node)
                && Selection::new(selectors, &[]).is_ok_and(|s| s.enabled_explicitly(rule))
        })
    }
}

/// The configuration that applies to `file`: the nearest `nnlint.toml`, or
/// `pyproject.toml` with a `[tool.nnlint]` table, in its folder or above.
pub fn discover(file: &Path) -> Result<Option<Config>, ConfigError> {
    let start = file
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    discover_in(start.as_deref())
}

/// The configuration that applies to folder `dir`: the nearest one in it or above.
pub fn discover_from(dir: &Path) -> Result<Option<Config>, ConfigError> {
    discover_in(dir.canonicalize().ok().as_deref())
}

fn discover_in(start: Option<&Path>) -> Result<Option<Config>, ConfigError> {
    let mut dir = start;
    while let Some(d) = dir {
        let own = d.join(FILE_NAME);
        if own.is_file() {
            return load(&own).map(Some);
        }
        let py = d.join("pyproject.toml");
        if py.is_file() {
            if let Some(c) = load_pyproject(&py)? {
                return Ok(Some(c));
            }
        }
        dir = d.parent();
    }
    Ok(None)
}

/// Reads a configuration file: `nnlint.toml`, or a `pyproject.toml`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    if path.file_name().is_some_and(|n| n == "pyproject.toml") {
        return load_pyproject(path)?.ok_or_else(|| ConfigError {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            message: "no [tool.nnlint] table".into(),
        });
    }
    let text = read(path)?;
    let doc = parse(path, &text)?;
    Parser { path, text: &text }.config(doc.get_ref())
}

fn load_pyproject(path: &Path) -> Result<Option<Config>, ConfigError> {
    let text = read(path)?;
    let doc = parse(path, &text)?;
    let p = Parser { path, text: &text };
    let Some(tool) = doc.get_ref().get("tool") else {
        return Ok(None);
    };
    let DeValue::Table(tool) = tool.get_ref() else {
        return Ok(None);
    };
    match tool.get("nnlint") {
        Some(v) => match v.get_ref() {
            DeValue::Table(t) => p.config(t).map(Some),
            _ => Err(p.error(v.span(), "[tool.nnlint] must be a table")),
        },
        None => Ok(None),
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        line: 1,
        column: 1,
        message: format!("cannot read configuration: {e}"),
    })
}

fn parse<'t>(path: &Path, text: &'t str) -> Result<Spanned<DeTable<'t>>, ConfigError> {
    DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let (line, column) = line_col(text, span.start);
        ConfigError {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Parser<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    fn config(&self, table: &DeTable<'_>) -> Result<Config, ConfigError> {
        let mut c = Config {
            path: Some(self.path.to_path_buf()),
            ..Default::default()
        };
        for (key, value) in table {
            match key.get_ref().as_ref() {
                "select" => c.select = Some(self.selectors(value, "select")?),
                "extend-select" => c.extend_select = self.selectors(value, "extend-select")?,
                "ignore" => c.ignore = self.selectors(value, "ignore")?,
                "rules" => c.rules = self.rules(value)?,
                "per-file-ignores" => c.per_file_ignores = self.globs(value, "per-file-ignores")?,
                "per-node-ignores" => c.per_node_ignores = self.globs(value, "per-node-ignores")?,
                "model-state" => c.model_state = self.model_state(value)?,
                "exclude" => c.exclude = Some(self.patterns(value, "exclude")?),
                "extend-exclude" => c.extend_exclude = self.patterns(value, "extend-exclude")?,
                "paths" => c.paths = self.paths(value)?,
                other => {
                    return Err(self.error(
                        key.span(),
                        format!("unknown key `{other}` (expected select, extend-select, ignore, model-state, exclude, extend-exclude, paths, rules, per-file-ignores or per-node-ignores)"),
                    ))
                }
            }
        }
        Ok(c)
    }

    fn strings<'v>(
        &self,
        value: &'v Spanned<DeValue<'_>>,
        what: &str,
    ) -> Result<Vec<(&'v str, Range<usize>)>, ConfigError> {
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.error(value.span(), format!("{what} must be a list of strings")));
        };
        items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Ok((s.as_ref(), item.span())),
                _ => Err(self.error(item.span(), format!("{what} must be a list of strings"))),
            })
            .collect()
    }

    fn glob(&self, pattern: &str, span: Range<usize>) -> Result<GlobMatcher, ConfigError> {
        Glob::new(pattern)
            .map(|g| g.compile_matcher())
            .map_err(|e| self.error(span, format!("invalid glob: {e}")))
    }

    fn patterns(
        &self,
        value: &Spanned<DeValue<'_>>,
        key: &str,
    ) -> Result<Vec<GlobMatcher>, ConfigError> {
        self.strings(value, &format!("`{key}`"))?
            .into_iter()
            .map(|(s, span)| self.glob(s.trim_end_matches(['/', '\\']), span))
            .collect()
    }

    fn paths(&self, value: &Spanned<DeValue<'_>>) -> Result<Vec<PathAlias>, ConfigError> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.error(
                value.span(),
                "`paths` must be a table of name = [local folder, recorded prefix, ...]",
            ));
        };
        let mut out = Vec::new();
        for (name, list) in table {
            let what = format!("[paths] {}", name.get_ref());
            let items = self.strings(list, &what)?;
            let Some(((local, _), recorded)) = items.split_first().filter(|(_, r)| !r.is_empty())
            else {
                return Err(self.error(
                    list.span(),
                    format!(
                        "{what} needs the local folder first, then at least one recorded prefix"
                    ),
                ));
            };
            let recorded = recorded
                .iter()
                .map(|(p, span)| {
                    components(p)
                        .into_iter()
                        .map(|c| self.glob(c, span.clone()))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push(PathAlias {
                name: name.get_ref().to_string(),
                local: PathBuf::from(local),
                recorded,
            });
        }
        Ok(out)
    }

    fn model_state(
        &self,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<Option<crate::graph::ModelState>, ConfigError> {
        use crate::graph::ModelState;
        match value.get_ref() {
            DeValue::String(s) if s == "auto" => Ok(None),
            DeValue::String(s) if s == "trained" => Ok(Some(ModelState::Trained)),
            DeValue::String(s) if s == "untrained" => Ok(Some(ModelState::Untrained)),
            _ => Err(self.error(
                value.span(),
                "model-state must be \"auto\", \"trained\" or \"untrained\"",
            )),
        }
    }

    fn selectors(
        &self,
        value: &Spanned<DeValue<'_>>,
        key: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.error(
                value.span(),
                format!("`{key}` must be a list of rule selectors"),
            ));
        };
        items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => {
                    Selection::new(&[s.to_string()], &[]).map_err(|_| {
                        self.error(
                            item.span(),
                            format!(
                                "unknown rule selector `{s}` in `{key}`{}",
                                rules::suggest(s)
                            ),
                        )
                    })?;
                    Ok(s.to_string())
                }
                _ => Err(self.error(item.span(), format!("`{key}` must be a list of strings"))),
            })
            .collect()
    }

    fn rules(
        &self,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<BTreeMap<&'static str, RuleConfig>, ConfigError> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.error(value.span(), "`rules` must be a table of rule names"));
        };
        let mut out = BTreeMap::new();
        for (name, settings) in table {
            let rule = rules::all()
                .find(|r| r.meta().name == name.get_ref().as_ref())
                .ok_or_else(|| {
                    self.error(
                        name.span(),
                        format!(
                            "unknown rule `{}`{}",
                            name.get_ref(),
                            rules::suggest(name.get_ref())
                        ),
                    )
                })?;
            let meta = rule.meta();
            let DeValue::Table(settings_table) = settings.get_ref() else {
                return Err(self.error(
                    settings.span(),
                    format!("[rules.{}] must be a table", meta.name),
                ));
            };
            let mut rc = RuleConfig::default();
            for (key, v) in settings_table {
                let key_str = key.get_ref().as_ref();
                if key_str == "severity" {
                    rc.severity = Some(match v.get_ref() {
                        DeValue::String(s) if s == "error" => Severity::Error,
                        DeValue::String(s) if s == "warning" => Severity::Warning,
                        DeValue::String(s) if s == "note" => Severity::Note,
                        _ => {
                            return Err(self.error(
                                v.span(),
                                "severity must be \"error\", \"warning\" or \"note\"",
                            ))
                        }
                    });
                    continue;
                }
                let Some(option) = meta.options.iter().find(|o| o.name == key_str) else {
                    let known: Vec<&str> = meta.options.iter().map(|o| o.name).collect();
                    let expected = if known.is_empty() {
                        "this rule takes only `severity`".to_string()
                    } else {
                        format!("expected severity, {}", known.join(", "))
                    };
                    return Err(self.error(
                        key.span(),
                        format!(
                            "unknown setting `{key_str}` for rule `{}` ({expected})",
                            meta.name
                        ),
                    ));
                };
                let number = match v.get_ref() {
                    DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                        .ok()
                        .map(|i| i as f64),
                    DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
                    _ => None,
                };
                let number = number
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| self.error(v.span(), format!("`{key_str}` must be a number")))?;
                rc.options.insert(option.name, number);
            }
            out.insert(meta.name, rc);
        }
        Ok(out)
    }

    fn globs(
        &self,
        value: &Spanned<DeValue<'_>>,
        key: &str,
    ) -> Result<Vec<(GlobMatcher, Vec<String>)>, ConfigError> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.error(
                value.span(),
                format!("`{key}` must be a table of glob = [rules]"),
            ));
        };
        let mut out = Vec::new();
        for (pattern, selectors) in table {
            let glob = self.glob(pattern.get_ref(), pattern.span())?;
            out.push((glob, self.selectors(selectors, key)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        let path = Path::new("nnlint.toml");
        let doc = parse(path, text)?;
        Parser { path, text }.config(doc.get_ref())
    }

    #[test]
    fn reads_every_key() -> Result<(), ConfigError> {
        let c = parse_str(
            "select = [\"NN3\"]\nextend-select = [\"invalid-graph\"]\nignore = [\"NN307\"]\n\
             [rules.dropout-rate]\nseverity = \"error\"\nhigh = 0.3\n\
             [per-file-ignores]\n\"legacy/*.onnx\" = [\"init-scale\"]\n\
             [per-node-ignores]\n\"/fc1/*\" = [\"dead-relu\"]\n",
        )?;
        assert_eq!(c.select, Some(vec!["NN3".to_string()]));
        assert_eq!(c.rules["dropout-rate"].severity, Some(Severity::Error));
        assert_eq!(c.rules["dropout-rate"].options["high"], 0.3);
        assert!(c.per_node_ignores[0].0.is_match("/fc1/Gemm"));
        Ok(())
    }

    #[test]
    fn excludes_and_paths() -> Result<(), ConfigError> {
        let c = parse_str(
            "extend-exclude = [\"exports/old/\"]\n\
             [paths]\nsource = [\"src/\", \"/home/*/proj/lib/\", \"C:\\\\ci\\\\lib\"]\n",
        )?;
        assert!(c.exclude.is_none());
        assert!(c.extend_exclude[0].is_match("exports/old"));
        let alias = &c.paths[0];
        assert_eq!(
            alias.rewrite("/home/alice/proj/lib/net/model.py"),
            Some(PathBuf::from("src/net/model.py"))
        );
        assert_eq!(
            alias.rewrite("C:\\ci\\lib\\model.py"),
            Some(PathBuf::from("src/model.py"))
        );
        assert_eq!(alias.rewrite("/home/alice/other/lib/model.py"), None);
        let e = parse_str("[paths]\nsource = \"src/\"\n").unwrap_err();
        assert!(e.message.contains("must be a list of strings"), "{e}");
        Ok(())
    }

    #[test]
    fn mistakes_name_their_line_and_column() {
        let cases = [
            ("selct = []\n", 1, 1, "unknown key `selct`"),
            (
                "select = [\"NN3\", \"nope\"]\n",
                1,
                18,
                "unknown rule selector `nope`",
            ),
            (
                "[rules.no-such-rule]\nseverity = \"error\"\n",
                1,
                8,
                "unknown rule `no-such-rule`",
            ),
            (
                "[rules.dropout-rate]\nhihg = 1\n",
                2,
                1,
                "unknown setting `hihg`",
            ),
            (
                "[rules.dropout-rate]\nseverity = \"fatal\"\n",
                2,
                12,
                "severity must be",
            ),
            (
                "[rules.dropout-rate]\nhigh = \"x\"\n",
                2,
                8,
                "`high` must be a number",
            ),
            ("select = [\n", 1, 11, "unclosed array"),
        ];
        for (text, line, column, message) in cases {
            let e = parse_str(text).expect_err(text);
            assert_eq!((e.line, e.column), (line, column), "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
        }
    }
}
