//! Summaries of the values the probe sees, built as each tensor is computed.
//!
//! Every float tensor gets a [`Summary`] (count, mean, spread, range, zeros,
//! non-finite values) in one pass; tensors a probe rule watches also get
//! per-unit counts, along the channel axis of a conv output or the feature
//! axis of a dense one. Nothing else is kept, so memory stays at what the
//! forward pass itself needs.

use super::inputs::Rng;

/// What to measure on one tensor besides its summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Watch {
    /// Per-unit counts along this axis.
    pub unit_axis: Option<UnitAxis>,
    /// Count values above zero per unit (ReLU outputs).
    pub positive: bool,
    /// Count values with `|x|` above this per unit (sigmoid and tanh inputs).
    pub saturation: Option<f32>,
    /// Cross-entropy of a classifier head against seeded uniform labels over
    /// the last axis.
    pub head: Option<Head>,
}

/// Which axis holds a tensor's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitAxis {
    /// Axis 1: the channels of a convolution's output.
    Channels,
    /// The last axis: the features of a dense layer's output.
    Features,
}

/// What a classifier head's values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    Logits,
    Probabilities,
    LogProbabilities,
}

/// One tensor as the probe saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub shape: Vec<usize>,
    /// Finite values.
    pub count: u64,
    pub sum: f64,
    pub sum_sq: f64,
    pub min: f64,
    pub max: f64,
    pub zeros: u64,
    /// NaN and infinite values, and of those the NaNs.
    pub non_finite: u64,
    pub nan: u64,
    pub units: Option<Units>,
    /// Mean cross-entropy against uniform random labels, for a watched head.
    pub cross_entropy: Option<f64>,
}

/// Per-unit counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Units {
    pub axis: usize,
    /// Values per unit: every position of the batch (and of the spatial axes).
    pub samples: u64,
    pub positive: Vec<u64>,
    pub saturated: Vec<u64>,
}

impl Units {
    /// Units never positive over the batch (a ReLU's dead units), and all units.
    pub fn dead(&self) -> (usize, usize) {
        let dead = self.positive.iter().filter(|&&c| c == 0).count();
        (dead, self.positive.len())
    }

    /// Units saturated on more than `per_sample` of their values, and all units.
    pub fn saturated(&self, per_sample: f64) -> (usize, usize) {
        let limit = per_sample * self.samples as f64;
        let saturated = self.saturated.iter().filter(|&&c| c as f64 > limit).count();
        (saturated, self.saturated.len())
    }
}

impl Summary {
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.sum / self.count as f64
        }
    }

    pub fn std(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let m = self.mean();
        (self.sum_sq / self.count as f64 - m * m).max(0.0).sqrt()
    }

    /// Root mean square: the scale of a signal whether or not it is centred.
    pub fn rms(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            (self.sum_sq / self.count as f64).sqrt()
        }
    }

    pub fn is_finite(&self) -> bool {
        self.non_finite == 0
    }

    pub fn elements(&self) -> u64 {
        self.count + self.non_finite
    }
}

/// Summarizes `values` of a tensor of `shape` (row-major).
pub fn summarize(values: &[f32], shape: &[usize], watch: Option<&Watch>, seed: u64) -> Summary {
    let mut s = Summary {
        shape: shape.to_vec(),
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        ..Default::default()
    };
    // Large tensors are split into parts of a fixed size, summarized on every
    // core and merged in order: the sums do not depend on the core count.
    let partials = parallel_parts(values, PART, moments);
    for m in partials {
        s.sum += m.sum;
        s.sum_sq += m.sum_sq;
        s.min = s.min.min(m.min);
        s.max = s.max.max(m.max);
        s.zeros += m.zeros;
        s.non_finite += m.non_finite;
        s.nan += m.nan;
    }
    s.count = values.len() as u64 - s.non_finite;
    if let Some(w) = watch {
        let last = shape.len().saturating_sub(1);
        let axis = w.unit_axis.map(|a| match a {
            UnitAxis::Channels => 1,
            UnitAxis::Features => last,
        });
        // An empty tensor has no units to count, however large the unit axis
        // it declares; otherwise there are at most as many units as values.
        if let Some(axis) = axis.filter(|&a| a < shape.len() && !values.is_empty()) {
            s.units = Some(units(values, shape, axis, w));
        }
        if let Some(head) = w.head {
            s.cross_entropy = cross_entropy(values, shape, head, seed);
        }
    }
    s
}

/// Values per part of a large tensor.
const PART: usize = 1 << 20;

/// `f` over consecutive parts of `len` values, on every core, in part order.
pub(crate) fn parallel_parts<T: Send>(
    values: &[f32],
    len: usize,
    f: impl Fn(&[f32]) -> T + Sync,
) -> Vec<T> {
    let parts: Vec<&[f32]> = values.chunks(len.max(1)).collect();
    crate::parallel::map(&parts, |part| f(part))
}

#[derive(Default)]
struct Moments {
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
    zeros: u64,
    non_finite: u64,
    nan: u64,
}

