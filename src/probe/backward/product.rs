//! A matrix product whose backward pass builds only the gradients it is asked for.
//!
//! candle differentiates `matmul` for both operands whatever the backward
//! pass needs: the gradient of a weight when only an input's is wanted
//! (batch mixing holds the weights fixed), or of an input that is no
//! variable. Each such gradient is a product the size of the operand, and
//! candle sums it into its store through a zero tensor of that size: for
//! VGG-11's 25088 x 4096 layer, three tensors of 411 MB at once, for a
//! gradient nobody reads. Here an operand's gradient is computed only when
//! the operand is tracked, that is when it leads to a variable.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// `a · b`, of two matrices or of two stacks of them of the same shape
/// (`[..., m, k] · [..., k, n]`), with `b` read transposed when
/// `b_transposed` (`[..., n, k]`, a `Gemm`'s `transB`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Product {
    pub b_transposed: bool,
}

impl Product {
    /// `a · b` on contiguous operands, tracked for the backward pass.
    pub(super) fn apply(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        a.contiguous()?.apply_op2(&b.contiguous()?, self)
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "nnlint-product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        // On the storages in place: a weight is not copied to be read.
        let (da, db) = (l1.dims(), l2.dims());
        let r = da.len();
        if r < 2 || db.len() != r || da[..r - 2] != db[..r - 2] {
            candle_core::bail!("a product of {da:?} and {db:?}");
        }
        let rhs = if self.b_transposed {
            l2.transpose(r - 2, r - 1)?
        } else {
            l2.clone()
        };
        let (m, k, n) = (da[r - 2], da[r - 1], rhs.dims()[r - 1]);
        if rhs.dims()[r - 2] != k {
            candle_core::bail!("a product of {da:?} and {db:?}");
        }
        let batch = da[..r - 2].iter().product();
        let y = s1.matmul(s2, (batch, m, n, k), l1, &rhs)?;
        let mut shape = da[..r - 2].to_vec();
        shape.extend([m, n]);
        Ok((y, shape.into()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let last = a.rank() - 1;
        let t = |x: &Tensor| x.transpose(last - 1, last);
        let dy = &dy.contiguous()?;
        // da = dy · bᵀ, where b is what the product read: the stored b
        // itself when it was read transposed.
        let da = if a.track_op() {
            Some(if self.b_transposed {
                dy.matmul(b)?
            } else {
                dy.matmul(&t(b)?)?
            })
        } else {
            None
        };
        // db = aᵀ · dy, stored as b is: transposed back when it was read so.
        let db = if b.track_op() {
            Some(if self.b_transposed {
                dy.transpose(last - 1, last)?.matmul(a)?
            } else {
                t(a)?.matmul(dy)?
            })
        } else {
            None
        };
        Ok((da, db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// A 2 x 3 matrix, and a 3 x 2 one (stored 2 x 3 when read transposed).
    fn operands(b_transposed: bool) -> (Var, Var) {
        let a = vec![1.0f64, -2.0, 0.5, 3.0, 1.5, -1.0];
        let b = vec![0.2f64, -0.4, 1.0, 0.3, -0.7, 0.9];
        let b_shape = if b_transposed { (2, 3) } else { (3, 2) };
        (
            Var::from_vec(a, (2, 3), &Device::Cpu).unwrap(),
            Var::from_vec(b, b_shape, &Device::Cpu).unwrap(),
        )
    }

    fn grads(
        b_transposed: bool,
        track_a: bool,
        track_b: bool,
    ) -> (Tensor, Option<Tensor>, Option<Tensor>) {
        let (a, b) = operands(b_transposed);
        let (ta, tb) = (a.as_tensor(), b.as_tensor());
        let (ta, tb) = (
            if track_a { ta.clone() } else { ta.detach() },
            if track_b { tb.clone() } else { tb.detach() },
        );
        let y = Product { b_transposed }.apply(&ta, &tb).unwrap();
        let store = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        // By the tensors the product read: candle's matmul stores a
        // gradient for a detached operand too.
        (y, store.get(&ta).cloned(), store.get(&tb).cloned())
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn a_product_has_candles_values_and_gradients_for_the_operands_that_are_tracked() {
        for b_transposed in [false, true] {
            // The same product through candle's own matmul.
            let (a, b) = operands(b_transposed);
            let rhs = if b_transposed {
                b.as_tensor().t().unwrap()
            } else {
                b.as_tensor().clone()
            };
            let y = a.as_tensor().matmul(&rhs).unwrap();
            let store = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let (da, db) = (
                values(store.get(a.as_tensor()).unwrap()),
                values(store.get(b.as_tensor()).unwrap()),
            );

            let (ours, our_da, our_db) = grads(b_transposed, true, true);
            assert_eq!(values(&ours), values(&y));
            assert_eq!(values(&our_da.unwrap()), da);
            assert_eq!(values(&our_db.unwrap()), db);
            // A fixed operand gets no gradient; the other's is unchanged.
            let (_, our_da, our_db) = grads(b_transposed, true, false);
            assert_eq!(values(&our_da.unwrap()), da);
            assert!(our_db.is_none());
            let (_, our_da, our_db) = grads(b_transposed, false, true);
            assert!(our_da.is_none());
            assert_eq!(values(&our_db.unwrap()), db);
        }
    }
}
