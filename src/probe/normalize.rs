//! Batch normalization with the statistics of the probe batch, computed in Rust.
//!
//! Written as ONNX ops for tract, the normalization costs five passes over
//! every BatchNorm input through tract's generic broadcasting kernels, more
//! than the convolutions themselves. The lowering therefore marks each
//! normalization with an `Identity` node, and the engine computes it here
//! when the pass reaches that node: one pass for the per-channel statistics,
//! one for the affine map, on every core for large tensors.

use super::observe::parallel_parts;

/// One normalization: the channel axis is 1, as in ONNX's BatchNormalization.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Norm {
    pub eps: f32,
    /// Per-channel scale and shift after normalizing; `None` is 1 and 0.
    pub scale: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
}

/// Tensors at least this long are normalized on every core.
const PARALLEL_MIN: usize = 1 << 18;

/// The per-channel map a normalization applies: `x * a_c + b_c`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Affine {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// `(x - mean_c) / sqrt(var_c + eps) * scale_c + bias_c` over a row-major
/// tensor of `shape`, in place, statistics over every axis but 1. `None`
/// (and `x` untouched) when the shape has no channel axis or the parameters
/// do not match it.
pub fn normalize(x: &mut [f32], shape: &[usize], norm: &Norm) -> Option<()> {
    let affine = statistics(x, shape, norm)?;
    apply(x, shape, &affine)
}

/// The map [`normalize`] applies to `x`: its batch statistics, with the
/// normalization's scale and shift.
pub fn statistics(x: &[f32], shape: &[usize], norm: &Norm) -> Option<Affine> {
    let (outer, channels, inner) = layout(x, shape)?;
    let count = (outer * inner) as f64;
    let param = |p: &Option<Vec<f32>>, default: f32| match p {
        Some(v) if v.len() == channels => Some(v.clone()),
        Some(_) => None,
        None => Some(vec![default; channels]),
    };
    let (scale, bias) = (param(&norm.scale, 1.0)?, param(&norm.bias, 0.0)?);
    // Per-sample channel sums, merged in sample order: the statistics do not
    // depend on how many cores computed them.
    let row = channels * inner;
    let sums: Vec<(Vec<f64>, Vec<f64>)> = parallel_parts(x, row, |sample| {
        let mut s = vec![0f64; channels];
        let mut q = vec![0f64; channels];
        for (c, block) in sample.chunks(inner.max(1)).enumerate() {
            let (bs, bq) = sums(block);
            s[c] += bs;
            q[c] += bq;
        }
        (s, q)
    });
    let mut a = vec![0f32; channels];
    let mut b = vec![0f32; channels];
    for c in 0..channels {
        let s: f64 = sums.iter().map(|p| p.0[c]).sum();
        let q: f64 = sums.iter().map(|p| p.1[c]).sum();
        let mean = s / count;
        let var = (q / count - mean * mean).max(0.0);
        let inv = 1.0 / (var + norm.eps as f64).sqrt();
        a[c] = (inv * scale[c] as f64) as f32;
        b[c] = (bias[c] as f64 - mean * inv * scale[c] as f64) as f32;
    }
    Some(Affine { a, b })
}

/// `x * a_c + b_c` in place over a row-major tensor of `shape`, channels on
/// axis 1. `None` (and `x` untouched) when the map does not fit the shape.
pub fn apply(x: &mut [f32], shape: &[usize], affine: &Affine) -> Option<()> {
    let (outer, channels, inner) = layout(x, shape)?;
    let Affine { a, b } = affine;
    if a.len() != channels || b.len() != channels {
        return None;
    }
    let row = channels * inner;
    let workers = if x.len() >= PARALLEL_MIN {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, outer.max(1))
    } else {
        1
    };
    let rows_per = outer.div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        for part in x.chunks_mut(rows_per * row) {
            scope.spawn(move || {
                for (i, block) in part.chunks_mut(inner.max(1)).enumerate() {
                    let c = i % channels;
                    let (ac, bc) = (a[c], b[c]);
                    for v in block {
                        *v = *v * ac + bc;
                    }
                }
            });
        }
    });
    Some(())
}

/// Samples, channels (axis 1) and positions per channel of a tensor, when
/// `x` holds `shape`'s values and there is a channel.
fn layout(x: &[f32], shape: &[usize]) -> Option<(usize, usize, usize)> {
    let channels = *shape.get(1)?;
    let inner: usize = shape[2..].iter().product();
    let outer = shape[0];
    (channels > 0 && outer * inner > 0 && x.len() == outer * channels * inner)
        .then_some((outer, channels, inner))
}

