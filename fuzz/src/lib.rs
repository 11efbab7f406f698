//! What every fuzz target shares: linting a decoded model and rendering the report.

use std::path::Path;

use nnlint::diag::render::{render, Format, RenderOptions};
use nnlint::onnx::proto::ModelProto;
use nnlint::probe::ProbeOptions;
use nnlint::{lint_model, lint_source, Options, Settings};

/// Memory the probe may use under the fuzzer: [`ALLOCATION_LIMIT`] sits
/// above it, so an allocation past the budget is a crash.
pub const PROBE_MIB: usize = 64;

/// The largest single allocation an input may ask for: what libFuzzer's
/// `-malloc_limit_mb=1024` checks under a sanitizer. The targets build
/// without one (`-s none`: Rust checks memory safety itself, and the
/// sanitizer's build of tract and candle took a third longer), so the
/// targets' allocator checks it instead.
pub const ALLOCATION_LIMIT: usize = 1 << 30;

/// The system allocator, aborting (a crash libFuzzer saves the input of)
/// on an allocation over [`ALLOCATION_LIMIT`].
pub struct Capped;

impl Capped {
    fn check(size: usize) {
        if size > ALLOCATION_LIMIT {
            eprintln!(
                "==nnlint-fuzz== an allocation of {size} bytes, over the limit of {ALLOCATION_LIMIT}"
            );
            std::process::abort();
        }
    }
}

// SAFETY: every call is passed to the system allocator unchanged; the check
// only aborts before it.
unsafe impl std::alloc::GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

/// Settings for every rule, with or without the probe.
pub fn settings(probe: bool) -> Settings {
    let options = Options {
        probe: ProbeOptions {
            enabled: probe,
            batch: 4,
            memory_mib: PROBE_MIB,
            ..ProbeOptions::default()
        },
        config: nnlint::ConfigSource::None,
        ..Options::default()
    };
    Settings::new(&options, None, Path::new("fuzz.onnx")).expect("default settings are valid")
}

/// Lints `proto` as if read from `fuzz.onnx` (or the text model's own source)
/// and renders the report in every format, which must not fail.
pub fn lint(proto: ModelProto, source: Option<nnlint::onnx::source::Source>, probe: bool) {
    // External data resolves against the working folder; a refusal is an ordinary outcome.
    let Ok(model) = nnlint::onnx::Model::from_proto(Path::new("fuzz.onnx"), proto) else {
        return;
    };
    let settings = settings(probe);
    let report = match source {
        Some(source) => lint_source(&model, source, &settings),
        None => lint_model(&model, &settings),
    };
    render_all(vec![report]);
}

pub fn render_all(files: Vec<nnlint::FileReport>) {
    let report = nnlint::report(Default::default(), files);
    for format in [
        Format::Human,
        Format::Short,
        Format::Json,
        Format::JsonReport,
        Format::Sarif,
        Format::Github,
        Format::Html,
    ] {
        let mut out = Vec::new();
        render(format, &report, &RenderOptions::default(), &mut out)
            .expect("rendering into memory cannot fail");
    }
}
