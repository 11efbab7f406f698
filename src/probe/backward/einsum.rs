//! `Einsum`, as candle's products and sums, which candle differentiates.
//!
//! The operands are contracted two at a time, left to right. Each pair is
//! one batched product: the labels both share and something later reads are
//! the batch, the labels both share and nothing later reads are summed by the
//! product, and a label only one operand has and nothing later reads is
//! summed out of it first. An ellipsis stands for as many fresh labels as
//! the operand has axes left; an equation without `->` keeps, in alphabetical
//! order, the labels that appear once, after the ellipsis's.

use candle_core::Tensor;

use super::ops::{c, R};

/// `Einsum` of `operands` by `equation`.
pub(super) fn einsum(equation: &str, operands: &[&Tensor]) -> R<Tensor> {
    let (inputs, output) = parse(equation, operands)?;
    let mut labels = inputs.iter();
    let mut tensors = operands.iter();
    let (Some(first), Some(t)) = (labels.next(), tensors.next()) else {
        return Err("`Einsum` without operands".into());
    };
    let mut acc = Term {
        t: (*t).clone(),
        labels: first.clone(),
    };
    for (k, (labels, t)) in labels.zip(tensors).enumerate() {
        // What the later operands and the output read.
        let later: Vec<char> = inputs[k + 2..]
            .iter()
            .flatten()
            .chain(&output)
            .copied()
            .collect();
        let next = Term {
            t: (*t).clone(),
            labels: labels.clone(),
        };
        acc = contract(acc, next, &later)?;
    }
    acc = acc.sum_except(&output)?;
    acc.permuted(&output)
}

/// A tensor and the label of each of its axes.
struct Term {
    t: Tensor,
    labels: Vec<char>,
}

impl Term {
    /// Sums out every axis whose label is not in `keep`.
    fn sum_except(self, keep: &[char]) -> R<Term> {
        let gone: Vec<usize> = (0..self.labels.len())
            .filter(|&i| !keep.contains(&self.labels[i]))
            .collect();
        if gone.is_empty() {
            return Ok(self);
        }
        let t = self.t.sum(gone.as_slice()).map_err(c)?;
        let labels = self
            .labels
            .iter()
            .enumerate()
            .filter(|(i, _)| !gone.contains(i))
            .map(|(_, &l)| l)
            .collect();
        Ok(Term { t, labels })
    }

    /// The tensor with its axes in the order of `labels`, which must be its own.
    fn permuted(&self, labels: &[char]) -> R<Tensor> {
        let order: Vec<usize> = labels
            .iter()
            .map(|l| self.labels.iter().position(|m| m == l))
            .collect::<Option<_>>()
            .ok_or("an `Einsum` output label that no operand has")?;
        if order.iter().enumerate().all(|(i, &o)| i == o) {
            return Ok(self.t.clone());
        }
        self.t.permute(order).map_err(c)
    }

    /// The size of each label's axis.
    fn size(&self, l: char) -> usize {
        self.labels
            .iter()
            .position(|&m| m == l)
            .map_or(1, |i| self.t.dims()[i])
    }
}

/// `a` and `b` contracted, keeping the labels `later` reads.
fn contract(a: Term, b: Term, later: &[char]) -> R<Term> {
    let needed = |l: &char, other: &Term| later.contains(l) || other.labels.contains(l);
    let a_keep: Vec<char> = a.labels.iter().filter(|l| needed(l, &b)).copied().collect();
    let b_keep: Vec<char> = b.labels.iter().filter(|l| needed(l, &a)).copied().collect();
    let (a, b) = (a.sum_except(&a_keep)?, b.sum_except(&b_keep)?);
    let shared = |l: &&char| b.labels.contains(l);
    let batch: Vec<char> = a
        .labels
        .iter()
        .filter(|l| shared(l) && later.contains(l))
        .copied()
        .collect();
    let summed: Vec<char> = a
        .labels
        .iter()
        .filter(|l| shared(l) && !later.contains(l))
        .copied()
        .collect();
    let rows: Vec<char> = a.labels.iter().filter(|l| !shared(l)).copied().collect();
    let cols: Vec<char> = b
        .labels
        .iter()
        .filter(|l| !a.labels.contains(l))
        .copied()
        .collect();
    // Shared axes of size 1 on one side broadcast to the other's.
    let size = |l: char| a.size(l).max(b.size(l));
    let sizes = |ls: &[char]| ls.iter().map(|&l| size(l)).collect::<Vec<usize>>();
    let product = |ls: &[char]| ls.iter().map(|&l| size(l)).product::<usize>();
    let (nb, m, k, n) = (
        product(&batch),
        product(&rows),
        product(&summed),
        product(&cols),
    );
    let lay = |t: &Term, order: Vec<char>, shape: (usize, usize, usize)| -> R<Tensor> {
        let full = sizes(&order);
        let t = t.permuted(&order)?;
        let t = if t.dims() != full.as_slice() {
            t.broadcast_as(full.as_slice()).map_err(c)?
        } else {
            t
        };
        t.contiguous().and_then(|t| t.reshape(shape)).map_err(c)
    };
    let a_order: Vec<char> = batch.iter().chain(&rows).chain(&summed).copied().collect();
    let b_order: Vec<char> = batch.iter().chain(&summed).chain(&cols).copied().collect();
    let a3 = lay(&a, a_order, (nb, m, k))?;
    let b3 = lay(&b, b_order, (nb, k, n))?;
    let y = a3.matmul(&b3).map_err(c)?;
    let labels: Vec<char> = batch.iter().chain(&rows).chain(&cols).copied().collect();
    let t = y.reshape(sizes(&labels)).map_err(c)?;
    Ok(Term { t, labels })
}

