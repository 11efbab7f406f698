//! `nnlint diff`'s own output: the per-layer table `human` adds after the
//! findings, and the json object that carries the layers beside them.

use std::io::{self, Write};

use super::json;
use crate::diag::position::Prefer;
use crate::diag::report::{DiffTable, LayerDiff, Report};

/// The table after the findings, when the checkpoints paired: a blank line
/// when there were findings, then one row per weight.
pub fn render_human(report: &Report, diff: &DiffTable, out: &mut dyn Write) -> io::Result<()> {
    if report.files.iter().any(|f| !f.diagnostics.is_empty()) {
        writeln!(out)?;
    }
    write!(out, "{}", table(&diff.layers, diff.steps, diff.band))
}

/// The steps, the findings as `json` writes them, and every layer's numbers.
pub fn render_json(
    report: &Report,
    diff: &DiffTable,
    prefer: Prefer,
    out: &mut dyn Write,
) -> io::Result<()> {
    let value = serde_json::json!({
        "steps": diff.steps,
        "findings": json::findings(&report.files, prefer),
        "layers": diff.layers,
    });
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)
}

/// The table `--format human` adds: one row per weight, in graph order, with a
/// bar for the log of the update per step (`|` marks the healthy band).
pub fn table(layers: &[LayerDiff], steps: f64, band: Option<(f64, f64)>) -> String {
    let name_w = layers
        .iter()
        .map(|l| l.name.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 48);
    let shape = |l: &LayerDiff| format!("{:?}", l.shape).replace(' ', "");
    let shape_w = layers
        .iter()
        .map(|l| shape(l).len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<name_w$}  {:<shape_w$}  {:>9}  {:>11}  {:>9}  update per step, log scale 1e-7 .. 1e0\n",
        "layer", "shape", "||W||", "update/step", "unchanged"
    );
    // 1e-7 .. 1e0 over 28 columns: 4 columns per decade.
    let col = |v: f64| (((v.log10() + 7.0) * 4.0).round().clamp(0.0, 28.0)) as usize;
    for l in layers {
        let per_step = l.per_step(steps);
        let mut bar: Vec<char> = vec![' '; 29];
        for c in band
            .into_iter()
            .flat_map(|(low, high)| [col(low), col(high)])
        {
            bar[c] = '|';
        }
        // The value's own mark wins over a band edge it falls on.
        let mark = if !l.trainable {
            String::from("  (not trained)")
        } else if per_step == 0.0 {
            String::from("  frozen")
        } else {
            let end = col(per_step);
            for (i, b) in bar.iter_mut().enumerate().take(end + 1) {
                if i == end {
                    *b = '#';
                } else if *b != '|' {
                    *b = '-';
                }
            }
            format!(" {}", bar.iter().collect::<String>().trim_end())
        };
        let name: String = if l.name.chars().count() > name_w {
            let tail: String = l
                .name
                .chars()
                .rev()
                .take(name_w - 1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        } else {
            l.name.clone()
        };
        out.push_str(&format!(
            "{:<name_w$}  {:<shape_w$}  {:>9.3e}  {:>11.2e}  {:>8.1}%  {}\n",
            name,
            shape(l),
            l.norm_b,
            per_step,
            100.0 * l.unchanged as f64 / l.elements.max(1) as f64,
            mark.trim_start()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(relative_update: f64) -> LayerDiff {
        LayerDiff {
            name: "w".into(),
            before_name: None,
            shape: vec![4, 4],
            elements: 16,
            norm_a: 1.0,
            norm_b: 1.0,
            relative_update,
            unchanged: 0,
            non_finite_a: 0,
            non_finite_b: 0,
            trainable: true,
            node: None,
        }
    }

    /// A value on a band edge's column keeps its mark (it used to vanish
    /// behind the `|` at 7.99e-3, 1.30e-2 or 8.96e-5).
    #[test]
    fn a_value_on_a_band_edge_keeps_its_mark() {
        for v in [1e-4, 8.96e-5, 3e-2, 2.9e-2, 1e-3] {
            let t = table(&[layer(v)], 1.0, Some((1e-4, 3e-2)));
            let row = t.lines().nth(1).unwrap();
            assert!(row.contains('#'), "{v}: {row}");
        }
    }
}
