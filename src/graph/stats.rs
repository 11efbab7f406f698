//! One streaming pass over every stored float tensor of a graph.
//!
//! Rules that look at values (`constant-weights`, `init-scale`, `dead-relu`,
//! `non-finite`) read these summaries instead of the tensors, so each weight
//! byte is touched once however many rules run, and its memory pages are
//! given back right after. The pass runs on all cores.

use std::sync::OnceLock;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::{Graph, Stored, TensorId};
use crate::onnx::proto::data_type;

/// Bytes summarized between two releases of their memory pages.
const RELEASE_EVERY: usize = 8 << 20;

/// Tensors at least this large are summarized on every core at once.
const PARALLEL_MIN: usize = 32 << 20;

/// Biases up to this many elements, and any tensor up to [`KEEP_SMALL`] elements,
/// keep their values in the summary.
pub(super) const KEEP_VALUES: usize = 4096;
pub(super) const KEEP_SMALL: usize = 16;

/// The most units (output channels or features) per-unit statistics are kept for.
const MAX_UNITS: usize = 1 << 22;

/// What the rules need to know about a stored tensor's values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorStats {
    pub count: usize,
    pub nan: usize,
    pub inf: usize,
    /// Flat index of the first NaN or infinity.
    pub first_non_finite: Option<usize>,
    /// Whether every element equals the first (NaN counting as equal to NaN).
    pub all_equal: bool,
    pub first: Option<f64>,
    /// Mean and population standard deviation of the finite values.
    pub mean: f64,
    pub std: f64,
    /// The largest finite magnitude.
    pub max_abs: f64,
    /// Kurtosis of the finite values about their mean (3 for a normal draw,
    /// 1.8 for a uniform one); 0 when they do not spread.
    pub kurtosis: f64,
    /// The mean of the finite values' fourth powers (not centred), which
    /// with `mean` and `std` gives the spread a unit's square norm has when
    /// the values are independent draws.
    pub mean4: f64,
    /// For a weight layer's float32 weight: the largest singular value of
    /// its leading block (at most `SPECTRAL_ROWS` x `SPECTRAL_COLS`,
    /// centred), over the edge `std (sqrt(rows) + sqrt(cols))` that an i.i.d.
    /// matrix of that block's size and spread reaches (Marchenko-Pastur).
    /// About 1 or below for a random draw; training pushes it above.
    pub spectral: Option<f64>,
    /// Per output unit, the sum of squares of its weights, for a weight layer's weight.
    pub unit_sq: Option<Vec<f64>>,
    /// The values themselves, for weight-layer biases of at most `KEEP_VALUES`
    /// elements and for tensors of at most `KEEP_SMALL`.
    pub values: Option<Vec<f64>>,
}

/// How a weight tensor's elements map to output units: `(units, units_first)`.
type Layout = Option<(usize, bool)>;

/// What the pass keeps of one tensor beyond the moments.
#[derive(Clone, Copy)]
struct Job {
    layout: Layout,
    keep_values: bool,
}

/// Every summary of a graph, found by tensor id.
#[derive(Debug, Default)]
pub(crate) struct StatsTable {
    /// Per tensor id, where its summary is in `parts`: `(part, position)`.
    index: Vec<Option<(u32, u32)>>,
    /// `(job, summary)` as each worker made them, not copied into one vector.
    parts: Vec<Vec<(usize, Option<TensorStats>)>>,
}

impl<'m> Graph<'m> {
    /// The summary of a stored float tensor of this graph.
    pub fn stats(&self, tensor: &str) -> Option<&TensorStats> {
        self.stats_of(self.tensor_id(tensor)?)
    }

    /// [`Graph::stats`] for tensor `t`.
    pub fn stats_of(&self, t: TensorId) -> Option<&TensorStats> {
        let table = self.stats.get_or_init(|| self.compute_stats());
        let (part, i) = (*table.index.get(t)?)?;
        table.parts.get(part as usize)?.get(i as usize)?.1.as_ref()
    }

