//! `--format html`: one self-contained page for the run. The findings with
//! their listing snippets, and per probed model the depth profile, the loss,
//! and for `nnlint diff` each weight's update, drawn with plotters to inline
//! SVG. The page loads nothing: no script, no font, no stylesheet from
//! elsewhere, and its Content-Security-Policy forbids them.
//!
//! Node names and doc strings are the model author's (or an attacker's)
//! text: the template escapes every value it is given, and the charts carry
//! no model text, only numbers and their own captions.

use std::io::{self, Write};

use askama::Template;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::diag::position::Prefer;
use crate::diag::report::{
    DataFile, DiffTable, FileReport, LayerMeasure, Measurements, Report, Run,
};
use crate::diag::{short_number, Diagnostic};

#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    run: &'a Run,
    options: Vec<(&'a str, &'a str)>,
    files: Vec<FileView<'a>>,
    diff: Option<DiffView>,
}

struct FileView<'a> {
    id: usize,
    path: &'a str,
    sha256: &'a str,
    data: &'a [DataFile],
    config: Option<&'a str>,
    state: String,
    findings: Vec<FindingView<'a>>,
    charts: Vec<Chart>,
    losses: Vec<LossView<'a>>,
    layers: Vec<LayerView<'a>>,
    probed: bool,
}

struct FindingView<'a> {
    anchor: String,
    severity: &'static str,
    code: &'static str,
    rule: &'static str,
    message: &'a str,
    node: Option<&'a str>,
    /// The node's row in the layer table, when it has one.
    layer: Option<String>,
    /// The finding as the human format writes it: the listing snippet and
    /// the Python line.
    rendered: String,
    suppressed: bool,
}

struct LayerView<'a> {
    anchor: String,
    index: usize,
    node: &'a str,
    op: &'a str,
    mean: String,
    std: String,
    dead: String,
    saturated: String,
    gradient: String,
    /// The findings on it: their codes and anchors.
    findings: Vec<(&'static str, String)>,
}

struct LossView<'a> {
    node: &'a str,
    what: &'a str,
    value: String,
    expected: String,
    classes: usize,
    off: bool,
}

struct DiffView {
    steps: String,
    band: String,
    charts: Vec<Chart>,
    rows: Vec<DiffRow>,
}

struct DiffRow {
    index: usize,
    name: String,
    node: String,
    update: String,
    mark: &'static str,
}

/// A drawn chart: the SVG markup plotters wrote, and what it shows in words.
struct Chart {
    svg: String,
    caption: String,
}

/// The page shows each finding whole (the listing and the Python line), so
/// `--location` does not change it.
pub fn render(report: &Report, _prefer: Prefer, out: &mut dyn Write) -> io::Result<()> {
    let page = page(report);
    let html = page.render().map_err(io::Error::other)?;
    out.write_all(html.as_bytes())?;
    writeln!(out)
}

fn page(report: &Report) -> Page<'_> {
    let mut files: Vec<FileView> = report
        .files
        .iter()
        .enumerate()
        .map(|(i, r)| file_view(i, r))
        .collect();
    let diff = report.diff.as_ref().map(diff_view);
    // A diff's findings are on weights: they link to the weight's row.
    if let (Some(d), Some(f)) = (&diff, files.first_mut()) {
        for finding in f.findings.iter_mut().filter(|x| x.layer.is_none()) {
            finding.layer = d
                .rows
                .iter()
                .find(|r| Some(r.node.as_str()) == finding.node)
                .map(|r| format!("diff-{}", r.index));
        }
    }
    Page {
        run: &report.run,
        options: report
            .run
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        files,
        diff,
    }
}

