//! The command line: parse the arguments, run the command, exit with its
//! code. `lint` and `diff` run the library's pipeline and hand the report
//! to [`output::write`], the one place that prints a report and chooses
//! the exit code; `rules`, `explain` and `print` answer from the rules'
//! metadata and the model's listing.

mod args;
mod diff;
mod lint;
mod output;
mod print;
mod rules;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use args::{Cli, Command};
use nnlint::{config, ConfigSource};

/// A model decodes into hundreds of thousands of small allocations (names,
/// attributes, shapes). mimalloc serves them from thread-local pages and
/// faults in fewer fresh ones: the static pass on a 100k-node chain takes
/// 0.19 s with it and 0.31 s with glibc's allocator (median of 11 runs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_huge_pages();
    pin_candle_threads();
    let cli = Cli::parse();
    // As given, for the reports that record what reproduces a run.
    let arguments: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = match cli.command {
        Some(Command::Rules { format }) => rules::list(format),
        Some(Command::Explain { rule, format }) => rules::explain(&rule, format),
        Some(Command::Print { path, values }) => print::print(&path, values),
        Some(Command::Diff(args)) => {
            let after_command = arguments.iter().skip_while(|a| *a != "diff").skip(1);
            diff::diff(args, after_command.cloned().collect())
        }
        None => lint::lint(cli.lint, arguments),
    };
    ExitCode::from(code)
}

/// candle sizes each matrix product's threads from `RAYON_NUM_THREADS`,
/// or, when that is unset, from what it finds on every product: on Linux a
/// `CANDLE_CPU_MASK`, the cores of highest `cpu_capacity` when they differ,
/// and otherwise the physical core count, which it finds by parsing
/// `/proc/cpuinfo` again each time: over a quarter of a one-batch fit's time,
/// and an eighth of a large graph's run even on machines that report equal
/// capacities. Asking candle once, here, before any thread exists, and
/// setting the variable to its answer keeps candle's choice and drops the
/// parsing. A mask (which candle caches) or a variable already set is left
/// alone.
fn pin_candle_threads() {
    let unset = |v| std::env::var_os(v).is_none();
    if unset("RAYON_NUM_THREADS") && unset("CANDLE_CPU_MASK") {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// mimalloc asks for transparent huge pages on its arenas, and the kernel
/// zeroes each 2 MiB page whole on its first touch, however little of it is
/// used. Measured after another process had freed its memory (the paired
/// runs of the scaling benchmark, a pre-commit hook after other hooks): the
/// static pass on a 100k-node chain took 0.49 s wall with 0.25 s of it in
/// the kernel, and 0.42 s with 0.10 s without huge pages; a default run of
/// timm's EfficientNet-B0 1.00 s against 0.87 s, and 386 MiB of peak memory
/// against 356 MiB. Disabled for this process only, before its threads start.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes
    // no memory the program holds; a kernel without it returns an error,
    // which changes nothing either.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Where the configuration comes from: none (`--isolated`), the file given
/// (`--config`, read now: exit code 2 if it cannot be), or the nearest one
/// above each model.
pub(crate) fn config_source(isolated: bool, path: Option<&PathBuf>) -> Result<ConfigSource, u8> {
    if isolated {
        return Ok(ConfigSource::None);
    }
    match path {
        Some(p) => config::load(p)
            .map(|c| ConfigSource::Fixed(Arc::new(c)))
            .map_err(|e| {
                eprintln!("error: {e}");
                2
            }),
        None => Ok(ConfigSource::Discover),
    }
}