    fn compute_stats(&self) -> StatsTable {
        let mut layouts: HashMap<TensorId, Layout> = HashMap::default();
        let mut biases: HashSet<TensorId> = HashSet::default();
        for l in self.weight_layers() {
            if let Some(units) = l.units {
                layouts.insert(l.weight_id, Some((units, l.units_first)));
            }
            biases.extend(l.bias_id);
        }
        let mut ids: Vec<TensorId> = self
            .initializer_ids
            .iter()
            .flatten()
            .copied()
            .chain(
                self.nodes()
                    .filter(|n| n.is("Constant"))
                    .filter_map(|n| n.output_id(0)),
            )
            .chain(layouts.keys().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let graph = self;
        let job = |id: TensorId| {
            let s = graph.stored_of(id)?;
            if !data_type::is_float(s.elem_type()) {
                return None;
            }
            let count = s.len().unwrap_or(usize::MAX);
            let job = Job {
                layout: layouts.get(&id).copied().flatten(),
                keep_values: count <= KEEP_SMALL || (count <= KEEP_VALUES && biases.contains(&id)),
            };
            Some((count, id, s, job))
        };
        let mut jobs: Vec<(usize, TensorId, Stored<'m>, Job)> =
            crate::parallel::ranges(ids.len(), |run| {
                // Sized for every tensor of the run: growing it copies them all.
                let mut jobs = Vec::with_capacity(run.len());
                jobs.extend(run.filter_map(|k| job(ids[k])));
                jobs
            });
        // Largest first: the workers finish at about the same time. Keyed by
        // the count found above: reading each tensor's dims again on every
        // comparison is most of the sort's time on a large graph. Which
        // worker summarizes a tensor does not change its summary.
        jobs.sort_unstable_by_key(|&(count, ..)| std::cmp::Reverse(count));
        let parts = crate::parallel::deal(&jobs, |(_, _, s, job)| graph.summarize(s, *job));
        let mut table = StatsTable {
            index: vec![None; self.tensors.len()],
            parts: Vec::with_capacity(parts.len()),
        };
        for (p, part) in parts.into_iter().enumerate() {
            for (i, &(job, ref st)) in part.iter().enumerate() {
                if st.is_some() {
                    table.index[jobs[job].1] = Some((p as u32, i as u32));
                }
            }
            table.parts.push(part);
        }
        table
    }

    fn summarize(&self, s: &Stored<'m>, job: Job) -> Option<TensorStats> {
        let count = s.len().ok()?;
        // Units come from the declared shape, which may disagree with the
        // stored values, and which for a fill (a ConstantOfShape's) costs
        // nothing to declare: no layer has more than MAX_UNITS units, none
        // has more units than values, and none has no units.
        let job = Job {
            layout: job
                .layout
                .filter(|&(units, _)| (1..=MAX_UNITS.min(count)).contains(&units)),
            ..job
        };
        let Job {
            layout,
            keep_values,
        } = job;
        if let Some(v) = s.fill_value() {
            let finite = v.is_finite();
            return Some(TensorStats {
                count,
                nan: if v.is_nan() { count } else { 0 },
                inf: if v.is_infinite() { count } else { 0 },
                first_non_finite: (!finite && count > 0).then_some(0),
                all_equal: true,
                first: (count > 0).then_some(v),
                mean: if finite { v } else { 0.0 },
                std: 0.0,
                max_abs: if finite { v.abs() } else { 0.0 },
                mean4: if finite { v.powi(4) } else { 0.0 },
                kurtosis: 0.0,
                spectral: None,
                unit_sq: layout
                    .map(|(units, _)| vec![v * v * (count / units.max(1)) as f64; units]),
                values: keep_values.then(|| vec![v; count]),
            });
        }
        if let Stored::Tensor(t) = s {
            if t.data_type == data_type::FLOAT {
                let release = |part: &[u8]| self.model.release_bytes(part);
                // Inline bytes are read in place: cloning the `Bytes` handle on
                // every core makes them contend for one reference count.
                if let (false, Some(raw)) = (crate::onnx::external::is_external(t), &t.raw_data) {
                    return summarize_f32(Floats::Le(raw), count, job, &release);
                }
                if let Ok(Some(raw)) = self.model.raw_bytes(t) {
                    return summarize_f32(Floats::Le(&raw), count, job, &release);
                }
                if !t.float_data.is_empty() {
                    return summarize_f32(Floats::Decoded(&t.float_data), count, job, &release);
                }
            }
        }
        let mut st = TensorStats {
            all_equal: true,
            unit_sq: layout.map(|(units, _)| vec![0.0; units]),
            values: keep_values.then(|| Vec::with_capacity(count)),
            ..Default::default()
        };
        let per_unit = layout
            .map(|(units, _)| count / units.max(1))
            .unwrap_or(1)
            .max(1);
        let mut moments = Moments::default();
        let mut i = 0usize;
        self.for_each_value(s, |v| {
            match st.first {
                None => st.first = Some(v),
                Some(f) => st.all_equal &= f == v || (f.is_nan() && v.is_nan()),
            }
            tally(&mut st, v, i, &mut moments);
            if v.is_finite() {
                st.max_abs = st.max_abs.max(v.abs());
            }
            if let (Some(sq), Some((units, units_first))) = (st.unit_sq.as_mut(), layout) {
                let unit = if units_first { i / per_unit } else { i % units };
                if let Some(x) = sq.get_mut(unit) {
                    *x += v * v;
                }
            }
            if let Some(vals) = st.values.as_mut() {
                vals.push(v);
            }
            i += 1;
        })
        .ok()?;
        if let Stored::Tensor(t) = s {
            self.model.release(t);
        }
        st.count = i;
        moments.finish(&mut st);
        Some(st)
    }
}

/// A float32 tensor's values as stored: little-endian bytes (`raw_data`,
/// or external data), or the numbers of a decoded `float_data`.
#[derive(Clone, Copy)]
enum Floats<'a> {
    Le(&'a [u8]),
    Decoded(&'a [f32]),
}

impl<'a> Floats<'a> {
    fn len(self) -> usize {
        match self {
            Floats::Le(b) => b.len() / 4,
            Floats::Decoded(v) => v.len(),
        }
    }

    /// Elements `start..end`, clamped to the tensor.
    fn slice(self, start: usize, end: usize) -> Floats<'a> {
        let end = end.min(self.len());
        let start = start.min(end);
        match self {
            Floats::Le(b) => Floats::Le(&b[start * 4..end * 4]),
            Floats::Decoded(v) => Floats::Decoded(&v[start..end]),
        }
    }

    /// Copies the values into `out`, which is as long as they are.
    fn read(self, out: &mut [f32]) {
        match self {
            Floats::Le(b) => {
                for (v, c) in out.iter_mut().zip(b.chunks_exact(4)) {
                    *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            Floats::Decoded(v) => out.copy_from_slice(v),
        }
    }

    /// Gives back the memory pages of mapped values; decoded ones are the model's own.
    fn release(self, release: &(dyn Fn(&[u8]) + Sync)) {
        if let Floats::Le(b) = self {
            release(b);
        }
    }
}

/// The common case, float32 values, row by row so the inner loops vectorize.
/// `release` is called on each block of bytes once it is summarized.
fn summarize_f32(
    raw: Floats<'_>,
    count: usize,
    job: Job,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Option<TensorStats> {
    if matches!(raw, Floats::Le(b) if b.len() % 4 != 0) || raw.len() != count {
        return None; // the generic path reports the size mismatch
    }
    if count == 0 {
        return Some(TensorStats {
            all_equal: true,
            unit_sq: job.layout.map(|(units, _)| vec![0.0; units]),
            values: job.keep_values.then(Vec::new),
            ..Default::default()
        });
    }
    let mut first = [0f32];
    raw.slice(0, 1).read(&mut first);
    let [first] = first;
    // Before the scan, which gives the pages back.
    let spectral = job.layout.and_then(|(units, units_first)| {
        let other = count / units.max(1);
        let (rows, cols) = if units_first {
            (units, other)
        } else {
            (other, units)
        };
        spectral_ratio(raw, rows, cols)
    });
    // A row is one unit's weights (units first) or one weight of every unit (units last).
    let row_len = match job.layout {
        Some((units, true)) => (count / units.max(1)).max(1),
        Some((units, false)) => units.max(1),
        None => 4096,
    };
    let rows = count.div_ceil(row_len);
    // A large tensor is split across cores by rows; the parts merge exactly.
    let parts = if count.saturating_mul(4) >= PARALLEL_MIN {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8)
    } else {
        1
    };
    let per = rows.div_ceil(parts);
    let scan_part = |k: usize| {
        let (r0, r1) = ((k * per).min(rows), ((k + 1) * per).min(rows));
        scan(
            raw.slice(r0 * row_len, r1 * row_len),
            r0,
            row_len,
            first,
            job,
            release,
        )
    };
    if parts == 1 {
        // One part is the whole tensor: no merge, no second copy of its vectors.
        let Partial {
            stats: mut st,
            moments,
        } = scan_part(0);
        st.count = count;
        st.first = Some(first as f64);
        moments.finish(&mut st);
        st.spectral = spectral;
        return Some(st);
    }
    let partials: Vec<Partial> = {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..parts)
                .map(|k| scope.spawn(move || scan_part(k)))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        })
    };
    let mut st = TensorStats {
        count,
        first: Some(first as f64),
        all_equal: true,
        unit_sq: job.layout.map(|(units, _)| vec![0.0; units]),
        values: job.keep_values.then(|| Vec::with_capacity(count)),
        ..Default::default()
    };
    let mut moments = Moments::default();
    for Partial {
        stats: p,
        moments: part,
    } in partials
    {
        moments.merge(&part);
        st.nan += p.nan;
        st.inf += p.inf;
        st.max_abs = st.max_abs.max(p.max_abs);
        st.all_equal &= p.all_equal;
        if st.first_non_finite.is_none() {
            st.first_non_finite = p.first_non_finite;
        }
        if let (Some(total), Some(part)) = (st.unit_sq.as_mut(), p.unit_sq) {
            total.iter_mut().zip(part).for_each(|(t, x)| *t += x);
        }
        if let (Some(total), Some(part)) = (st.values.as_mut(), p.values) {
            total.extend(part);
        }
    }
    moments.finish(&mut st);
    st.spectral = spectral;
    Some(st)
}

/// The leading block [`spectral_ratio`] reads: enough for the edge to be
/// sharp (an i.i.d. 128 x 256 block stays within 1.03 of it), little enough
/// to cost about a millisecond per layer.
pub(super) const SPECTRAL_ROWS: usize = 128;
pub(super) const SPECTRAL_COLS: usize = 256;

/// Power iterations: a spike above the edge (what training leaves)
/// converges in a few; a random block's bulk is approached from below, so
/// stopping early errs towards "random".
const SPECTRAL_ITERATIONS: usize = 30;

/// The largest singular value of the centred leading block of a row-major
/// `rows x cols` float32 matrix, over the Marchenko-Pastur edge
/// `std (sqrt(m) + sqrt(n))` of an i.i.d. `m x n` block of the same spread;
/// `None` for a block under 8 x 8, one that does not spread, or values that
/// are not finite. Deterministic: a fixed start vector, sums in one order.
fn spectral_ratio(raw: Floats<'_>, rows: usize, cols: usize) -> Option<f64> {
    let (m, n) = (rows.min(SPECTRAL_ROWS), cols.min(SPECTRAL_COLS));
    if m < 8 || n < 8 || raw.len() < rows.checked_mul(cols)? {
        return None;
    }
    let mut block = vec![0f32; m * n];
    for (i, row) in block.chunks_exact_mut(n).enumerate() {
        raw.slice(i * cols, i * cols + n).read(row);
    }
    let len = block.len() as f64;
    let mean = lane_sum(&block, |x| x) / len;
    let var = lane_sum(&block, |x| (x - mean).powi(2)) / len;
    if !var.is_finite() || var <= 0.0 {
        return None;
    }
    // Standardized, the block's values are near 1 whatever their scale, so
    // the iterations run in float32, in rows of eight lanes padded with
    // zeros: the loops vectorize, with rounding far below the edge's margin.
    let inverse_std = 1.0 / var.sqrt();
    let w = n.div_ceil(LANES);
    let mut a = vec![[0f32; LANES]; m * w];
    for (lanes, row) in a.chunks_exact_mut(w).zip(block.chunks_exact(n)) {
        for (y, &x) in lanes.as_flattened_mut().iter_mut().zip(row) {
            *y = ((x as f64 - mean) * inverse_std) as f32;
        }
    }
    // The fixed start vector, made once: a cosine per column of every
    // block is a tenth of the work on a graph of small layers.
    static START: OnceLock<Vec<f32>> = OnceLock::new();
    let start = START.get_or_init(|| {
        (0..SPECTRAL_COLS)
            .map(|j| (1.0 + 0.5 * (j as f64).cos()) as f32)
            .collect()
    });
    let mut v = vec![[0f32; LANES]; w];
    for (j, &x) in start.iter().take(n).enumerate() {
        v[j / LANES][j % LANES] = x;
    }
    let mut next = vec![[0f32; LANES]; w];
    // `A^T A v` needs a sum across lanes per row of `A`, which dominates
    // narrow blocks; there `G = A^T A` is made once, its rows `G[k]` being
    // sums of rows of `A` scaled, and `G v` is the lanes' sum of `v_k G[k]`.
    let gram = (n * (m + SPECTRAL_ITERATIONS) < 2 * SPECTRAL_ITERATIONS * m).then(|| {
        // Each lane group of `G[k]` is summed over the rows in registers,
        // in row order as an `axpy` per row would; `G` is symmetric, and
        // its groups below the diagonal are the ones above, mirrored.
        let mut g = vec![[0f32; LANES]; n * w];
        for k in 0..n {
            for t in 0..w {
                let out = if (t + 1) * LANES <= k {
                    let mut mirrored = [0f32; LANES];
                    for (l, x) in mirrored.iter_mut().enumerate() {
                        *x = g[(t * LANES + l) * w + k / LANES][k % LANES];
                    }
                    mirrored
                } else {
                    a.chunks_exact(w).fold([0f32; LANES], |mut sum, row| {
                        let (x, y) = (row[k / LANES][k % LANES], row[t]);
                        for l in 0..LANES {
                            sum[l] += x * y[l];
                        }
                        sum
                    })
                };
                g[k * w + t] = out;
            }
        }
        g
    });
    let mut top = 0.0;
    for iteration in 1..=SPECTRAL_ITERATIONS {
        // Scaled back to unit length every few iterations, and before the
        // last, which reads the top value: in between `v` grows by at most
        // `|A|_F^2 = m n` (at most 2^15) per iteration, far from float32's
        // range, and the direction, all that the iterations carry, does
        // not depend on the scale.
        if iteration % NORMALIZE_EVERY == 1 || iteration == SPECTRAL_ITERATIONS {
            let length = v.iter().map(|x| dot_lanes(x, x)).sum::<f64>().sqrt();
            if length <= 0.0 || !length.is_finite() {
                return None;
            }
            let scale = (1.0 / length) as f32;
            v.iter_mut().flatten().for_each(|x| *x *= scale);
        }
        let top_sq = match &gram {
            Some(g) => {
                // `G v` a lane row at a time, summed in registers: four
                // partial sums over `k` (by `k` mod 4), so that each add
                // waits for the one four rows back, then added in pairs.
                let vk = |k: usize| v[k / LANES][k % LANES];
                let quads = g.chunks_exact(4 * w);
                let rest = quads.remainder();
                for (t, out) in next.iter_mut().enumerate() {
                    let [mut s0, mut s1, mut s2, mut s3] = [[0f32; LANES]; 4];
                    for (q, rows) in quads.clone().enumerate() {
                        let k = 4 * q;
                        let (a0, a1, a2, a3) = (vk(k), vk(k + 1), vk(k + 2), vk(k + 3));
                        let (x0, x1, x2, x3) =
                            (rows[t], rows[w + t], rows[2 * w + t], rows[3 * w + t]);
                        for l in 0..LANES {
                            s0[l] += a0 * x0[l];
                            s1[l] += a1 * x1[l];
                            s2[l] += a2 * x2[l];
                            s3[l] += a3 * x3[l];
                        }
                    }
                    let k0 = n - rest.len() / w;
                    for (r, gk) in rest.chunks_exact(w).enumerate() {
                        let (a, x) = (vk(k0 + r), gk[t]);
                        let sum = match r {
                            0 => &mut s0,
                            1 => &mut s1,
                            _ => &mut s2,
                        };
                        for l in 0..LANES {
                            sum[l] += a * x[l];
                        }
                    }
                    for l in 0..LANES {
                        out[l] = (s0[l] + s1[l]) + (s2[l] + s3[l]);
                    }
                }
                // |A v|^2 = v . G v, read only after the last iteration.
                if iteration < SPECTRAL_ITERATIONS {
                    0.0
                } else {
                    v.iter()
                        .zip(&next)
                        .map(|(x, y)| dot_lanes(x, y))
                        .sum::<f64>()
                }
            }
            None => {
                next.iter_mut().for_each(|x| *x = [0.0; LANES]);
                // One pass over the rows: `u = A v`, and `A^T u` gathered as it goes.
                let mut top_sq = 0.0;
                for row in a.chunks_exact(w) {
                    let ui = row.iter().zip(&v).fold([0f32; LANES], |mut acc, (x, y)| {
                        for l in 0..LANES {
                            acc[l] += x[l] * y[l];
                        }
                        acc
                    });
                    let ui = ui.into_iter().fold(0f32, |s, x| s + x);
                    top_sq += (ui as f64).powi(2);
                    axpy(&mut next, ui, row);
                }
                top_sq
            }
        };
        top = top_sq.max(0.0).sqrt();
        std::mem::swap(&mut v, &mut next);
    }
    let edge = (m as f64).sqrt() + (n as f64).sqrt();
    top.is_finite().then_some(top / edge)
}

/// How often [`spectral_ratio`] scales its vector back to unit length:
/// four iterations grow it by at most `(2^15)^4 = 2^60`.
const NORMALIZE_EVERY: usize = 4;

/// The width of [`spectral_ratio`]'s rows of lanes.
const LANES: usize = 8;

/// `y += a x`, over rows of lanes.
#[inline(always)]
fn axpy(y: &mut [[f32; LANES]], a: f32, x: &[[f32; LANES]]) {
    for (t, x) in y.iter_mut().zip(x) {
        let (mut sum, x) = (*t, *x);
        for l in 0..LANES {
            sum[l] += a * x[l];
        }
        *t = sum;
    }
}

/// The dot product of two rows of lanes, summed in float64 in lane order.
#[inline(always)]
fn dot_lanes(x: &[f32; LANES], y: &[f32; LANES]) -> f64 {
    x.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// The sum of `f` over `values` in float64, in four interleaved partial
/// sums (by index mod 4) added in pairs at the end: a fixed order, so the
/// same on every machine, without one long chain of dependent adds.
fn lane_sum(values: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut sums = [0f64; 4];
    let chunks = values.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for (s, &x) in sums.iter_mut().zip(c) {
            *s += f(x as f64);
        }
    }
    for (s, &x) in sums.iter_mut().zip(rest) {
        *s += f(x as f64);
    }
    (sums[0] + sums[1]) + (sums[2] + sums[3])
}

/// A row's sums of the first four powers and its largest magnitude, in
/// eight lanes so that the loop vectorizes. The lanes are added in a fixed
/// order, so the result does not depend on the machine. The magnitude is
/// only meaningful when the sums are finite.
fn row_moments(vals: &[f32]) -> ([f32; 4], f32) {
    let (mut p, mut m) = ([[0f32; 8]; 4], [0f32; 8]);
    let chunks = vals.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            let (x, x2) = (c[i], c[i] * c[i]);
            p[0][i] += x;
            p[1][i] += x2;
            p[2][i] += x2 * x;
            p[3][i] += x2 * x2;
            m[i] = m[i].max(x.abs());
        }
    }
    let mut sums = p.map(|lanes| lanes.into_iter().fold(0f32, |a, b| a + b));
    let mut m = m.into_iter().fold(0f32, f32::max);
    for &x in rest {
        let x2 = x * x;
        sums[0] += x;
        sums[1] += x2;
        sums[2] += x2 * x;
        sums[3] += x2 * x2;
        m = m.max(x.abs());
    }
    (sums, m)
}

