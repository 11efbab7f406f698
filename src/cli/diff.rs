//! `nnlint diff BEFORE AFTER`: two checkpoints of one model, compared.

use nnlint::diag::render::{Format, RenderOptions};
use nnlint::diag::report::DiffTable;
use nnlint::diag::Severity;
use nnlint::{config, ConfigSource, Options};

use crate::args::DiffArgs;
use crate::config_source;
use crate::output::{self, Output};

/// Compares the checkpoints `args` names; `arguments` are those after `diff`.
pub(crate) fn diff(args: DiffArgs, arguments: Vec<String>) -> u8 {
    let config = match config_source(args.isolated, args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config = match config {
        ConfigSource::Fixed(c) => Some((*c).clone()),
        ConfigSource::None => None,
        ConfigSource::Discover => match config::discover(&args.after) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
    };
    let options = Options {
        fingerprint: matches!(args.format, Format::Html | Format::JsonReport),
        ..Default::default()
    };
    let settings = match nnlint::Settings::new(&options, config.as_ref(), &args.after) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let result = match nnlint::diff::diff_files(&args.before, &args.after, &settings, args.steps) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut run = nnlint::run_record("diff", arguments, &Options::default());
    run.options = [("steps".to_string(), args.steps.to_string())].into();
    let mut report = nnlint::report(run, vec![result.report]);
    report.diff = Some(DiffTable {
        steps: args.steps,
        band: result.band,
        layers: result.layers,
        paired: !result.mismatch,
    });
    let output = Output {
        format: args.format,
        render: RenderOptions {
            color: args.color.enabled(),
            prefer: args.location,
            quiet: args.quiet,
            verbose: false,
        },
        statistics: false,
        fail_on: Severity::Warning,
        exit_zero: false,
    };
    output::write(&report, &output, result.mismatch)
}
