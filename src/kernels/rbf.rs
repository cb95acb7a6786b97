//! NeuRBF's feature aggregation `out[p, f] = sum_j table[rows[p, j], f] * psi[p, j, f]` (the
//! per-point sum over its k nearest kernels) in one parallel pass, and its backward: a
//! scatter-add into the kernel table (per-thread partial tables, then summed) and, when the
//! basis values are tracked (gradients with respect to positions), `grad * table[rows]`.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Int, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, f32s, indices, tensor};

#[backend_extension(Flex, Autodiff)]
pub trait RbfOps: Backend {
    /// `table: [kernels, F]`, `rows: [N * k]`, `psi: [N, k, F]` -> `[N, F]`.
    fn rbf_aggregate(table: FloatTensor<Self>, rows: IntTensor<Self>, psi: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The table's gradient `[kernels, F]` from the output's gradient `[N, F]`.
    fn rbf_table_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, psi: FloatTensor<Self>, kernels: usize) -> FloatTensor<Self>;
    /// The basis values' gradient `[N, k, F]` from the output's gradient `[N, F]`.
    fn rbf_psi_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, table: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Points per parallel work item.
const CHUNK: usize = 512;
/// Partial tables of the scatter-add (bounded memory, deterministic order).
const PARTS: usize = 8;

impl RbfOps for Flex {
    fn rbf_aggregate(table: FloatTensor<Self>, rows: IntTensor<Self>, psi: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, k, f] = psi.shape().dims();
        let (table, rows, psi) = (contiguous_f32(&table), indices(&rows), contiguous_f32(&psi));
        let (table, psi) = (f32s(&table), f32s(&psi));
        let mut out = vec![0.0f32; n * f];
        out.par_chunks_mut(CHUNK * f).enumerate().for_each(|(chunk, out)| {
            for (i, o) in out.chunks_mut(f).enumerate() {
                let p = chunk * CHUNK + i;
                for j in 0..k {
                    let row = &table[rows[p * k + j] * f..][..f];
                    let basis = &psi[(p * k + j) * f..][..f];
                    for c in 0..f {
                        o[c] += row[c] * basis[c];
                    }
                }
            }
        });
        tensor(out, vec![n, f])
    }

    fn rbf_table_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, psi: FloatTensor<Self>, kernels: usize) -> FloatTensor<Self> {
        let [n, k, f] = psi.shape().dims();
        let (grad, rows, psi) = (contiguous_f32(&grad), indices(&rows), contiguous_f32(&psi));
        let (grad, psi) = (f32s(&grad), f32s(&psi));
        // A fixed split into partial tables summed in order, so the result does not depend on
        // how the threads were scheduled (training stays reproducible).
        let per_part = n.div_ceil(PARTS).max(1);
        let parts: Vec<Vec<f32>> = (0..n.div_ceil(per_part))
            .into_par_iter()
            .map(|part| {
                let mut table = vec![0.0f32; kernels * f];
                for p in part * per_part..((part + 1) * per_part).min(n) {
                    let g = &grad[p * f..][..f];
                    for j in 0..k {
                        let row = &mut table[rows[p * k + j] * f..][..f];
                        let basis = &psi[(p * k + j) * f..][..f];
                        for c in 0..f {
                            row[c] += g[c] * basis[c];
                        }
                    }
                }
                table
            })
            .collect();
        let mut table = vec![0.0f32; kernels * f];
        for part in parts {
            table.iter_mut().zip(part).for_each(|(x, y)| *x += y);
        }
        tensor(table, vec![kernels, f])
    }

    fn rbf_psi_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, table: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, f] = grad.shape().dims();
        let k = rows.shape().num_elements() / n;
        let (grad, rows, table) = (contiguous_f32(&grad), indices(&rows), contiguous_f32(&table));
        let (grad, table) = (f32s(&grad), f32s(&table));
        let mut out = vec![0.0f32; n * k * f];
        out.par_chunks_mut(k * f).enumerate().for_each(|(p, out)| {
            for j in 0..k {
                let row = &table[rows[p * k + j] * f..][..f];
                for c in 0..f {
                    out[j * f + c] = grad[p * f + c] * row[c];
                }
            }
        });
        tensor(out, vec![n, k, f])
    }
}

impl<B: Backend + RbfOps, C: CheckpointStrategy> RbfOps for Autodiff<B, C> {
    fn rbf_aggregate(table: FloatTensor<Self>, rows: IntTensor<Self>, psi: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Aggregate;

        impl<B: Backend + RbfOps> Backward<B, 2> for Aggregate {
            /// Table, rows and basis values, as the forward pass saw them.
            type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let (table, rows, psi) = ops.state;
                let kernels = table.shape()[0];
                let rows_for_psi = rows.clone();
                binary::<B, _, _>(
                    ops.parents,
                    ops.node,
                    grads,
                    |grad| B::rbf_table_grad(grad, rows, psi, kernels),
                    |grad| B::rbf_psi_grad(grad, rows_for_psi, table),
                );
            }
        }

        let nodes = [table.node(), psi.node()];
        let (table, psi) = (table.into_primitive(), psi.into_primitive());
        let out = B::rbf_aggregate(table.clone(), rows.clone(), psi.clone());
        match Aggregate.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((table, rows, psi), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn rbf_table_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, psi: FloatTensor<Self>, kernels: usize) -> FloatTensor<Self> {
        let out = B::rbf_table_grad(grad.into_primitive(), rows, psi.into_primitive(), kernels);
        <Self as burn::backend::AutodiffBackend>::from_inner(out)
    }

    fn rbf_psi_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, table: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = B::rbf_psi_grad(grad.into_primitive(), rows, table.into_primitive());
        <Self as burn::backend::AutodiffBackend>::from_inner(out)
    }
}

/// `sum_j table[rows[p, j]] * psi[p, j]` on the CPU backend, differentiable in `table` and `psi`.
pub fn rbf_aggregate(table: Tensor<2>, rows: Tensor<1, Int>, psi: Tensor<3>) -> Tensor<2> {
    let out = <burn::backend::Dispatch as RbfOps>::rbf_aggregate(table.into_dispatch(), rows.into_dispatch(), psi.into_dispatch());
    Tensor::from_dispatch(out)
}
