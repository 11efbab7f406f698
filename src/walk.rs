//! The folder walk: which model files the command line's paths name.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config;
use crate::onnx::LoadError;
use crate::options::{ConfigSource, Error};

/// File extensions nnlint lints when given a folder.
pub const MODEL_EXTENSIONS: &[&str] = &["onnx", "onnxtxt"];

/// How a folder named on the command line is searched for models.
#[derive(Clone, Copy, Debug)]
pub struct Walk {
    /// Skip what `.gitignore`, `.ignore` and `.git/info/exclude` list.
    pub respect_gitignore: bool,
}

impl Default for Walk {
    fn default() -> Self {
        Walk {
            respect_gitignore: true,
        }
    }
}

/// The models the command line names, in order.
#[derive(Debug, Default)]
pub struct Expanded {
    /// Each model file, or why a path could not be searched.
    pub files: Vec<Result<PathBuf, Error>>,
    /// Folders that were searched and hold no model.
    pub empty: Vec<PathBuf>,
}

/// The model files `args` name: files as given (whatever excludes say, as
/// ruff lints a file it is given), folders searched as ruff searches them:
/// hidden folders, what `.gitignore` lists, virtual environments and the
/// configuration's `exclude` are skipped; each folder's files come sorted.
pub fn expand_paths(args: &[PathBuf], config: &ConfigSource, walk: Walk) -> Expanded {
    let mut out = Expanded::default();
    for a in args {
        if a.is_dir() {
            let config = match config {
                ConfigSource::Fixed(c) => Some(c.clone()),
                ConfigSource::None => None,
                ConfigSource::Discover => match config::discover_from(a) {
                    Ok(c) => c.map(Arc::new),
                    Err(e) => {
                        out.files.push(Err(Error::Config(e)));
                        continue;
                    }
                },
            };
            let excludes = config::Excludes::new(config.as_deref());
            let mut found = Vec::new();
            let walker = ignore::WalkBuilder::new(a)
                .hidden(true)
                .parents(true)
                .ignore(walk.respect_gitignore)
                .git_ignore(walk.respect_gitignore)
                .git_global(walk.respect_gitignore)
                .git_exclude(walk.respect_gitignore)
                .require_git(false)
                .follow_links(false)
                .filter_entry(move |e| {
                    let is_dir = e.file_type().is_some_and(|t| t.is_dir());
                    e.depth() == 0 || !excludes.skips(e.path(), is_dir)
                })
                .build();
            for entry in walker.flatten() {
                let path = entry.path();
                if entry.file_type().is_some_and(|t| t.is_file())
                    && path
                        .extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| MODEL_EXTENSIONS.contains(&x))
                {
                    found.push(path.to_path_buf());
                }
            }
            if found.is_empty() {
                out.empty.push(a.clone());
            }
            found.sort();
            out.files.extend(found.into_iter().map(Ok));
        } else if a.exists() {
            out.files.push(Ok(a.clone()));
        } else {
            out.files.push(Err(Error::Load(LoadError {
                path: a.clone(),
                reason: "no such file or folder".into(),
            })));
        }
    }
    out
}
