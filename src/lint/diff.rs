//! `nnlint diff BEFORE AFTER`: what training did to each weight.
//!
//! Both checkpoints are read with the safe loader. Weights are paired by name,
//! then by their place in the graph (first consumer and input slot, same
//! shape). Each pair is compared in lockstep, a block of elements at a time,
//! and the memory pages of both are given back as the pass goes, so diffing
//! two 500 MB checkpoints holds neither in memory. One computation feeds both
//! the per-layer table and the findings.

use std::collections::HashMap;
use std::path::Path;

use crate::diag::position::{Sources, MODEL};
use crate::diag::report::FileReport;
pub use crate::diag::report::LayerDiff;
use crate::graph::{self, Graph};
use crate::onnx::proto::{data_type, TensorProto};
use crate::onnx::source::Source;
use crate::onnx::Model;
use crate::options::{Error, Settings};
use crate::read::{listing, read_model, Read};
use crate::rules::{self, Checkpoints, DiffFindings, Mismatch};

/// Elements compared per block.
const BLOCK: usize = 1 << 16;

/// The outcome of a diff: findings on the second checkpoint, and the table.
pub struct DiffReport {
    pub report: FileReport,
    pub layers: Vec<LayerDiff>,
    /// The band of healthy updates per step, from the rule that judges them.
    pub band: Option<(f64, f64)>,
    /// The checkpoints are not the same architecture (exit status 2).
    pub mismatch: bool,
}

/// What the rules find on the checkpoints: every rule's [`Rule::diff`](rules::Rule::diff),
/// the findings of the selected ones, at their configured severity. A
/// mismatch, like a syntax error, is reported whatever the selection:
/// nothing else can be.
fn findings(
    settings: &Settings,
    layers: &[LayerDiff],
    steps: f64,
    mismatch: Option<&Mismatch>,
) -> DiffFindings {
    let mut all = DiffFindings::default();
    for rule in rules::all() {
        let meta = rule.meta();
        let cx = Checkpoints {
            layers,
            steps,
            mismatch,
            meta,
            settings: settings
                .config
                .as_ref()
                .and_then(|c| c.rules.get(meta.name)),
        };
        let mut out = DiffFindings::default();
        rule.diff(&cx, &mut out);
        all.band = all.band.or(out.band);
        if mismatch.is_none() && !settings.selection.enabled(meta) {
            continue;
        }
        for (_, d) in &mut out.found {
            settings.apply_severity(meta, std::slice::from_mut(d));
        }
        all.found.append(&mut out.found);
    }
    all
}

/// Compares two checkpoints of one model.
pub fn diff_files(
    before: &Path,
    after: &Path,
    settings: &Settings,
    steps: f64,
) -> Result<DiffReport, Error> {
    let mut read = Vec::new();
    for path in [before, after] {
        match read_model(path)? {
            Read::Model(m) => {
                let (model, source) = *m;
                // Comparing checkpoints is comparing values: both must be whole.
                let model = model.whole()?;
                let source = source.unwrap_or_else(|| listing(&model));
                read.push((model, source));
            }
            // A text model that does not parse: its syntax error is the report.
            Read::Syntax(unparsed) => {
                return Ok(DiffReport {
                    report: super::unparsed(*unparsed),
                    layers: Vec::new(),
                    band: None,
                    mismatch: true,
                })
            }
        }
    }
    let (b, src_b) = read.pop().ok_or_else(|| missing(after))?;
    let (a, src_a) = read.pop().ok_or_else(|| missing(before))?;
    let mut report = diff_models((&a, &src_a), (&b, &src_b), settings, steps);
    if settings.fingerprint {
        super::record::fingerprint(&b, &mut report.report);
    }
    for m in [&a, &b] {
        if let Some(reason) = m.changed() {
            return Err(Error::Load(crate::onnx::LoadError {
                path: m.path.clone(),
                reason,
            }));
        }
    }
    Ok(report)
}

fn missing(path: &Path) -> Error {
    Error::Load(crate::onnx::LoadError {
        path: path.to_path_buf(),
        reason: "could not be read".into(),
    })
}