/// Sums of the first four powers of the finite values, and their count.
#[derive(Clone, Copy, Debug, Default)]
struct Moments {
    sums: [f64; 4],
    finite: usize,
}

impl Moments {
    fn add(&mut self, v: f64) {
        let v2 = v * v;
        for (s, x) in self.sums.iter_mut().zip([v, v2, v2 * v, v2 * v2]) {
            *s += x;
        }
        self.finite += 1;
    }

    fn merge(&mut self, other: &Moments) {
        for (s, x) in self.sums.iter_mut().zip(other.sums) {
            *s += x;
        }
        self.finite += other.finite;
    }

    /// Sets the summary's mean, spread, kurtosis and fourth moment.
    fn finish(&self, st: &mut TensorStats) {
        if self.finite == 0 {
            return;
        }
        let [e1, e2, e3, e4] = self.sums.map(|s| s / self.finite as f64);
        let var = (e2 - e1 * e1).max(0.0);
        st.mean = e1;
        st.std = var.sqrt();
        st.mean4 = e4;
        // The central fourth moment from the raw ones.
        let m4 = e4 - 4.0 * e1 * e3 + 6.0 * e1 * e1 * e2 - 3.0 * e1.powi(4);
        st.kurtosis = if var > 0.0 {
            (m4 / (var * var)).max(0.0)
        } else {
            0.0
        };
    }
}

