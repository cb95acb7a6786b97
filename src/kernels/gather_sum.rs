//! A weighted sum of gathered table rows, `out[p, f] = sum_j table[rows[p, j], f] * w[p, j, f]`,
//! in one parallel pass: NeuRBF's aggregation over a point's k nearest kernels (weights per
//! feature: the basis values) and grid interpolation over a cell's corners (one weight per
//! corner, `w: [points, k, 1]`). The backward pass scatter-adds into the table (a fixed number
//! of partial tables, summed in order) and, when the weights are tracked (gradients with
//! respect to positions), gives `grad * table[rows]`.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Int, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, f32s, indices, tensor};

#[backend_extension(Flex, Autodiff)]
pub trait GatherSumOps: Backend {
    /// `table: [kernels, F]`, `rows: [N * k]`, `weights: [N, k, F]` or `[N, k, 1]` -> `[N, F]`.
    fn gather_sum(table: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The table's gradient `[kernels, F]` from the output's gradient `[N, F]`.
    fn gather_sum_table_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>, kernels: usize) -> FloatTensor<Self>;
    /// The weights' gradient `[N, k, weight_width]` from the output's gradient `[N, F]`.
    fn gather_sum_weight_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, table: FloatTensor<Self>, weight_width: usize) -> FloatTensor<Self>;
}

/// Points per parallel work item.
const CHUNK: usize = 512;
/// Partial tables of the scatter-add (bounded memory, deterministic order).
const PARTS: usize = 8;

impl GatherSumOps for Flex {
    fn gather_sum(table: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, k, wf] = weights.shape().dims();
        let f = table.shape()[1];
        let (table, rows, weights) = (contiguous_f32(&table), indices(&rows), contiguous_f32(&weights));
        let (table, weights) = (f32s(&table), f32s(&weights));
        let mut out = vec![0.0f32; n * f];
        out.par_chunks_mut(CHUNK * f).enumerate().for_each(|(chunk, out)| {
            for (i, o) in out.chunks_mut(f).enumerate() {
                let p = chunk * CHUNK + i;
                for j in 0..k {
                    let row = &table[rows[p * k + j] * f..][..f];
                    let w = &weights[(p * k + j) * wf..][..wf];
                    if wf == 1 {
                        o.iter_mut().zip(row).for_each(|(o, r)| *o += r * w[0]);
                    } else {
                        o.iter_mut().zip(row).zip(w).for_each(|((o, r), w)| *o += r * w);
                    }
                }
            }
        });
        tensor(out, vec![n, f])
    }

    fn gather_sum_table_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>, kernels: usize) -> FloatTensor<Self> {
        let [n, k, wf] = weights.shape().dims();
        let f = grad.shape()[1];
        let (grad, rows, weights) = (contiguous_f32(&grad), indices(&rows), contiguous_f32(&weights));
        let (grad, weights) = (f32s(&grad), f32s(&weights));
        // Each row sums its contributions point by point within a fixed split of the points
        // into `PARTS` ranges, then the ranges in order, so the result does not depend on how
        // the threads were scheduled (training stays reproducible). Threads own disjoint row
        // ranges and scan every contribution, so no partial copy of the table is made: hash
        // tables have millions of rows.
        let per_part = n.div_ceil(PARTS).max(1);
        let parts = n.div_ceil(per_part);
        let workers = rayon::current_num_threads().max(1);
        let rows_per_worker = kernels.div_ceil(workers).max(1);
        let mut table = vec![0.0f32; kernels * f];
        table.par_chunks_mut(rows_per_worker * f).enumerate().for_each(|(worker, out)| {
            let first = worker * rows_per_worker;
            let owned = out.len() / f;
            let mut partial = vec![0.0f32; out.len()];
            // `touched[r] == part + 1`: row r has a contribution in this part.
            let mut touched = vec![0u32; owned];
            let mut touched_rows = Vec::new();
            for part in 0..parts {
                for p in part * per_part..((part + 1) * per_part).min(n) {
                    let g = &grad[p * f..][..f];
                    for j in 0..k {
                        let Some(local) = rows[p * k + j].checked_sub(first).filter(|&r| r < owned) else { continue };
                        if touched[local] != part as u32 + 1 {
                            touched[local] = part as u32 + 1;
                            touched_rows.push(local);
                        }
                        let row = &mut partial[local * f..][..f];
                        let w = &weights[(p * k + j) * wf..][..wf];
                        if wf == 1 {
                            row.iter_mut().zip(g).for_each(|(r, g)| *r += g * w[0]);
                        } else {
                            row.iter_mut().zip(g).zip(w).for_each(|((r, g), w)| *r += g * w);
                        }
                    }
                }
                for &local in &touched_rows {
                    let range = local * f..(local + 1) * f;
                    out[range.clone()].iter_mut().zip(&mut partial[range]).for_each(|(o, p)| {
                        *o += *p;
                        *p = 0.0;
                    });
                }
                touched_rows.clear();
            }
        });
        tensor(table, vec![kernels, f])
    }

    fn gather_sum_weight_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, table: FloatTensor<Self>, weight_width: usize) -> FloatTensor<Self> {
        let [n, f] = grad.shape().dims();
        let k = rows.shape().num_elements() / n;
        let (grad, rows, table) = (contiguous_f32(&grad), indices(&rows), contiguous_f32(&table));
        let (grad, table) = (f32s(&grad), f32s(&table));
        let mut out = vec![0.0f32; n * k * weight_width];
        out.par_chunks_mut(k * weight_width).enumerate().for_each(|(p, out)| {
            let g = &grad[p * f..][..f];
            for j in 0..k {
                let row = &table[rows[p * k + j] * f..][..f];
                if weight_width == 1 {
                    out[j] = g.iter().zip(row).map(|(g, r)| g * r).sum();
                } else {
                    for c in 0..f {
                        out[j * f + c] = g[c] * row[c];
                    }
                }
            }
        });
        tensor(out, vec![n, k, weight_width])
    }
}