/// One pass over `values`, in blocks of eight-lane f32 accumulators that the
/// compiler vectorizes. A block whose sums are finite holds no NaN or
/// infinity (both propagate into the sum); other blocks are counted exactly.
fn moments(values: &[f32]) -> Moments {
    let mut m = Moments {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        ..Default::default()
    };
    for block in values.chunks(4096) {
        let mut sum = [0f32; 8];
        let mut sq = [0f32; 8];
        let mut lo = [f32::INFINITY; 8];
        let mut hi = [f32::NEG_INFINITY; 8];
        let mut zeros = [0u32; 8];
        let lanes = block.chunks_exact(8);
        let rest = lanes.remainder();
        // Selects, not `f32::min`: a NaN already sends the block to the exact path
        // below, and a select compiles to one vector instruction.
        for c in lanes {
            for i in 0..8 {
                let x = c[i];
                sum[i] += x;
                sq[i] += x * x;
                lo[i] = if x < lo[i] { x } else { lo[i] };
                hi[i] = if x > hi[i] { x } else { hi[i] };
                zeros[i] += (x == 0.0) as u32;
            }
        }
        for (i, &x) in rest.iter().enumerate() {
            sum[i] += x;
            sq[i] += x * x;
            lo[i] = lo[i].min(x);
            hi[i] = hi[i].max(x);
            zeros[i] += (x == 0.0) as u32;
        }
        let bsum: f64 = sum.iter().map(|&v| v as f64).sum();
        let bsq: f64 = sq.iter().map(|&v| v as f64).sum();
        if bsum.is_finite() && bsq.is_finite() {
            m.sum += bsum;
            m.sum_sq += bsq;
            m.min = m
                .min
                .min(lo.iter().fold(f32::INFINITY, |a, &b| a.min(b)) as f64);
            m.max = m
                .max
                .max(hi.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64);
            m.zeros += zeros.iter().map(|&z| z as u64).sum::<u64>();
            continue;
        }
        for &x in block {
            if !x.is_finite() {
                m.non_finite += 1;
                m.nan += x.is_nan() as u64;
                continue;
            }
            let xd = x as f64;
            m.sum += xd;
            m.sum_sq += xd * xd;
            m.min = m.min.min(xd);
            m.max = m.max.max(xd);
            m.zeros += (x == 0.0) as u64;
        }
    }
    m
}

fn units(values: &[f32], shape: &[usize], axis: usize, w: &Watch) -> Units {
    let dim = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut u = Units {
        axis,
        samples: (outer * inner) as u64,
        positive: vec![0; dim],
        saturated: vec![0; dim],
    };
    if inner == 0 || dim == 0 {
        return u;
    }
    // Whole samples per part, on every core; counts add up in any order.
    let sample = dim * inner;
    let per_part = (PART / sample).max(1) * sample;
    let parts = parallel_parts(values, per_part, |part| {
        let mut positive = vec![0u64; if w.positive { dim } else { 0 }];
        let mut saturated = vec![0u64; if w.saturation.is_some() { dim } else { 0 }];
        for (i, block) in part.chunks(inner).enumerate() {
            let unit = i % dim;
            if let Some(p) = positive.get_mut(unit) {
                *p += block.iter().map(|&x| (x > 0.0) as u64).sum::<u64>();
            }
            if let (Some(s), Some(t)) = (saturated.get_mut(unit), w.saturation) {
                *s += block.iter().map(|&x| (x.abs() > t) as u64).sum::<u64>();
            }
        }
        (positive, saturated)
    });
    for (positive, saturated) in parts {
        u.positive
            .iter_mut()
            .zip(positive)
            .for_each(|(a, b)| *a += b);
        u.saturated
            .iter_mut()
            .zip(saturated)
            .for_each(|(a, b)| *a += b);
    }
    u
}

/// Mean cross-entropy of rows along the last axis against labels drawn
/// uniformly from a stream seeded by `seed`.
fn cross_entropy(values: &[f32], shape: &[usize], head: Head, seed: u64) -> Option<f64> {
    let classes = *shape.last()?;
    if classes < 2 || values.is_empty() {
        return None;
    }
    let mut rng = Rng::for_input(seed, "nnlint::labels");
    let mut total = 0f64;
    let mut rows = 0usize;
    for row in values.chunks(classes) {
        let label = rng.below(classes as u64) as usize;
        let z = row[label] as f64;
        let loss = match head {
            Head::Logits => {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
                lse - z
            }
            Head::Probabilities => -z.max(f64::MIN_POSITIVE).ln(),
            Head::LogProbabilities => -z,
        };
        total += loss;
        rows += 1;
    }
    Some(total / rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_count_units_along_the_axis() {
        // [2, 3, 2]: unit 0 is never positive, unit 2 saturates everywhere.
        let v = [-1., -2., 1., -1., 9., 9., -3., -4., 0.5, 0.5, -9., 9.];
        let w = Watch {
            unit_axis: Some(UnitAxis::Channels),
            positive: true,
            saturation: Some(5.0),
            head: None,
        };
        let s = summarize(&v, &[2, 3, 2], Some(&w), 0);
        let u = s.units.unwrap();
        assert_eq!(u.samples, 4);
        assert_eq!(u.positive, vec![0, 3, 3]);
        assert_eq!(u.saturated, vec![0, 0, 4]);
        assert_eq!(s.count, 12);
        assert_eq!((s.min, s.max), (-9.0, 9.0));
    }

    #[test]
    fn non_finite_values_are_counted_not_summed() {
        let s = summarize(&[1.0, f32::NAN, f32::INFINITY, 3.0], &[4], None, 0);
        assert_eq!((s.non_finite, s.count, s.mean()), (2, 2, 2.0));
    }

    #[test]
    fn uniform_logits_cost_ln_c() {
        let v = vec![0.0f32; 10 * 64];
        let w = Watch {
            head: Some(Head::Logits),
            ..Default::default()
        };
        let s = summarize(&v, &[64, 10], Some(&w), 3);
        assert!((s.cross_entropy.unwrap() - 10f64.ln()).abs() < 1e-9);
    }
}