/// What one part of a tensor contributes: counts in `stats`, and the raw moments.
struct Partial {
    stats: TensorStats,
    moments: Moments,
}

/// One pass over whole rows, starting at row `first_row`.
fn scan(
    raw: Floats<'_>,
    first_row: usize,
    row_len: usize,
    first: f32,
    job: Job,
    release: &(dyn Fn(&[u8]) + Sync),
) -> Partial {
    let layout = job.layout;
    let mut st = TensorStats {
        all_equal: true,
        unit_sq: layout.map(|(units, _)| vec![0.0; units]),
        values: job.keep_values.then(|| Vec::with_capacity(raw.len())),
        ..Default::default()
    };
    let mut moments = Moments::default();
    // As long as the longest row read: a row of a tensor without units is
    // up to 4096 values, and zeroing that much for each of 50,000 biases of
    // 16 was a tenth of the summaries of a 100k-node chain.
    let mut buf = vec![0f32; row_len.min(raw.len())];
    let mut released = 0usize;
    for (i, start) in (0..raw.len()).step_by(row_len).enumerate() {
        let r = first_row + i;
        if (start - released) * 4 >= RELEASE_EVERY {
            raw.slice(released, start).release(release);
            released = start;
        }
        let row = raw.slice(start, start + row_len);
        let vals = &mut buf[..row.len()];
        row.read(vals);
        let same = vals
            .iter()
            .fold(true, |acc, v| acc & (v.to_bits() == first.to_bits()));
        st.all_equal &= same || (first.is_nan() && vals.iter().all(|v| v.is_nan()));
        let (sums, rm) = row_moments(vals);
        let rq = sums[1];
        if sums.iter().all(|s| s.is_finite()) {
            moments.merge(&Moments {
                sums: sums.map(f64::from),
                finite: vals.len(),
            });
            st.max_abs = st.max_abs.max(rm as f64);
        } else {
            let m = vals
                .iter()
                .filter(|v| v.is_finite())
                .fold(0f32, |m, &v| m.max(v.abs()));
            st.max_abs = st.max_abs.max(m as f64);
            // Rare: count exactly, and keep the finite part of the row in the moments.
            for (j, &v) in vals.iter().enumerate() {
                tally(&mut st, v as f64, r * row_len + j, &mut moments);
            }
        }
        match (st.unit_sq.as_mut(), layout) {
            (Some(sq), Some((_, true))) => {
                if let Some(x) = sq.get_mut(r) {
                    *x += rq as f64;
                }
            }
            (Some(sq), Some((_, false))) => {
                for (x, &v) in sq.iter_mut().zip(vals.iter()) {
                    *x += (v * v) as f64;
                }
            }
            _ => {}
        }
        if let Some(out) = st.values.as_mut() {
            out.extend(vals.iter().map(|&v| v as f64));
        }
    }
    raw.slice(released, raw.len()).release(release);
    Partial { stats: st, moments }
}

