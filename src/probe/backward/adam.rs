//! Adam, as `torch.optim.Adam` computes it (no weight decay), updating each
//! weight in place.
//!
//! candle-nn's `AdamW` writes every operation of its update out as a new
//! tensor of the weight's size: about eight per weight and step, so that a
//! fit held eight copies of its largest weight beyond the moments (on
//! BERT-base, its 30522 x 768 embedding, 750 MB of a 2.26 GB estimate) and
//! spent 1.2e-7 s per value of it, a third of a ResNet-50 step in all. Here
//! one pass over each weight reads its gradient and updates both moments
//! and the weight, in the weight's own storage.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Var};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Adam over float32 variables, with β = ([`BETA1`], [`BETA2`]) and ε = [`EPS`].
pub(super) struct Adam {
    lr: f64,
    steps: i32,
    params: Vec<Param>,
}

/// A variable and its two moments, allocated at its first gradient.
struct Param {
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    pub(super) fn new(vars: Vec<Var>, lr: f64) -> Adam {
        let params = vars
            .into_iter()
            .map(|var| Param {
                var,
                m: Vec::new(),
                v: Vec::new(),
            })
            .collect();
        Adam {
            lr,
            steps: 0,
            params,
        }
    }

    /// One step along `grads`; a variable without a gradient keeps its value
    /// and its moments, as in torch.
    pub(super) fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps = self.steps.saturating_add(1);
        let bias1 = 1.0 - BETA1.powi(self.steps);
        let bias2 = 1.0 - BETA2.powi(self.steps);
        for p in &mut self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let g = g.contiguous()?;
            if p.m.is_empty() {
                p.m = vec![0.0; p.var.elem_count()];
                p.v = vec![0.0; p.var.elem_count()];
            }
            let update = Update {
                m: RefCell::new(&mut p.m),
                v: RefCell::new(&mut p.v),
                step_size: (self.lr / bias1) as f32,
                bias2_sqrt: bias2.sqrt() as f32,
            };
            p.var.as_tensor().inplace_op2(&g, &update)?;
        }
        Ok(())
    }
}

/// One weight's update, given its moments and this step's scalars.
struct Update<'a> {
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    step_size: f32,
    bias2_sqrt: f32,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "nnlint-adam"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (Some((w0, w1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("adam updates contiguous weights and gradients only");
        };
        let (CpuStorage::F32(w), CpuStorage::F32(g)) = (s1, s2) else {
            candle_core::bail!("adam updates float32 weights only");
        };
        let (w, g) = (&mut w[w0..w1], &g[g0..g1]);
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if w.len() != g.len() || w.len() != m.len() || w.len() != v.len() {
            candle_core::bail!("adam: a gradient of another size than its weight");
        }
        // As torch passes them: each scalar computed in f64, then rounded
        // once (`1 - β2` from a rounded β2 would be off by 1.3e-5).
        let (b2, eps) = (BETA2 as f32, EPS as f32);
        let (one_minus_b1, one_minus_b2) = ((1.0 - BETA1) as f32, (1.0 - BETA2) as f32);
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            // torch: exp_avg.lerp_(grad, 1 - β1), exp_avg_sq.mul_(β2).addcmul_(grad, grad, 1 - β2),
            // denom = exp_avg_sq.sqrt() / sqrt(1 - β2^t) + ε, param.addcdiv_(exp_avg, denom, -lr / (1 - β1^t)).
            *m += (g - *m) * one_minus_b1;
            *v = *v * b2 + one_minus_b2 * g * g;
            *w -= self.step_size * *m / (v.sqrt() / self.bias2_sqrt + eps);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Three steps on `f(w) = Σ w²/2 + 3 w₀` against the same steps in f64,
    /// written from torch's update.
    #[test]
    fn steps_as_torch_adam_computes_them() {
        let start = [0.5f32, -1.0, 2.0];
        let var = Var::from_tensor(&Tensor::new(&start, &Device::Cpu).unwrap()).unwrap();
        let mut adam = Adam::new(vec![var.clone()], 0.1);
        let (mut w, mut m, mut v) = (start.map(f64::from), [0.0f64; 3], [0.0f64; 3]);
        for t in 1..=3 {
            let x = var.as_tensor();
            let loss = ((x.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap()
                + (x.get(0).unwrap() * 3.0).unwrap())
            .unwrap();
            adam.step(&loss.backward().unwrap()).unwrap();
            for i in 0..3 {
                let g = w[i] + if i == 0 { 3.0 } else { 0.0 };
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * g;
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * g * g;
                let denom = v[i].sqrt() / (1.0 - BETA2.powi(t)).sqrt() + EPS;
                w[i] -= 0.1 / (1.0 - BETA1.powi(t)) * m[i] / denom;
            }
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip(w) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} against {w}");
        }
        // Each step moves each weight by about lr against its gradient's sign.
        assert!(got[0] < 0.25 && got[1] > -0.75 && got[2] < 1.75, "{got:?}");
    }

    /// A variable the loss does not reach keeps its value.
    #[test]
    fn a_weight_without_gradient_stays() {
        let a = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[5.0f32], &Device::Cpu).unwrap()).unwrap();
        let mut adam = Adam::new(vec![a.clone(), b.clone()], 0.1);
        let loss = a.as_tensor().sum_all().unwrap();
        adam.step(&loss.backward().unwrap()).unwrap();
        assert_eq!(b.as_tensor().to_vec1::<f32>().unwrap(), vec![5.0]);
        assert_ne!(a.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
    }
}