/// Compares two models given with the texts their findings point into.
pub fn diff_models(
    (a, src_a): (&Model, &Source),
    (b, src_b): (&Model, &Source),
    settings: &Settings,
    steps: f64,
) -> DiffReport {
    let graphs_a = graph::build(a, src_a);
    let graphs_b = graph::build(b, src_b);
    let path = b.path.display().to_string();
    let mut sources = Sources::new();
    let id = sources.add(path.clone(), src_b.text.clone());
    debug_assert_eq!(id, MODEL);
    let (ga, gb) = (&graphs_a[0], &graphs_b[0]);

    let mut diagnostics = Vec::new();
    let mut layers = Vec::new();
    let pairs = match pair(ga, gb) {
        Ok(p) => p,
        Err(why) => {
            let mismatch = Mismatch {
                why,
                span: src_b.graph(gb.scope()),
                before: a.path.clone(),
                after: b.path.clone(),
            };
            let found = findings(settings, &[], steps, Some(&mismatch));
            diagnostics.extend(found.found.into_iter().map(|(_, d)| d));
            return DiffReport {
                report: FileReport {
                    failed: true,
                    coverage: None,
                    ..FileReport::new(path, sources, diagnostics)
                },
                layers,
                band: found.band,
                mismatch: true,
            };
        }
    };
    for (ta, tb) in &pairs {
        layers.push(compare(a, b, *ta, tb, gb));
    }

    let DiffFindings { found, band } = findings(settings, &layers, steps, None);
    // Each weight's reader, by node name: one pass over the graph.
    let by_name: HashMap<&str, _> = gb.nodes().map(|n| (n.name(), n)).collect();
    for (i, d) in found {
        let Some(l) = i.and_then(|i| layers.get(i)) else {
            diagnostics.push(d);
            continue;
        };
        // The node that reads the weight: the initializer list is one line
        // of the listing, thousands of characters long on a real model.
        let reader = l.node.as_deref().and_then(|node| by_name.get(node));
        diagnostics.push(match reader {
            Some(n) => d
                .primary(n.op_span(), format!("reads `{}`", l.name))
                .with_node(n.name()),
            None => {
                let span = src_b
                    .value(gb.scope(), &l.name)
                    .unwrap_or_else(|| src_b.graph(gb.scope()));
                d.primary(span, "in the second checkpoint")
            }
        });
    }
    super::origins::attach(b, &graphs_b, settings, &mut sources, &mut diagnostics);
    diagnostics.sort_by_key(|d| {
        let (file, span) = d.primary_span();
        (file, span.start, d.code)
    });
    DiffReport {
        report: FileReport {
            failed: false,
            coverage: None,
            ..FileReport::new(path, sources, diagnostics)
        },
        layers,
        band,
        mismatch: false,
    }
}

/// Where a weight sits: its first consumer's index and the input slot.
fn position(g: &Graph<'_>, name: &str) -> Option<(usize, usize)> {
    g.consumers(name).first().map(|(n, slot)| (n.id(), *slot))
}

/// Pairs the initializers of the main graphs, in graph order; fails with the
/// reason when the graphs differ.
///
/// Exporters deduplicate equal constants (every LayerNorm scale is all ones at
/// init) and drop all-zero biases, so a weight of the second checkpoint may sit
/// where the first has a shared tensor, or nothing: the first is then paired by
/// any place the weight is read, and a missing input counts as zeros.
type Pairs<'a> = Vec<(Option<&'a TensorProto>, &'a TensorProto)>;