/// Adds one value to the moments, or counts it as NaN or infinite.
fn tally(st: &mut TensorStats, v: f64, index: usize, moments: &mut Moments) {
    if v.is_finite() {
        moments.add(v);
    } else {
        if v.is_nan() {
            st.nan += 1;
        } else {
            st.inf += 1;
        }
        st.first_non_finite.get_or_insert(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::printer::{print_model, Values};

    /// Values that are not an independent draw: a rank-one spike plus a ramp.
    fn spiked(rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|k| {
                let (i, j) = (k / cols, k % cols);
                ((i as f32 * 0.37).sin() * (j as f32 * 0.11).cos()) + 0.01 * ((k % 13) as f32 - 6.0)
            })
            .collect()
    }

    /// The largest singular value of the centred, standardized block, by
    /// float64 power iterations from the same start: the reference for both
    /// of [`spectral_ratio`]'s float32 paths.
    fn reference(values: &[f32], rows: usize, cols: usize) -> f64 {
        let a: Vec<f64> = values.iter().map(|&x| x as f64).collect();
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        let std = (a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
        let a: Vec<f64> = a.iter().map(|x| (x - mean) / std).collect();
        let mut v: Vec<f64> = (0..cols).map(|j| 1.0 + 0.5 * (j as f64).cos()).collect();
        let mut top = 0.0;
        for _ in 0..SPECTRAL_ITERATIONS {
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            let u: Vec<f64> = a
                .chunks(cols)
                .map(|r| r.iter().zip(&v).map(|(x, y)| x * y).sum())
                .collect();
            top = u.iter().map(|x| x * x).sum::<f64>().sqrt();
            v = (0..cols)
                .map(|j| {
                    u.iter()
                        .enumerate()
                        .map(|(i, ui)| ui * a[i * cols + j])
                        .sum()
                })
                .collect();
        }
        top / ((rows as f64).sqrt() + (cols as f64).sqrt())
    }

    /// Narrow blocks take the Gram path, wide ones the row path; both agree
    /// with float64 to well within the random edge's margin.
    #[test]
    fn spectral_paths_agree_with_float64() {
        for (rows, cols) in [(16, 16), (64, 12), (100, 40), (128, 256), (9, 200)] {
            let values = spiked(rows, cols);
            let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let got = spectral_ratio(Floats::Le(&raw), rows, cols).unwrap();
            let want = reference(&values, rows, cols);
            assert!(
                (got - want).abs() < 1e-4 * want,
                "{rows}x{cols}: {got} vs {want}"
            );
            let decoded = spectral_ratio(Floats::Decoded(&values), rows, cols).unwrap();
            assert_eq!(got.to_bits(), decoded.to_bits());
        }
    }

    /// How a weight is stored (`raw_data` or `float_data`) does not change
    /// what the rules are told about it.
    #[test]
    fn float_data_and_raw_data_summarize_alike() {
        let (units, fan) = (24, 32);
        let values = spiked(units, fan);
        let list = values.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>();
        let text = format!(
            r#"<ir_version: 10, opset_import: ["" : 20]>
g (float[2,{fan}] x) => (float[2,{units}] a, float[2,{units}] b)
<float[{units},{fan}] w_raw = {{{list}}}, float[{units},{fan}] w_list = {{{list}}}>
{{
    a = Gemm <transB: int = 1> (x, w_raw)
    b = Gemm <transB: int = 1> (x, w_list)
}}"#,
            list = list.join(", ")
        );
        let (mut proto, _) = crate::onnx::text::parse_model(&text).unwrap();
        let raw = &mut proto.graph.as_mut().unwrap().initializer[0];
        assert_eq!(raw.float_data, values);
        raw.raw_data = Some(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        raw.float_data.clear();
        let m = crate::onnx::Model::from_proto(std::path::Path::new("mem.onnx"), proto).unwrap();
        let src = print_model(&m.proto, Values::Elide);
        let graphs = crate::graph::build::build(&m, &src);
        let (raw, list) = (graphs[0].stats("w_raw"), graphs[0].stats("w_list"));
        assert!(raw.and_then(|s| s.spectral).is_some());
        assert!(raw.and_then(|s| s.unit_sq.as_ref()).is_some());
        assert_eq!(raw, list);
    }

    /// A tensor large enough to be split across cores gives the same summary as one pass.
    #[test]
    fn split_summaries_merge_exactly() {
        let units = 1024;
        let count = (PARALLEL_MIN / 4 / units + 1) * units;
        let mut raw = Vec::with_capacity(count * 4);
        for i in 0..count {
            let v = if i == 777_777 {
                f32::NAN
            } else {
                ((i % 97) as f32 - 48.0) / 64.0
            };
            raw.extend_from_slice(&v.to_le_bytes());
        }
        for units_first in [true, false] {
            let job = Job {
                layout: Some((units, units_first)),
                keep_values: false,
            };
            let split = summarize_f32(Floats::Le(&raw), count, job, &|_| {}).unwrap();
            let row_len = if units_first { count / units } else { units };
            let first = split.first.unwrap() as f32;
            let whole = scan(Floats::Le(&raw), 0, row_len, first, job, &|_| {});
            assert_eq!(split.count, count);
            assert_eq!((split.nan, split.inf), (1, 0));
            assert_eq!(split.first_non_finite, Some(777_777));
            assert!(!split.all_equal);
            let mut expected = TensorStats::default();
            whole.moments.finish(&mut expected);
            assert!((split.mean - expected.mean).abs() < 1e-9);
            assert!((split.std - expected.std).abs() < 1e-9);
            assert!((split.kurtosis - expected.kurtosis).abs() < 1e-9);
            let (a, b) = (split.unit_sq.unwrap(), whole.stats.unit_sq.unwrap());
            assert!(a
                .iter()
                .zip(&b)
                .all(|(x, y)| (x - y).abs() < 1e-6 || (x.is_nan() && y.is_nan())));
        }
    }
}
