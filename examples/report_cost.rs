//! What the html report costs beyond the run: lints one model once, then
//! times, in the process, the sha256 the page's header records and the
//! rendering of the json findings, the json report and the html page, each
//! the median of several renders. `benches/report.py` prints its line.
//!
//!     cargo build --release --example report_cost
//!     target/release/examples/report_cost MODEL [--probe-memory MIB]

use std::path::Path;
use std::time::Instant;

use nnlint::diag::render::{render, Format, RenderOptions};

fn median_ms(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        eprintln!("usage: report_cost MODEL [--probe-memory MIB]");
        std::process::exit(2);
    };
    let mut options = nnlint::Options {
        config: nnlint::ConfigSource::None,
        ..Default::default()
    };
    if let Some(i) = args.iter().position(|a| a == "--probe-memory") {
        options.probe.memory_mib = args[i + 1].parse().expect("a number of MiB");
    }
    let path = Path::new(model);
    let start = Instant::now();
    let file = match nnlint::lint_file(path, &options) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let lint_s = start.elapsed().as_secs_f64();
    // The model and its data files, as `--format html` hashes them.
    let Ok(nnlint::Read::Model(read)) = nnlint::read_model(path) else {
        eprintln!("error: {model}: not a binary model");
        std::process::exit(2);
    };
    let mut scratch = nnlint::FileReport::new(String::new(), Default::default(), Vec::new());
    let hash_ms = median_ms(|| nnlint::fingerprint(&read.0, &mut scratch));
    let hashed_mb: u64 = read
        .0
        .data_files()
        .iter()
        .filter_map(|(_, f)| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum::<u64>()
        + std::fs::metadata(path).map_or(0, |m| m.len());
    let report = nnlint::report(
        nnlint::run_record("lint", args.clone(), &options),
        vec![file],
    );
    let mut size = 0;
    let mut time = |format| {
        median_ms(|| {
            let mut out = Vec::new();
            render(format, &report, &RenderOptions::default(), &mut out).expect("renders");
            size = out.len();
        })
    };
    let json_ms = time(Format::Json);
    let report_ms = time(Format::JsonReport);
    let html_ms = time(Format::Html);
    println!(
        "{model}: lint {lint_s:.2} s; sha256 of {:.0} MB {hash_ms:.1} ms, json {json_ms:.1} ms, json-report {report_ms:.1} ms, html {html_ms:.1} ms ({:.2} MB); html beyond the run: {:.3} s",
        hashed_mb as f64 / 1e6,
        size as f64 / 1e6,
        (hash_ms + html_ms) / 1e3
    );
}
