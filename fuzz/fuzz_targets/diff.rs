//! A pair of small models through `nnlint diff`. The input is the first
//! model's length (4 bytes, little-endian), then both models' bytes.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nnlint::onnx::Model;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (a, b) = rest.split_at(len);
    let model = |bytes: &[u8], name: &str| {
        let proto = nnlint::onnx::load::decode(bytes::Bytes::copy_from_slice(bytes)).ok()?;
        Model::from_proto(Path::new(name), proto).ok()
    };
    let (Some(a), Some(b)) = (model(a, "before.onnx"), model(b, "after.onnx")) else {
        return;
    };
    let (src_a, src_b) = (nnlint::listing(&a), nnlint::listing(&b));
    let settings = nnlint_fuzz::settings(false);
    let report = nnlint::diff::diff_models((&a, &src_a), (&b, &src_b), &settings, 5.0);
    let _ = nnlint::diag::render::diff::table(&report.layers, 5.0, report.band);
    nnlint_fuzz::render_all(vec![report.report]);
});