/// Sum and sum of squares of a block, in eight f32 lanes.
fn sums(block: &[f32]) -> (f64, f64) {
    let mut s = [0f32; 8];
    let mut q = [0f32; 8];
    let lanes = block.chunks_exact(8);
    let rest = lanes.remainder();
    for c in lanes {
        for i in 0..8 {
            s[i] += c[i];
            q[i] += c[i] * c[i];
        }
    }
    let mut bs: f64 = s.iter().map(|&v| v as f64).sum();
    let mut bq: f64 = q.iter().map(|&v| v as f64).sum();
    for &v in rest {
        bs += v as f64;
        bq += (v * v) as f64;
    }
    (bs, bq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_comes_out_standardized_then_scaled() {
        // [2, 2, 3]: channel 0 is 1..6 over the batch, channel 1 constant 7.
        let x = [1., 2., 3., 7., 7., 7., 4., 5., 6., 7., 7., 7.];
        let norm = Norm {
            eps: 1e-5,
            scale: Some(vec![2.0, 1.0]),
            bias: Some(vec![0.5, -1.0]),
        };
        let mut y = x;
        normalize(&mut y, &[2, 2, 3], &norm).unwrap();
        let c0: Vec<f32> = [0, 1, 2, 6, 7, 8].iter().map(|&i| y[i]).collect();
        let mean = c0.iter().sum::<f32>() / 6.0;
        let var = c0.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 6.0;
        assert!(
            (mean - 0.5).abs() < 1e-5 && (var - 4.0).abs() < 1e-4,
            "{mean} {var}"
        );
        // A constant channel has no spread: it comes out as its shift.
        assert!((y[3] + 1.0).abs() < 1e-5, "{}", y[3]);
        let mut z = x;
        assert!(
            normalize(&mut z, &[2, 3, 2], &norm).is_none(),
            "parameters of the wrong size"
        );
        assert_eq!(z, x, "left untouched");
    }
}

/// The op type of the node the lowering writes for a normalization; its
/// attributes are `epsilon` and, when not 1 and 0, `scale` and `bias`.
pub const OP_TYPE: &str = "NnlintBatchStatisticsNorm";

/// The normalization as a tract operator. It is opaque to tract's optimizer,
/// so it cannot be folded into a convolution the way a BatchNorm would be.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStatisticsNorm(pub Norm);

// tract compares ops for equality when it deduplicates nodes; parameters are
// never NaN, so equality is an equivalence here.
impl Eq for BatchStatisticsNorm {}

mod op {
    use super::{apply, statistics, Affine, BatchStatisticsNorm, Norm, OP_TYPE};
    use tract_onnx::pb;
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::internal::*;
    use tract_onnx::tract_hir::infer::*;
    use tract_onnx::tract_hir::ops::expandable::inference_wrap;

    impl Op for BatchStatisticsNorm {
        fn name(&self) -> StaticName {
            OP_TYPE.into()
        }

        op_as_typed_op!();
    }

    impl BatchStatisticsNorm {
        /// The normalization of `x`: with its own batch statistics, or with
        /// `replay`, a map an earlier pass computed. Returns the map used.
        pub fn normalize(
            &self,
            x: TValue,
            replay: Option<&Affine>,
        ) -> TractResult<(TValue, Affine)> {
            // In place when nothing else holds the input: no second buffer to
            // allocate and fault in.
            let x = x.into_tensor();
            let dt = x.datum_type();
            let mut y = if dt == DatumType::F32 {
                x
            } else {
                x.cast_to::<f32>()?.into_owned()
            };
            let shape = y.shape().to_vec();
            let mut view = y.try_as_plain_ram_mut()?;
            let values = view.as_slice_mut::<f32>()?;
            let affine = match replay {
                Some(a) => Some(a.clone()),
                None => statistics(values, &shape, &self.0),
            };
            affine
                .as_ref()
                .and_then(|a| apply(values, &shape, a))
                .ok_or_else(|| {
                    format_err!(
                        "cannot normalize a tensor of shape {:?} over {:?}",
                        shape,
                        self.0
                    )
                })?;
            if dt != DatumType::F32 {
                y = y.cast_to_dt(dt)?.into_owned();
            }
            Ok((y.into_tvalue(), affine.unwrap_or_default()))
        }
    }

    impl EvalOp for BatchStatisticsNorm {
        fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
            let (y, _) = self.normalize(inputs.remove(0), None)?;
            Ok(tvec![y])
        }

        op_out_of_plan!();
    }

    impl TypedOp for BatchStatisticsNorm {
        fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
            Ok(tvec!(inputs[0].without_value()))
        }

        as_op!();
    }

    /// `op` for tract's parser: one input, and an output of the input's type
    /// and shape. nnlint's own operators are all of this kind.
    pub(crate) fn same_type_and_shape<O: TypedOp>(op: O) -> Box<dyn InferenceOp> {
        inference_wrap(op, 1, |_op, s, inputs, outputs| {
            check_input_arity(inputs, 1)?;
            check_output_arity(outputs, 1)?;
            s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
            s.equals(&inputs[0].shape, &outputs[0].shape)?;
            Ok(())
        })
    }

    /// The ONNX builder tract's parser calls for [`OP_TYPE`] nodes.
    pub fn build(
        _ctx: &tract_onnx::model::ParsingContext,
        node: &pb::NodeProto,
    ) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
        let norm = Norm {
            eps: node.get_attr_opt::<f32>("epsilon")?.unwrap_or(1e-5),
            scale: node.get_attr_opt_vec::<f32>("scale")?,
            bias: node.get_attr_opt_vec::<f32>("bias")?,
        };
        Ok((same_type_and_shape(BatchStatisticsNorm(norm)), vec![]))
    }
}

pub use op::build;
pub(crate) use op::same_type_and_shape;