fn file_view(id: usize, r: &FileReport) -> FileView<'_> {
    let layers: &[LayerMeasure] = r.measurements.as_ref().map_or(&[], |m| &m.layers);
    let findings: Vec<&Diagnostic> = r.diagnostics.iter().collect();
    let finding_anchor = |k: usize| format!("f{id}-finding-{k}");
    let layer_anchor = |l: usize| format!("f{id}-layer-{l}");
    // Each layer's findings: those about its node, or spanning it.
    let mut by_node: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, l) in layers
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.node.is_empty())
    {
        by_node.entry(l.node.as_str()).or_insert(i);
    }
    let mut on_layer: Vec<Vec<usize>> = vec![Vec::new(); layers.len()];
    for (k, d) in findings.iter().enumerate() {
        let mut hit: Vec<usize> = d
            .node
            .iter()
            .chain(&d.spans_nodes)
            .filter_map(|n| by_node.get(n.as_str()).copied())
            .collect();
        hit.sort_unstable();
        hit.dedup();
        for i in hit {
            on_layer[i].push(k);
        }
    }
    let flagged: Vec<bool> = on_layer
        .iter()
        .map(|ks| ks.iter().any(|&k| findings[k].suppressed_by.is_none()))
        .collect();
    let finding_views = findings
        .iter()
        .enumerate()
        .map(|(k, d)| FindingView {
            anchor: finding_anchor(k),
            severity: d.severity.as_str(),
            code: d.code,
            rule: d.rule,
            message: &d.message,
            node: d.node.as_deref(),
            layer: on_layer
                .iter()
                .position(|ks| ks.contains(&k))
                .map(layer_anchor),
            rendered: super::human::rendered(r, d),
            suppressed: d.suppressed_by.is_some(),
        })
        .collect();
    let layer_views = layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerView {
            anchor: layer_anchor(i),
            index: i,
            node: &l.node,
            op: &l.op,
            mean: short_number(l.mean),
            std: short_number(l.std),
            dead: percent(l.dead_fraction),
            saturated: percent(l.saturated_fraction),
            gradient: l.gradient_norm.map(short_number).unwrap_or_default(),
            findings: on_layer[i]
                .iter()
                .map(|&k| (findings[k].code, finding_anchor(k)))
                .collect(),
        })
        .collect();
    let (charts, losses) = match &r.measurements {
        Some(m) => (depth_charts(m, &flagged), loss_views(m)),
        None => (Vec::new(), Vec::new()),
    };
    let mut charts = charts;
    if let Some(fit) = r.measurements.as_ref().and_then(|m| m.fit.as_ref()) {
        let points: Vec<(f64, f64, bool)> = fit
            .losses
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64, v, false))
            .collect();
        charts.extend(draw(&Plot {
            title: "one-batch fit: loss by step",
            last: fit.losses.len().saturating_sub(1),
            x: "step",
            y: "loss",
            caption: format!(
                "Adam at lr {} on {} samples, {} steps; the dashed line is the loss that counts as fitted ({})",
                short_number(fit.lr),
                fit.samples,
                fit.losses.len().saturating_sub(1),
                short_number(fit.goal)
            ),
            log: true,
            series: vec![Series {
                points,
                color: BLUE,
                shape: Shape::Curve,
            }],
            band: None,
            lines: vec![fit.goal],
        }));
    }
    FileView {
        id,
        path: &r.path,
        sha256: r.sha256.as_deref().unwrap_or("not recorded"),
        data: &r.data,
        config: r.config.as_deref(),
        state: r
            .coverage
            .as_ref()
            .map(|c| format!("{}: {}", c.state.state, c.state.evidence))
            .unwrap_or_default(),
        findings: finding_views,
        charts,
        losses,
        layers: layer_views,
        probed: r.measurements.is_some(),
    }
}

fn percent(v: Option<f64>) -> String {
    v.map(|f| format!("{:.0}%", f * 100.0)).unwrap_or_default()
}

fn loss_views(m: &Measurements) -> Vec<LossView<'_>> {
    m.losses
        .iter()
        .map(|l| LossView {
            node: &l.node,
            what: l.what,
            value: short_number(l.value),
            expected: short_number(l.expected),
            classes: l.classes,
            off: l.off,
        })
        .collect()
}

