//! The run record: what reproduces a run (its options, as a report
//! records them), and the sha256 of each file it read.

use std::path::Path;

use crate::diag::report::{DataFile, FileReport, Run};
use crate::onnx;
use crate::options::Options;

/// What reproduces a lint run with `options`, given as `arguments`.
pub fn run_record(command: &'static str, arguments: Vec<String>, options: &Options) -> Run {
    let p = &options.probe;
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let on = |b: bool| if b { "on" } else { "off" }.to_string();
    let mut o = std::collections::BTreeMap::new();
    o.insert("select".to_string(), list(&options.select));
    o.insert("extend-select".to_string(), list(&options.extend_select));
    o.insert("ignore".to_string(), list(&options.ignore));
    o.insert(
        "model-state".to_string(),
        match options.model_state {
            Some(Some(s)) => s.as_str().to_string(),
            _ => "auto".to_string(),
        },
    );
    o.insert("probe".to_string(), on(p.enabled));
    o.insert("gradients".to_string(), on(p.gradients));
    o.insert("batch".to_string(), p.batch.to_string());
    o.insert("probe-memory".to_string(), format!("{} MiB", p.memory_mib));
    o.insert("probe-time".to_string(), format!("{} s", p.seconds));
    let pairs = |m: Vec<String>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.join(",")
        }
    };
    o.insert(
        "dim".to_string(),
        pairs(p.dims.iter().map(|(k, v)| format!("{k}={v}")).collect()),
    );
    o.insert(
        "input".to_string(),
        pairs(
            p.files
                .iter()
                .map(|(k, v)| format!("{k}={}", v.display()))
                .collect(),
        ),
    );
    o.insert(
        "overfit-steps".to_string(),
        p.fit_steps
            .map_or("rule default".to_string(), |s| s.to_string()),
    );
    if let Some(step) = &p.first_step {
        o.insert("lr".to_string(), step.lr.to_string());
        o.insert(
            "optimizer".to_string(),
            step.optimizer.name().to_lowercase(),
        );
    }
    Run {
        tool: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        command,
        arguments,
        seed: p.seed,
        options: o,
    }
}

/// Records the sha256 of `model`'s file and of each of its data files in
/// `report`; a file that cannot be read meanwhile is left out (its weights
/// already failed the lint, or will be read by nobody).
pub fn fingerprint(model: &onnx::Model, report: &mut FileReport) {
    report.sha256 = sha256(&model.path).ok();
    report.data = model
        .data_files()
        .into_iter()
        .filter_map(|(location, file)| {
            Some(DataFile {
                location,
                sha256: sha256(&file).ok()?,
            })
        })
        .collect();
}

/// The sha256 of a file, in hex.
pub fn sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
