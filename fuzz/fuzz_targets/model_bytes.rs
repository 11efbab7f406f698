//! Model bytes through decode, graph build, every static rule and every renderer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(proto) = nnlint::onnx::load::decode(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    // The listing the diagnostics point into, re-parsed: the printer and the
    // text parser must agree on every model the decoder accepts.
    let listing = nnlint::onnx::printer::print_model(&proto, nnlint::onnx::printer::Values::Full);
    let _ = nnlint::onnx::text::parse_model(&listing.text);
    nnlint_fuzz::lint(proto, None, false);
});
