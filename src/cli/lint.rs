//! `nnlint PATH...`: lint each model the paths name.

use std::io::IsTerminal;

use nnlint::diag::render::{Format, RenderOptions};
use nnlint::{expand_paths, lint_file, Options};

use crate::args::{LintArgs, StateArg};
use crate::config_source;
use crate::output::{self, Output};

/// Lints the models `args` names; `arguments` are the command line as given.
pub(crate) fn lint(args: LintArgs, arguments: Vec<String>) -> u8 {
    if args.paths.is_empty() {
        eprintln!("error: no model given\n\nUsage: nnlint [OPTIONS] <PATH>...\n\nFor more information, try '--help'.");
        return 2;
    }
    let config = match config_source(args.isolated, args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let options = Options {
        select: args.select,
        extend_select: args.extend_select,
        ignore: args.ignore,
        config,
        show_suppressed: args.show_suppressed,
        model_state: args.model_state.map(StateArg::assumed),
        fingerprint: matches!(args.format, Format::Html | Format::JsonReport),
        probe: nnlint::probe::ProbeOptions {
            enabled: !args.no_probe,
            gradients: !args.no_grad,
            seed: args.seed,
            dims: args.dim.into_iter().collect(),
            files: args.input.into_iter().collect(),
            batch: args.batch as usize,
            memory_mib: args.probe_memory,
            seconds: args.probe_time,
            progress: std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
            fit_steps: args.overfit_steps,
            first_step: args.lr.map(|lr| nnlint::probe::FirstStep {
                optimizer: args.optimizer.optimizer(),
                lr,
            }),
            piece_nodes: nnlint::probe::segment::NODES,
        },
    };
    // Selectors from the command line are checked once, before any file is read.
    if let Err(e) = nnlint::Settings::new(&options, None, std::path::Path::new("")) {
        eprintln!("error: {e}");
        return 2;
    }
    let mut failed = false;
    let mut reports = Vec::new();
    let walk = nnlint::Walk {
        respect_gitignore: !args.no_respect_gitignore,
    };
    let expanded = expand_paths(&args.paths, &options.config, walk);
    for dir in &expanded.empty {
        eprintln!(
            "warning: no models (.onnx, .onnxtxt) found in {}",
            dir.display()
        );
    }
    for path in expanded.files {
        match path.and_then(|p| lint_file(&p, &options)) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    // A name no model has is a typo: a usage error, before any output.
    let names: Vec<_> = reports.iter().filter_map(|r| r.inputs.as_ref()).collect();
    let given = nnlint::probe::inputs::InputOptions {
        dims: options.probe.dims.clone(),
        files: options.probe.files.clone(),
        ..Default::default()
    };
    if !names.is_empty() {
        if let Err(e) = given.check(&names) {
            eprintln!("error: {e}");
            return 2;
        }
    }
    failed |= reports.iter().any(|r| r.failed);
    for e in reports.iter().filter_map(|r| r.unreadable.as_ref()) {
        eprintln!("error: {e}");
    }
    let report = nnlint::report(nnlint::run_record("lint", arguments, &options), reports);
    let output = Output {
        format: args.format,
        render: RenderOptions {
            color: args.color.enabled(),
            prefer: args.location,
            quiet: args.quiet,
            verbose: args.verbose,
        },
        statistics: args.statistics,
        fail_on: args.fail_on.severity(),
        exit_zero: args.exit_zero,
    };
    output::write(&report, &output, failed)
}