fn pair<'a>(ga: &Graph<'a>, gb: &Graph<'a>) -> Result<Pairs<'a>, String> {
    let ops = |g: &Graph<'_>| {
        g.nodes()
            .map(|n| n.op_type().to_string())
            .collect::<Vec<_>>()
    };
    let (oa, ob) = (ops(ga), ops(gb));
    if oa != ob {
        let first = oa
            .iter()
            .zip(&ob)
            .position(|(x, y)| x != y)
            .unwrap_or(oa.len().min(ob.len()));
        return Err(format!(
            "the graphs differ at node {first} ({} vs {} nodes)",
            oa.len(),
            ob.len()
        ));
    }
    let inits_a: Vec<&TensorProto> = ga.initializers().to_vec();
    let inits_b: Vec<&TensorProto> = gb.initializers().to_vec();
    let by_name: HashMap<&str, &TensorProto> =
        inits_a.iter().map(|t| (t.name.as_str(), *t)).collect();
    // Every place each tensor of the first checkpoint is read.
    let mut by_position: HashMap<(usize, usize), &TensorProto> = HashMap::new();
    for t in &inits_a {
        for (n, slot) in ga.consumers(&t.name) {
            by_position.insert((n.id(), slot), *t);
        }
    }
    let mut pairs = Vec::new();
    for tb in &inits_b {
        let places: Vec<(usize, usize)> = gb
            .consumers(&tb.name)
            .iter()
            .map(|(n, slot)| (n.id(), *slot))
            .collect();
        let same_shape = |ta: &&&TensorProto| ta.dims == tb.dims;
        let ta = by_name
            .get(tb.name.as_str())
            .filter(same_shape)
            .or_else(|| {
                places
                    .iter()
                    .find_map(|p| by_position.get(p).filter(same_shape))
            })
            .copied();
        // An input the first checkpoint's node does not have at all: a dropped zero bias.
        let absent = places
            .iter()
            .any(|&(node, slot)| ga.node(node).input(slot).is_none());
        match ta {
            Some(ta) => pairs.push((Some(ta), *tb)),
            None if absent => pairs.push((None, *tb)),
            None => {
                return Err(format!(
                    "weight `{}` {:?} has no counterpart in the first checkpoint",
                    tb.name, tb.dims
                ))
            }
        }
    }
    // Graph order: by first consumer, then name.
    pairs.sort_by_key(|(_, tb)| {
        (
            position(gb, &tb.name).unwrap_or((usize::MAX, 0)),
            tb.name.clone(),
        )
    });
    Ok(pairs)
}

fn trainable(g: &Graph<'_>, t: &TensorProto) -> bool {
    let name = t.name.to_ascii_lowercase();
    let stat = ["running_mean", "running_var", "num_batches_tracked"]
        .iter()
        .any(|s| name.contains(s))
        || g.consumers(&t.name)
            .iter()
            .any(|(n, slot)| n.is("BatchNormalization") && *slot >= 3);
    data_type::is_float(t.data_type)
        && crate::onnx::values::element_count(t).is_ok_and(|n| n >= 2)
        && !stat
}

fn compare(
    a: &Model,
    b: &Model,
    ta: Option<&TensorProto>,
    tb: &TensorProto,
    gb: &Graph<'_>,
) -> LayerDiff {
    let mut l = LayerDiff {
        name: tb.name.clone(),
        before_name: ta.filter(|ta| ta.name != tb.name).map(|ta| ta.name.clone()),
        shape: tb.dims.clone(),
        elements: crate::onnx::values::element_count(tb).unwrap_or(0),
        norm_a: 0.0,
        norm_b: 0.0,
        relative_update: 0.0,
        unchanged: 0,
        non_finite_a: 0,
        non_finite_b: 0,
        trainable: trainable(gb, tb),
        node: gb
            .consumers(&tb.name)
            .first()
            .map(|(n, _)| n.name().to_string())
            .filter(|n| !n.is_empty()),
    };
    let Ok(rb) = b.reader(tb) else {
        l.trainable = false; // values that cannot be read are reported by the loader's rules
        return l;
    };
    let ra = match ta.map(|t| a.reader(t)) {
        Some(Ok(r)) => r,
        Some(Err(_)) => {
            l.trainable = false;
            return l;
        }
        // No counterpart: the first checkpoint's exporter dropped an all-zero input.
        None => crate::onnx::values::ValueReader::Zeros(rb.len()),
    };
    let n = ra.len().min(rb.len());
    let (mut sa, mut sb, mut sd) = (0f64, 0f64, 0f64);
    let (mut va, mut vb) = (Vec::with_capacity(BLOCK), Vec::with_capacity(BLOCK));
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        ra.read(start, end, &mut va);
        rb.read(start, end, &mut vb);
        for (&x, &y) in va.iter().zip(&vb) {
            if x.to_bits() == y.to_bits() {
                l.unchanged += 1;
            }
            if !x.is_finite() {
                l.non_finite_a += 1;
            }
            if !y.is_finite() {
                l.non_finite_b += 1;
            }
            if x.is_finite() && y.is_finite() {
                sa += x * x;
                sb += y * y;
                sd += (y - x) * (y - x);
            }
        }
        a.release_bytes(ra.bytes(start, end));
        b.release_bytes(rb.bytes(start, end));
        start = end;
    }
    l.norm_a = sa.sqrt();
    l.norm_b = sb.sqrt();
    l.relative_update = if sd == 0.0 {
        0.0
    } else if sa == 0.0 {
        f64::INFINITY
    } else {
        sd.sqrt() / l.norm_a
    };
    l
}