impl<B: Backend + GatherSumOps, C: CheckpointStrategy> GatherSumOps for Autodiff<B, C> {
    fn gather_sum(table: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GatherSum;

        impl<B: Backend + GatherSumOps> Backward<B, 2> for GatherSum {
            /// Table, rows and basis values, as the forward pass saw them.
            type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let (table, rows, weights) = ops.state;
                let kernels = table.shape()[0];
                let weight_width = weights.shape()[2];
                let rows_for_weights = rows.clone();
                binary::<B, _, _>(
                    ops.parents,
                    ops.node,
                    grads,
                    |grad| B::gather_sum_table_grad(grad, rows, weights, kernels),
                    |grad| B::gather_sum_weight_grad(grad, rows_for_weights, table, weight_width),
                );
            }
        }

        let nodes = [table.node(), weights.node()];
        let (table, weights) = (table.into_primitive(), weights.into_primitive());
        let out = B::gather_sum(table.clone(), rows.clone(), weights.clone());
        match GatherSum.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((table, rows, weights), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn gather_sum_table_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>, kernels: usize) -> FloatTensor<Self> {
        let out = B::gather_sum_table_grad(grad.into_primitive(), rows, weights.into_primitive(), kernels);
        <Self as burn::backend::AutodiffBackend>::from_inner(out)
    }

    fn gather_sum_weight_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, table: FloatTensor<Self>, weight_width: usize) -> FloatTensor<Self> {
        let out = B::gather_sum_weight_grad(grad.into_primitive(), rows, table.into_primitive(), weight_width);
        <Self as burn::backend::AutodiffBackend>::from_inner(out)
    }
}

/// `sum_j table[rows[p, j]] * weights[p, j]` on the CPU backend, differentiable in `table` and
/// `weights` (`[N, k, F]`, or `[N, k, 1]` for one weight per gathered row).
pub fn gather_sum(table: Tensor<2>, rows: Tensor<1, Int>, weights: Tensor<3>) -> Tensor<2> {
    let out = <burn::backend::Dispatch as GatherSumOps>::gather_sum(table.into_dispatch(), rows.into_dispatch(), weights.into_dispatch());
    Tensor::from_dispatch(out)
}

/// `sum_j table[rows[p, j]] * weights[p, j]` on any device: the fused kernel on the CPU backend,
/// `gather` elsewhere. `gather_index` is `rows` repeated per feature (`[N * k, F]`), for callers
/// that reuse it; without it, it is built here. `weights` is `[N, k, F]` or `[N, k, 1]`.
pub fn weighted_gather(table: Tensor<2>, rows: &Tensor<1, Int>, gather_index: Option<&Tensor<2, Int>>, weights: Tensor<3>) -> Tensor<2> {
    if super::on_flex(&table.device()) {
        return gather_sum(table, rows.clone(), weights);
    }
    let [n, k, _] = weights.dims();
    let f = table.dims()[1];
    let index = gather_index.cloned().unwrap_or_else(|| rows.clone().reshape([n * k, 1]).repeat_dim(1, f));
    (table.gather(0, index).reshape([n, k, f]) * weights).sum_dim(1).reshape([n, f])
}