/// Each operand's labels and the output's, with ellipses spelled out.
fn parse(equation: &str, operands: &[&Tensor]) -> R<(Vec<Vec<char>>, Vec<char>)> {
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != operands.len() {
        return Err(format!(
            "`Einsum` equation `{equation}` names {} operands for {}",
            terms.len(),
            operands.len()
        ));
    }
    // Labels for the ellipsis's axes: characters no equation uses.
    let fresh = |i: usize| char::from_u32(0x3B1 + i as u32).unwrap_or('?');
    // The axes each ellipsis stands for, and the most of them.
    let rests: Vec<usize> = terms
        .iter()
        .zip(operands)
        .map(|(term, t)| {
            let named = term.replace("...", "").chars().count();
            t.rank().checked_sub(named).ok_or_else(|| {
                format!("`Einsum` term `{term}` has more labels than its operand's rank")
            })
        })
        .collect::<R<_>>()?;
    let ellipsis = terms
        .iter()
        .zip(&rests)
        .filter(|(term, _)| term.contains("..."))
        .map(|(_, &r)| r)
        .max()
        .unwrap_or(0);
    let mut inputs = Vec::with_capacity(terms.len());
    for ((term, t), &rest) in terms.iter().zip(operands).zip(&rests) {
        let labels: Vec<char> = match term.split_once("...") {
            Some((before, after)) => {
                // Right-aligned, as broadcasting aligns them.
                let start = ellipsis - rest;
                before
                    .chars()
                    .chain((start..ellipsis).map(fresh))
                    .chain(after.chars())
                    .collect()
            }
            None => term.chars().collect(),
        };
        if labels.len() != t.rank() {
            return Err(format!(
                "`Einsum` term `{term}` does not match an operand of rank {}",
                t.rank()
            ));
        }
        let mut seen = labels.clone();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err("the gradient engine has no `Einsum` with a repeated label in one operand (a diagonal)".into());
        }
        inputs.push(labels);
    }
    let ell: Vec<char> = (0..ellipsis).map(fresh).collect();
    let output: Vec<char> = match rhs {
        Some(r) => match r.split_once("...") {
            Some((before, after)) => before
                .chars()
                .chain(ell.iter().copied())
                .chain(after.chars())
                .collect(),
            None => r.chars().collect(),
        },
        None => {
            let mut once: Vec<char> = inputs
                .iter()
                .flatten()
                .copied()
                .filter(|l| !ell.contains(l))
                .filter(|l| inputs.iter().flatten().filter(|m| *m == l).count() == 1)
                .collect();
            once.sort_unstable();
            ell.iter().copied().chain(once).collect()
        }
    };
    Ok((inputs, output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(values, shape, &Device::Cpu).unwrap()
    }

    fn seq(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        t(&v, shape)
    }

    fn close(a: &Tensor, b: &Tensor) {
        assert_eq!(a.dims(), b.dims());
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} {b:?}");
        }
    }

    #[test]
    fn contractions_equal_their_products_and_sums() {
        let (a, b) = (seq(&[2, 3, 4]), seq(&[2, 4, 5]));
        close(
            &einsum("bij,bjk->bik", &[&a, &b]).unwrap(),
            &a.matmul(&b).unwrap(),
        );
        // Transposed output, and an implicit one (`ik` after `b`: sorted).
        close(
            &einsum("bij,bjk->bki", &[&a, &b]).unwrap(),
            &a.matmul(&b).unwrap().permute((0, 2, 1)).unwrap(),
        );
        close(
            &einsum("bij,bjk", &[&a, &b]).unwrap(),
            &a.matmul(&b).unwrap().sum(0).unwrap(),
        );
        // An ellipsis, a label summed out of one operand, and a plain sum.
        let w = seq(&[4, 6]);
        close(
            &einsum("...d,de->...e", &[&a, &w]).unwrap(),
            &a.broadcast_matmul(&w).unwrap(),
        );
        close(&einsum("bij->j", &[&a]).unwrap(), &a.sum((0, 1)).unwrap());
        // Attention scores: q k^T per batch and head.
        let (q, k) = (seq(&[2, 3, 4, 8]), seq(&[2, 3, 5, 8]));
        close(
            &einsum("bhqd,bhkd->bhqk", &[&q, &k]).unwrap(),
            &q.matmul(&k.transpose(2, 3).unwrap().contiguous().unwrap())
                .unwrap(),
        );
        // Three operands: x W v.
        let (x, m, v) = (seq(&[3, 4]), seq(&[4, 4]), seq(&[4]));
        let xm = x.matmul(&m).unwrap();
        close(
            &einsum("ij,jk,k->i", &[&x, &m, &v]).unwrap(),
            &xm.matmul(&v.unsqueeze(1).unwrap())
                .unwrap()
                .squeeze(1)
                .unwrap(),
        );
        assert!(einsum("ii->i", &[&seq(&[3, 3])]).is_err(), "a diagonal");
    }
}
