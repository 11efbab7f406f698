//! `Resize` (and `Upsample`) in `nearest` and `linear` modes, one axis at a
//! time: each output position reads one input position (nearest) or two,
//! weighted (linear), picked with `index_select`, which candle
//! differentiates. Separable, so `linear` over two axes is bilinear.
//!
//! Coordinates follow the operator's `coordinate_transformation_mode`, and,
//! as onnxruntime and torch do, a linear sample outside the input is taken
//! at its edge.

use candle_core::{Device, Tensor};

use super::ops::{c, i64_tensor, R};

/// How an output coordinate maps back to the input.
#[derive(Clone, Copy)]
pub(super) enum Transform {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

impl Transform {
    pub(super) fn parse(s: &str) -> R<Transform> {
        Ok(match s {
            "half_pixel" => Transform::HalfPixel,
            "pytorch_half_pixel" => Transform::PytorchHalfPixel,
            "align_corners" => Transform::AlignCorners,
            "asymmetric" => Transform::Asymmetric,
            "tf_half_pixel_for_nn" => Transform::TfHalfPixelForNn,
            other => {
                return Err(format!(
                "the gradient engine has no `Resize` with coordinate_transformation_mode `{other}`"
            ))
            }
        })
    }

    /// The input coordinate of output position `x`, for an axis resized from
    /// `input` to `output` values by `scale`.
    fn source(self, x: usize, input: usize, output: usize, scale: f64) -> f64 {
        let x = x as f64;
        match self {
            Transform::HalfPixel => (x + 0.5) / scale - 0.5,
            Transform::PytorchHalfPixel if output > 1 => (x + 0.5) / scale - 0.5,
            Transform::PytorchHalfPixel => 0.0,
            Transform::AlignCorners if output > 1 => {
                x * (input as f64 - 1.0) / (output as f64 - 1.0)
            }
            Transform::AlignCorners => 0.0,
            Transform::Asymmetric => x / scale,
            Transform::TfHalfPixelForNn => (x + 0.5) / scale,
        }
    }
}

/// How a fractional coordinate picks its nearest input position.
#[derive(Clone, Copy)]
pub(super) enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

impl Nearest {
    pub(super) fn parse(s: &str) -> R<Nearest> {
        Ok(match s {
            "round_prefer_floor" => Nearest::RoundPreferFloor,
            "round_prefer_ceil" => Nearest::RoundPreferCeil,
            "floor" => Nearest::Floor,
            "ceil" => Nearest::Ceil,
            other => return Err(format!("`Resize` with nearest_mode `{other}`")),
        })
    }

    fn pick(self, v: f64) -> f64 {
        match self {
            Nearest::RoundPreferFloor if v.fract() == 0.5 => v.floor(),
            Nearest::RoundPreferCeil if v.fract() == 0.5 => v.ceil(),
            Nearest::RoundPreferFloor | Nearest::RoundPreferCeil => v.round(),
            Nearest::Floor => v.floor(),
            Nearest::Ceil => v.ceil(),
        }
    }
}

/// The interpolation.
#[derive(Clone, Copy)]
pub(super) enum Mode {
    Nearest(Nearest),
    Linear,
}

/// `x` resized to `sizes`, with `scales` the factor per axis (the output
/// size over the input size when the node gave sizes).
pub(super) fn resize(
    x: &Tensor,
    sizes: &[usize],
    scales: &[f64],
    mode: Mode,
    t: Transform,
) -> R<Tensor> {
    if sizes.len() != x.rank() || scales.len() != x.rank() {
        return Err(format!(
            "`Resize` to {sizes:?} of a tensor of rank {}",
            x.rank()
        ));
    }
    let mut y = x.clone();
    for (a, (&output, &scale)) in sizes.iter().zip(scales).enumerate() {
        let input = y.dims()[a];
        if output == input && scale == 1.0 {
            continue;
        }
        if input == 0 || scale <= 0.0 {
            return Err(format!("`Resize` of axis {a} from {input} by {scale}"));
        }
        let last = (input - 1) as f64;
        let coords: Vec<f64> = (0..output)
            .map(|o| t.source(o, input, output, scale))
            .collect();
        y = match mode {
            Mode::Nearest(rule) => {
                let at: Vec<i64> = coords
                    .iter()
                    .map(|&v| rule.pick(v).clamp(0.0, last) as i64)
                    .collect();
                y.index_select(&i64_tensor(&at)?, a).map_err(c)?
            }
            Mode::Linear => {
                let clamped: Vec<f64> = coords.iter().map(|v| v.clamp(0.0, last)).collect();
                let low: Vec<i64> = clamped.iter().map(|v| v.floor() as i64).collect();
                let high: Vec<i64> = low.iter().map(|&l| (l + 1).min(last as i64)).collect();
                let w: Vec<f64> = clamped
                    .iter()
                    .zip(&low)
                    .map(|(v, &l)| v - l as f64)
                    .collect();
                let mut shape = vec![1; y.rank()];
                shape[a] = output;
                let w = Tensor::from_vec(w, shape, &Device::Cpu)
                    .and_then(|w| w.to_dtype(y.dtype()))
                    .map_err(c)?;
                let lo = y.index_select(&i64_tensor(&low)?, a).map_err(c)?;
                let hi = y.index_select(&i64_tensor(&high)?, a).map_err(c)?;
                // lo + (hi - lo) * w
                hi.sub(&lo)
                    .and_then(|d| d.broadcast_mul(&w))
                    .and_then(|d| d.add(&lo))
                    .map_err(c)?
            }
        };
    }
    Ok(y)
}
