//! Text through the `.onnxtxt` parser, then linting.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok((proto, source)) = nnlint::onnx::text::parse_model(text) {
        nnlint_fuzz::lint(proto, Some(source), false);
    }
});