/// The depth profile: spread, dead and saturated fractions, gradient norms.
fn depth_charts(m: &Measurements, flagged: &[bool]) -> Vec<Chart> {
    let mut charts = Vec::new();
    let points = |f: &dyn Fn(&LayerMeasure) -> Option<f64>| -> Vec<(f64, f64, bool)> {
        m.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i as f64, f(l)?, flagged[i])))
            .collect()
    };
    let b = &m.bands;
    let last = m.layers.len().saturating_sub(1);
    let spread = points(&|l| Some(l.std).filter(|s| s.is_finite() && *s > 0.0));
    let band = b.reference_spread.map(|r| (r * b.spread.0, r * b.spread.1));
    charts.extend(draw(&Plot {
        title: "activation spread by layer",
        last,
        x: "layer",
        y: "standard deviation",
        caption: match band {
            Some((lo, hi)) => format!(
                "the shaded band is activation-scale's range: {}x to {}x the spread entering the first weight layer ({} to {}); red points are layers with a finding",
                short_number(b.spread.0),
                short_number(b.spread.1),
                short_number(lo),
                short_number(hi)
            ),
            None => "red points are layers with a finding".into(),
        },
        log: true,
        series: vec![Series {
            points: spread,
            color: BLUE,
            shape: Shape::Line,
        }],
        band,
        lines: Vec::new(),
    }));
    let dead = points(&|l| l.dead_fraction);
    let saturated = points(&|l| l.saturated_fraction);
    if !dead.is_empty() || !saturated.is_empty() {
        let mut lines = Vec::new();
        if !dead.is_empty() {
            lines.push(b.dead_fraction);
        }
        if !saturated.is_empty() {
            lines.push(b.saturated_fraction);
        }
        charts.extend(draw(&Plot {
            title: "dead and saturated units by layer",
            last,
            x: "layer",
            y: "fraction of units",
            caption: format!(
                "squares: units of a relu never positive over the batch (dead-relu fires at {}); triangles: saturated units of a sigmoid or tanh (saturated-activation fires at {})",
                short_number(b.dead_fraction),
                short_number(b.saturated_fraction)
            ),
            log: false,
            series: vec![
                Series {
                    points: dead,
                    color: MAGENTA,
                    shape: Shape::Square,
                },
                Series {
                    points: saturated,
                    color: CYAN,
                    shape: Shape::Triangle,
                },
            ],
            band: None,
            lines,
        }));
    }
    let gradients = points(&|l| l.gradient_norm.filter(|g| g.is_finite() && *g > 0.0));
    if !gradients.is_empty() {
        charts.extend(draw(&Plot {
            title: "gradient norm by weight layer",
            last,
            x: "layer",
            y: "||dL/dw||",
            caption: "the loss's gradient for each weight layer's weight, from one backward pass"
                .into(),
            log: true,
            series: vec![Series {
                points: gradients,
                color: BLUE,
                shape: Shape::Line,
            }],
            band: None,
            lines: Vec::new(),
        }));
    }
    charts
}

fn diff_view(d: &DiffTable) -> DiffView {
    let mut rows = Vec::new();
    let (mut moving, mut frozen) = (Vec::new(), Vec::new());
    // Without a rule to judge them, no update is out of band.
    let (low, high) = d.band.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    let band = |f: &dyn Fn(f64) -> String| {
        d.band.map_or_else(
            || "none".to_string(),
            |(low, high)| format!("{} to {}", f(low), f(high)),
        )
    };
    for (i, l) in d.layers.iter().filter(|l| l.trainable).enumerate() {
        let update = l.per_step(d.steps);
        let is_frozen = l.frozen();
        let out_of_band = update < low || update > high;
        if is_frozen {
            frozen.push((i as f64, d.band.map_or(1e-7, |(low, _)| low / 10.0), true));
        } else if update.is_finite() && update > 0.0 {
            moving.push((i as f64, update, out_of_band));
        }
        rows.push(DiffRow {
            index: i,
            name: l.name.clone(),
            node: l.node.clone().unwrap_or_default(),
            update: short_number(update),
            mark: if is_frozen {
                "frozen"
            } else if update < low {
                "low"
            } else if update > high {
                "high"
            } else {
                ""
            },
        });
    }
    let charts = draw(&Plot {
        title: "update per step by weight",
        last: rows.len().saturating_sub(1),
        x: "weight",
        y: "||B - A|| / ||A|| per step",
        caption: format!(
            "the shaded band is update-ratio's range ({} per step); red points are outside it; red squares at the bottom are frozen weights (no element changed)",
            band(&short_number)
        ),
        log: true,
        series: vec![
            Series {
                points: moving,
                color: BLUE,
                shape: Shape::Line,
            },
            Series {
                points: frozen,
                color: RED,
                shape: Shape::Square,
            },
        ],
        band: d.band,
        lines: Vec::new(),
    })
    .into_iter()
    .collect();
    DiffView {
        steps: short_number(d.steps),
        band: band(&short_number),
        charts,
        rows,
    }
}

