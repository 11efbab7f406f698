//! Reading a model file: a binary model, or a text model with its source.

use std::path::Path;

use crate::onnx::printer::{print_model, Values};
use crate::onnx::text::SyntaxError;
use crate::onnx::{self, LoadError};
use crate::options::Error;

/// A model file as nnlint reads it: the model and the text diagnostics point
/// into. That text is the file itself for `.onnxtxt`; a binary model has none
/// until its [`listing`] is printed, which [`lint_model`](crate::lint_model) does while it
/// builds the graph.
pub enum Read {
    Model(Box<(onnx::Model, Option<onnx::source::Source>)>),
    /// A text model that does not parse.
    Syntax(Box<Unparsed>),
}

/// A text model that does not parse: the file, its text and where it stops
/// following the syntax. The rules of [`Pass::Read`](crate::rules::Pass::Read)
/// report it ([`lint::unparsed`](crate::lint::unparsed)).
pub struct Unparsed {
    /// The path as reports show it.
    pub path: String,
    pub text: String,
    pub error: SyntaxError,
}

/// Reads a binary (`.onnx`) or text (`.onnxtxt`) model.
pub fn read_model(path: &Path) -> Result<Read, Error> {
    if path.extension().is_some_and(|e| e == "onnxtxt") {
        let err = |reason: String| LoadError {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read file: {e}")))?;
        if meta.is_dir() {
            return Err(err("is a directory".into()).into());
        }
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read file: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| err("is not UTF-8 text".into()))?;
        return match onnx::text::parse_model(&text) {
            Ok((proto, source)) => Ok(Read::Model(Box::new((
                onnx::Model::from_proto(path, proto)?,
                Some(source),
            )))),
            Err(error) => Ok(Read::Syntax(Box::new(Unparsed {
                path: path.display().to_string(),
                text,
                error,
            }))),
        };
    }
    let model = onnx::load_partial(path)?;
    Ok(Read::Model(Box::new((model, None))))
}

/// The listing of a binary model, weights elided, that findings point into.
pub fn listing(model: &onnx::Model) -> onnx::source::Source {
    print_model(&model.proto, Values::Elide)
}
