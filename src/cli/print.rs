//! `nnlint print`: a model in the ONNX textual syntax.

use nnlint::diag::position::Prefer;
use nnlint::diag::render::{render, Format, RenderOptions};
use nnlint::onnx::printer::{print_model, Values};

use crate::args::Color;

/// `nnlint print PATH`: the model's listing, the text diagnostics point into.
pub(crate) fn print(path: &std::path::Path, values: bool) -> u8 {
    match nnlint::read_model(path) {
        Ok(nnlint::Read::Model(read)) => {
            let mode = if values { Values::Full } else { Values::Elide };
            print!("{}", print_model(&read.0.proto, mode).text);
            // The listing is whole without the values; say which could not be read.
            match read.0.unreadable {
                Some(reason) => {
                    eprintln!("error: {}: {reason}", path.display());
                    2
                }
                None => 0,
            }
        }
        Ok(nnlint::Read::Syntax(unparsed)) => {
            let options = RenderOptions {
                color: Color::Auto.enabled(),
                prefer: Prefer::Model,
                quiet: true,
                verbose: false,
            };
            let report = nnlint::report(Default::default(), vec![nnlint::unparsed(*unparsed)]);
            let _ = render(Format::Human, &report, &options, &mut std::io::stderr());
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