/// A chart to draw: points by layer index, a shaded band and threshold lines.
struct Plot {
    title: &'static str,
    /// The last index on the x axis (the last layer, or step).
    last: usize,
    x: &'static str,
    y: &'static str,
    caption: String,
    log: bool,
    series: Vec<Series>,
    band: Option<(f64, f64)>,
    lines: Vec<f64>,
}

/// Points `(x, y, highlighted)`: a highlighted point is drawn larger, in red.
struct Series {
    points: Vec<(f64, f64, bool)>,
    color: RGBColor,
    shape: Shape,
}

/// A profile along the depth is circles joined by a line; other series are
/// markers only.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Line,
    /// A line without markers: a curve of many points.
    Curve,
    Square,
    Triangle,
}

const SIZE: (u32, u32) = (760, 240);

/// The chart as inline SVG, or `None` when it has no point to draw.
fn draw(plot: &Plot) -> Option<Chart> {
    let ys = plot
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1));
    let ys = ys.chain(plot.band.into_iter().flat_map(|(a, b)| [a, b]));
    let ys = ys.chain(plot.lines.iter().copied());
    let (lo, hi) = ys
        .filter(|v| v.is_finite() && (!plot.log || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() || plot.series.iter().all(|s| s.points.is_empty()) {
        return None;
    }
    let x = -0.5..plot.last as f64 + 0.5;
    let mut svg = String::new();
    let drawn = if plot.log {
        let (lo, hi) = (lo / 2.0, if hi > lo { hi * 2.0 } else { lo * 4.0 });
        plot_into(&mut svg, plot, x, (lo..hi).log_scale())
    } else {
        plot_into(&mut svg, plot, x, 0.0..hi.max(1.0) * 1.05)
    };
    drawn.ok()?;
    Some(Chart {
        // Inline SVG takes its namespace from the HTML parser; the attribute
        // would be the page's only URL.
        svg: svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1),
        caption: plot.caption.clone(),
    })
}

fn plot_into<'s, Y>(
    svg: &'s mut String,
    plot: &Plot,
    x: std::ops::Range<f64>,
    y: Y,
) -> Result<(), Box<dyn std::error::Error + 's>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (x0, x1) = (x.start, x.end);
    let mut chart = ChartBuilder::on(&root)
        .caption(plot.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(plot.x)
        .y_desc(plot.y)
        .x_labels((plot.last + 1).min(12))
        // Indices only: a tick between two layers has no label.
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-6 && *v >= 0.0 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| short_number(*v))
        .draw()?;
    if let Some((a, b)) = plot.band {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x0, a), (x1, b)],
            GREEN.mix(0.15).filled(),
        )))?;
    }
    for &v in &plot.lines {
        chart.draw_series(DashedLineSeries::new(
            [(x0, v), (x1, v)],
            6,
            4,
            BLACK.mix(0.6).stroke_width(1),
        ))?;
    }
    for s in &plot.series {
        if matches!(s.shape, Shape::Line | Shape::Curve) && s.points.len() > 1 {
            chart.draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.1)),
                s.color.mix(0.5).stroke_width(1),
            ))?;
        }
        let style = |hot: bool| if hot { RED.filled() } else { s.color.filled() };
        let size = |hot: bool| if hot { 5 } else { 3 };
        let points = s.points.iter().copied();
        match s.shape {
            Shape::Curve => continue,
            Shape::Line => chart.draw_series(
                points.map(|(px, py, hot)| Circle::new((px, py), size(hot), style(hot))),
            )?,
            Shape::Triangle => chart
                .draw_series(points.map(|(px, py, hot)| {
                    TriangleMarker::new((px, py), size(hot) + 1, style(hot))
                }))?,
            Shape::Square => chart.draw_series(points.map(|(px, py, hot)| {
                let r = size(hot);
                EmptyElement::at((px, py)) + Rectangle::new([(-r, -r), (r, r)], style(hot))
            }))?,
        };
    }
    root.present()?;
    Ok(())
}
