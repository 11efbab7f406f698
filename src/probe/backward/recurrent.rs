//! `LSTM`, `GRU` and `RNN`, unrolled over time as candle's products and
//! activations, which candle differentiates.
//!
//! The input projection of every step is one product; each step then adds
//! the recurrent product of the previous hidden state. Directions follow
//! ONNX: `forward`, `reverse` (the steps run from the last, and each output
//! stays at its own step) and `bidirectional` (both, on the direction axis).
//! The default activations are the only ones: sigmoid gates, tanh cells.
//! Peepholes are supported for `LSTM`; `clip`, `input_forget`, custom
//! activations and sequences of different lengths are refused by name.

use candle_core::{Device, Tensor, D};

use super::ops::{c, ints, sigmoid, R};
use crate::onnx::proto::NodeProto;

/// Which recurrent operator, with its gate count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cell {
    Lstm,
    /// `linear_before_reset`: the reset gate multiplies the recurrent
    /// product, as torch computes it, instead of the state.
    Gru {
        linear_before_reset: bool,
    },
    Rnn,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru { .. } => 3,
            Cell::Rnn => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "LSTM",
            Cell::Gru { .. } => "GRU",
            Cell::Rnn => "RNN",
        }
    }
}

/// What the node asks of the cell.
pub(super) struct Attributes {
    pub hidden: usize,
    pub direction: String,
    /// 1: inputs and outputs with the batch leading.
    pub layout: i64,
}

/// The operator's outputs: `Y`, `Y_h` and, for `LSTM`, `Y_c`.
pub(super) fn recurrent(
    cell: Cell,
    n: &NodeProto,
    a: &Attributes,
    inputs: &[Option<Tensor>],
) -> R<Vec<Tensor>> {
    refuse_unsupported(cell, n, inputs)?;
    let arg = |i: usize| inputs.get(i).and_then(|t| t.as_ref());
    let (x, w, r) = match (arg(0), arg(1), arg(2)) {
        (Some(x), Some(w), Some(r)) if [x, w, r].iter().all(|t| t.rank() == 3) => (x, w, r),
        _ => {
            return Err(format!(
                "`{}` without an input and weights of rank 3",
                cell.name()
            ))
        }
    };
    // Time leading: [seq, batch, input].
    let x = if a.layout == 1 {
        x.transpose(0, 1).map_err(c)?
    } else {
        x.clone()
    };
    let (steps, batch) = (x.dims()[0], x.dims()[1]);
    let h = a.hidden;
    let dirs: Vec<bool> = match a.direction.as_str() {
        "forward" | "" => vec![false],
        "reverse" => vec![true],
        "bidirectional" => vec![false, true],
        other => return Err(format!("`{}` in direction `{other}`", cell.name())),
    };
    if w.dims()[0] != dirs.len() {
        return Err(format!(
            "`{}` weights for {} directions, and direction `{}`",
            cell.name(),
            w.dims()[0],
            a.direction
        ));
    }
    // Initial states: [dirs, batch, H], or [batch, dirs, H] in layout 1.
    let state = |i: usize, d: usize| -> R<Tensor> {
        match arg(i) {
            Some(s) if a.layout == 1 => s.narrow(1, d, 1).and_then(|s| s.squeeze(1)).map_err(c),
            Some(s) => s.get(d).map_err(c),
            None => Tensor::zeros((batch, h), x.dtype(), &Device::Cpu).map_err(c),
        }
    };
    let (mut ys, mut hs, mut cs) = (Vec::new(), Vec::new(), Vec::new());
    for (d, &reverse) in dirs.iter().enumerate() {
        let gates = cell.gates();
        let wd = w.get(d).map_err(c)?; // [gates * H, input]
        let rd = r.get(d).map_err(c)?; // [gates * H, H]
        let bias = arg(3)
            .map(|b| -> R<(Tensor, Tensor)> {
                let b = b.get(d).map_err(c)?;
                Ok((
                    b.narrow(0, 0, gates * h).map_err(c)?,
                    b.narrow(0, gates * h, gates * h).map_err(c)?,
                ))
            })
            .transpose()?;
        // Every step's input projection at once: [seq, batch, gates * H].
        let flat = x
            .reshape((steps * batch, x.dims()[2]))
            .and_then(|x| x.matmul(&wd.t()?))
            .map_err(c)?;
        let mut xw = flat.reshape((steps, batch, gates * h)).map_err(c)?;
        // GRU's recurrent bias of the candidate stays with the recurrent
        // product when the reset gate multiplies that product.
        let (wb, rb) = match &bias {
            Some((wb, rb)) => (Some(wb.clone()), Some(rb.clone())),
            None => (None, None),
        };
        let separate_rb = matches!(
            cell,
            Cell::Gru {
                linear_before_reset: true
            }
        );
        if let Some(wb) = &wb {
            xw = xw.broadcast_add(wb).map_err(c)?;
        }
        if let (Some(rb), false) = (&rb, separate_rb) {
            xw = xw.broadcast_add(rb).map_err(c)?;
        }
        let peep = match (cell, arg(7)) {
            (Cell::Lstm, Some(p)) => Some(p.get(d).map_err(c)?),
            _ => None,
        };
        let rt = rd.t().map_err(c)?;
        let mut hprev = state(5, d)?;
        let mut cprev = if cell == Cell::Lstm {
            Some(state(6, d)?)
        } else {
            None
        };
        let mut out: Vec<Option<Tensor>> = vec![None; steps];
        let order: Vec<usize> = if reverse {
            (0..steps).rev().collect()
        } else {
            (0..steps).collect()
        };
        for t in order {
            let g = |k: usize, of: &Tensor| of.narrow(D::Minus1, k * h, h).map_err(c);
            let xt = xw.get(t).map_err(c)?; // [batch, gates * H]
            let (hn, cn) = match cell {
                Cell::Lstm => {
                    let all = xt.add(&hprev.matmul(&rt).map_err(c)?).map_err(c)?;
                    let cp = cprev.as_ref().ok_or("an LSTM without a cell state")?;
                    let peephole = |k: usize, state: &Tensor, pre: Tensor| -> R<Tensor> {
                        match &peep {
                            Some(p) => {
                                let pk = p.narrow(0, k * h, h).map_err(c)?;
                                pre.add(&state.broadcast_mul(&pk).map_err(c)?).map_err(c)
                            }
                            None => Ok(pre),
                        }
                    };
                    // Gate order i, o, f, c; peepholes i, o, f.
                    let i = sigmoid(&peephole(0, cp, g(0, &all)?)?)?;
                    let f = sigmoid(&peephole(2, cp, g(2, &all)?)?)?;
                    let cand = g(3, &all)?.tanh().map_err(c)?;
                    let cn = f.mul(cp).and_then(|fc| fc.add(&i.mul(&cand)?)).map_err(c)?;
                    let o = sigmoid(&peephole(1, &cn, g(1, &all)?)?)?;
                    let hn = o.mul(&cn.tanh().map_err(c)?).map_err(c)?;
                    (hn, Some(cn))
                }
                Cell::Gru {
                    linear_before_reset,
                } => {
                    // Gate order z, r, h.
                    let rec = hprev.matmul(&rt).map_err(c)?;
                    let rec = match (&rb, linear_before_reset) {
                        (Some(rb), true) => rec.broadcast_add(rb).map_err(c)?,
                        _ => rec,
                    };
                    let z = sigmoid(&g(0, &xt)?.add(&g(0, &rec)?).map_err(c)?)?;
                    let rg = sigmoid(&g(1, &xt)?.add(&g(1, &rec)?).map_err(c)?)?;
                    let hidden = if linear_before_reset {
                        rg.mul(&g(2, &rec)?).map_err(c)?
                    } else {
                        let rh = rg.mul(&hprev).map_err(c)?;
                        rh.matmul(&rt.narrow(1, 2 * h, h).map_err(c)?).map_err(c)?
                    };
                    let cand = g(2, &xt)?.add(&hidden).and_then(|v| v.tanh()).map_err(c)?;
                    // (1 - z) * cand + z * h
                    let hn = cand
                        .sub(&z.mul(&cand).map_err(c)?)
                        .and_then(|v| v.add(&z.mul(&hprev)?))
                        .map_err(c)?;
                    (hn, None)
                }
                Cell::Rnn => {
                    let hn = xt
                        .add(&hprev.matmul(&rt).map_err(c)?)
                        .and_then(|v| v.tanh())
                        .map_err(c)?;
                    (hn, None)
                }
            };
            out[t] = Some(hn.clone());
            hprev = hn;
            cprev = cn;
        }
        let steps_out: Vec<Tensor> = out.into_iter().flatten().collect();
        ys.push(Tensor::stack(&steps_out, 0).map_err(c)?); // [seq, batch, H]
        hs.push(hprev);
        if let Some(cl) = cprev {
            cs.push(cl);
        }
    }
    // Y: [seq, dirs, batch, H]; Y_h, Y_c: [dirs, batch, H].
    let mut y = Tensor::stack(&ys, 1).map_err(c)?;
    let mut yh = Tensor::stack(&hs, 0).map_err(c)?;
    let mut yc = if cs.is_empty() {
        None
    } else {
        Some(Tensor::stack(&cs, 0).map_err(c)?)
    };
    if a.layout == 1 {
        // [batch, seq, dirs, H] and [batch, dirs, H].
        y = y.permute((2, 0, 1, 3)).map_err(c)?;
        yh = yh.transpose(0, 1).map_err(c)?;
        yc = yc.map(|t| t.transpose(0, 1)).transpose().map_err(c)?;
    }
    let mut outs = vec![y, yh];
    outs.extend(yc);
    Ok(outs)
}

/// The attributes and inputs the unrolled cell does not compute, refused by name.
fn refuse_unsupported(cell: Cell, n: &NodeProto, inputs: &[Option<Tensor>]) -> R<()> {
    let op = cell.name();
    let has = |name: &str| n.attribute.iter().any(|a| a.name == name);
    if has("clip") {
        return Err(format!("the gradient engine has no `{op}` with `clip`"));
    }
    if n.attribute
        .iter()
        .any(|a| a.name == "input_forget" && a.i != 0)
    {
        return Err(format!(
            "the gradient engine has no `{op}` with `input_forget`"
        ));
    }
    let defaults: &[&str] = match cell {
        Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        Cell::Gru { .. } => &["Sigmoid", "Tanh"],
        Cell::Rnn => &["Tanh"],
    };
    if let Some(a) = n.attribute.iter().find(|a| a.name == "activations") {
        let given: Vec<String> = a
            .strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let default = given
            .iter()
            .zip(defaults.iter().cycle())
            .all(|(g, d)| g.eq_ignore_ascii_case(d));
        if !default {
            return Err(format!(
                "the gradient engine has no `{op}` with activations {}",
                given.join(", ")
            ));
        }
    }
    // Sequence lengths are fine when every sequence has all the steps.
    if let (Some(Some(lens)), Some(Some(x))) = (inputs.get(4), inputs.first()) {
        let layout = n
            .attribute
            .iter()
            .find(|a| a.name == "layout")
            .map_or(0, |a| a.i);
        let Some(&steps) = x.dims().get(usize::from(layout == 1)) else {
            return Err(format!("`{op}` with an input of rank {}", x.rank()));
        };
        let steps = steps as i64;
        if ints(lens)?.iter().any(|&l| l != steps) {
            return Err(format!(
                "the gradient engine has no `{op}` over sequences of different lengths"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.61).sin() * scale).collect();
        Tensor::from_slice(&v, shape, &Device::Cpu).unwrap()
    }

    fn node(op: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            ..Default::default()
        }
    }

    fn attributes(direction: &str) -> Attributes {
        Attributes {
            hidden: 3,
            direction: direction.into(),
            layout: 0,
        }
    }

    /// A reverse run is a forward run over the reversed sequence, with its
    /// outputs reversed back; a bidirectional one is both, side by side.
    #[test]
    fn reverse_and_bidirectional_runs_are_forward_runs_of_the_reversed_sequence() {
        for cell in [
            Cell::Lstm,
            Cell::Gru {
                linear_before_reset: true,
            },
            Cell::Rnn,
        ] {
            let g = cell.gates();
            let x = seq(&[5, 2, 4], 1.0);
            let rev = Tensor::stack(
                &(0..5).rev().map(|t| x.get(t).unwrap()).collect::<Vec<_>>(),
                0,
            )
            .unwrap();
            let (w, r, b) = (
                seq(&[1, g * 3, 4], 0.5),
                seq(&[1, g * 3, 3], 0.4),
                seq(&[1, g * 6], 0.1),
            );
            let args = |x: &Tensor, w: &Tensor, r: &Tensor, b: &Tensor| {
                vec![
                    Some(x.clone()),
                    Some(w.clone()),
                    Some(r.clone()),
                    Some(b.clone()),
                ]
            };
            let n = node(cell.name());
            let fwd = recurrent(cell, &n, &attributes("forward"), &args(&rev, &w, &r, &b)).unwrap();
            let back = recurrent(cell, &n, &attributes("reverse"), &args(&x, &w, &r, &b)).unwrap();
            // The last state of each, and step t of one against step 4 - t of the other.
            let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
            assert_eq!(flat(&fwd[1]), flat(&back[1]), "{cell:?}");
            for t in 0..5 {
                assert_eq!(
                    flat(&fwd[0].get(t).unwrap()),
                    flat(&back[0].get(4 - t).unwrap()),
                    "{cell:?} step {t}"
                );
            }
            let both = |t: &Tensor| Tensor::cat(&[t, t], 0).unwrap();
            let bi = recurrent(
                cell,
                &n,
                &attributes("bidirectional"),
                &args(&x, &both(&w), &both(&r), &both(&b)),
            )
            .unwrap();
            assert_eq!(bi[0].dims(), &[5, 2, 2, 3]);
            assert_eq!(flat(&bi[0].narrow(1, 1, 1).unwrap()), flat(&back[0]));
        }
    }
}
