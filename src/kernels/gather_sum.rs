//! A weighted sum of gathered table rows, `out[p, f] = sum_j table[rows[p, j], f] * w[p, j, f]`,
//! in one parallel pass: NeuRBF's aggregation over a point's k nearest kernels (weights per
//! feature: the basis values) and grid interpolation over a cell's corners (one weight per
//! corner, `w: [points, k, 1]`). The backward pass scatter-adds into the table and, when the
//! weights are tracked (gradients with respect to positions), gives `grad * table[rows]`.
//!
//! Two implementations: the CPU's (burn-flex; the scatter-add sums a fixed number of partial
//! tables in order, so training is reproducible) and CubeCL kernels for the GPU backends (one
//! launch each for the value, the table gradient and the weight gradient, where the tensor
//! version takes a gather, a multiply, a sum and a scatter; the table gradient adds atomically).

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Int, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, f32s, indices, tensor};

#[backend_extension(Flex, Cube, Autodiff, Fusion)]
pub trait GatherSumOps: Backend {
    /// `table: [kernels, F]`, `rows: [N * k]`, `weights: [N, k, F]` or `[N, k, 1]` -> `[N, F]`.
    #[fusion(dtype = table, shape = Shape::new([weights[0], table[1]]))]
    fn gather_sum(table: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The table's gradient `[kernels, F]` from the output's gradient `[N, F]`.
    #[fusion(dtype = grad, shape = Shape::new([*kernels, grad[1]]))]
    fn gather_sum_table_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>, kernels: usize) -> FloatTensor<Self>;
    /// The weights' gradient `[N, k, weight_width]` from the output's gradient `[N, F]`.
    #[fusion(dtype = grad, shape = Shape::new([grad[0], rows.num_elements() / grad[0], *weight_width]))]
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

/// The GPU kernels (CubeCL), on contiguous tensors with flat indexing. Each thread makes one
/// output value; `per_feature` says whether `weights` has a weight per feature (`[N, k, F]`)
/// or one per gathered row (`[N, k, 1]`).
mod cube {
    use burn::backend::cubecl::dtype_to_storage_type;
    use burn::backend::ops::{FloatTensorOps, IntTensorOps};
    use burn::tensor::{Shape, ops::IndexingUpdateOp};
    use burn_cubecl::CubeBackend;
    use burn_cubecl::cubecl::features::AtomicUsage;
    use burn_cubecl::cubecl::ir::Type;
    use burn_cubecl::cubecl::prelude::*;
    use burn_cubecl::cubecl::{CubeDim, calculate_cube_count_elemwise};
    use burn_cubecl::kernel::into_contiguous;
    use burn_cubecl::ops::numeric::{empty_device_dtype, zeros_client};
    use burn_cubecl::tensor::CubeTensor;
    // `#[cube]` expands to paths under `cubecl::`.
    use burn_cubecl::cubecl;

    /// `out[p, c] = sum_j table[rows[p k + j], c] * weights[p, j, c or 0]`.
    #[cube(launch)]
    fn gather_sum_kernel<F: Float, I: Int>(
        table: &Tensor<F>,
        rows: &Tensor<I>,
        weights: &Tensor<F>,
        out: &mut Tensor<F>,
        #[comptime] per_feature: bool,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let features = out.shape(1);
        if ABSOLUTE_POS >= out.len() {
            terminate!();
        }
        let p = ABSOLUTE_POS / features;
        let c = ABSOLUTE_POS % features;
        let k = weights.shape(1);
        let mut sum = F::new(0.0);
        for j in 0..k {
            let slot = p * k + j;
            let row = usize::cast_from(rows[slot]);
            let weight = if per_feature { weights[slot * features + c] } else { weights[slot] };
            sum += table[row * features + c] * weight;
        }
        out[ABSOLUTE_POS] = sum;
    }

    /// `table[rows[p k + j], c] += grad[p, c] * weights[p, j, c or 0]`, one thread per
    /// `(p, j, c)`; rows repeat, so the add is atomic.
    #[cube(launch)]
    fn gather_sum_table_grad_kernel<F: Float, I: Int>(
        grad: &Tensor<F>,
        rows: &Tensor<I>,
        weights: &Tensor<F>,
        table: &mut Tensor<Atomic<F>>,
        #[comptime] per_feature: bool,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let features = grad.shape(1);
        if ABSOLUTE_POS >= rows.len() * features {
            terminate!();
        }
        let slot = ABSOLUTE_POS / features;
        let c = ABSOLUTE_POS % features;
        let p = slot / weights.shape(1);
        let weight = if per_feature { weights[slot * features + c] } else { weights[slot] };
        let row = usize::cast_from(rows[slot]);
        table[row * features + c].fetch_add(grad[p * features + c] * weight);
    }

    /// `out[p, j, c] = grad[p, c] * table[rows[p k + j], c]`, or its sum over `c` when the
    /// weights are one per row.
    #[cube(launch)]
    fn gather_sum_weight_grad_kernel<F: Float, I: Int>(
        grad: &Tensor<F>,
        rows: &Tensor<I>,
        table: &Tensor<F>,
        out: &mut Tensor<F>,
        #[comptime] per_feature: bool,
        #[define(F, I)] _dtypes: [ElemType; 2],
    ) {
        let features = grad.shape(1);
        if ABSOLUTE_POS >= out.len() {
            terminate!();
        }
        let k = out.shape(1);
        if per_feature {
            let slot = ABSOLUTE_POS / features;
            let c = ABSOLUTE_POS % features;
            let row = usize::cast_from(rows[slot]);
            out[ABSOLUTE_POS] = grad[(slot / k) * features + c] * table[row * features + c];
        } else {
            let slot = ABSOLUTE_POS;
            let row = usize::cast_from(rows[slot]);
            let p = slot / k;
            let mut sum = F::new(0.0);
            for c in 0..features {
                sum += grad[p * features + c] * table[row * features + c];
            }
            out[ABSOLUTE_POS] = sum;
        }
    }

    /// Threads and blocks for `work` values.
    fn grid(tensor: &CubeTensor, work: usize) -> (CubeCount, CubeDim) {
        let cube_dim = CubeDim::new(&tensor.client, work);
        (calculate_cube_count_elemwise(&tensor.client, work, cube_dim), cube_dim)
    }

    pub fn gather_sum(table: CubeTensor, rows: CubeTensor, weights: CubeTensor) -> CubeTensor {
        let (table, rows, weights) = (into_contiguous(table), into_contiguous(rows), into_contiguous(weights));
        let [n, _, width] = weights.meta.shape().dims();
        let features = table.meta.shape()[1];
        let out = empty_device_dtype(table.client.clone(), table.device.clone(), Shape::new([n, features]), table.dtype);
        let (count, dim) = grid(&out, n * features);
        let dtypes = [dtype_to_storage_type(table.dtype), dtype_to_storage_type(rows.dtype)];
        gather_sum_kernel::launch(
            &out.client,
            count,
            dim,
            table.into_tensor_arg(),
            rows.into_tensor_arg(),
            weights.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            width != 1,
            dtypes,
        );
        out
    }

    pub fn table_grad(grad: CubeTensor, rows: CubeTensor, weights: CubeTensor, kernels: usize) -> CubeTensor {
        let (grad, rows, weights) = (into_contiguous(grad), into_contiguous(rows), into_contiguous(weights));
        let [n, k, width] = weights.meta.shape().dims();
        let features = grad.meta.shape()[1];
        let atomic_add = grad
            .client
            .properties()
            .atomic_type_usage(Type::atomic(burn::backend::cubecl::dtype_to_elem_type(grad.dtype)))
            .contains(AtomicUsage::Add);
        if !atomic_add {
            // Without float atomics: burn's scatter-add of each row's contribution.
            let contributions = CubeBackend::float_mul(CubeBackend::float_reshape(grad.clone(), Shape::new([n, 1, features])), weights);
            let contributions =
                CubeBackend::float_reshape(CubeBackend::float_expand(contributions, Shape::new([n, k, features])), Shape::new([n * k, features]));
            let index = CubeBackend::int_expand(CubeBackend::int_reshape(rows, Shape::new([n * k, 1])), Shape::new([n * k, features]));
            let zeros = zeros_client(grad.client.clone(), grad.device.clone(), Shape::new([kernels, features]), grad.dtype);
            return CubeBackend::float_scatter(0, zeros, index, contributions, IndexingUpdateOp::Add);
        }
        let table = zeros_client(grad.client.clone(), grad.device.clone(), Shape::new([kernels, features]), grad.dtype);
        let (count, dim) = grid(&grad, n * k * features);
        let dtypes = [dtype_to_storage_type(grad.dtype), dtype_to_storage_type(rows.dtype)];
        gather_sum_table_grad_kernel::launch(
            &table.client,
            count,
            dim,
            grad.into_tensor_arg(),
            rows.into_tensor_arg(),
            weights.into_tensor_arg(),
            table.clone().into_tensor_arg(),
            width != 1,
            dtypes,
        );
        table
    }

    pub fn weight_grad(grad: CubeTensor, rows: CubeTensor, table: CubeTensor, weight_width: usize) -> CubeTensor {
        let (grad, rows, table) = (into_contiguous(grad), into_contiguous(rows), into_contiguous(table));
        let n = grad.meta.shape()[0];
        let k = rows.meta.num_elements() / n;
        let out = empty_device_dtype(grad.client.clone(), grad.device.clone(), Shape::new([n, k, weight_width]), grad.dtype);
        let (count, dim) = grid(&out, n * k * weight_width);
        let dtypes = [dtype_to_storage_type(grad.dtype), dtype_to_storage_type(rows.dtype)];
        gather_sum_weight_grad_kernel::launch(
            &out.client,
            count,
            dim,
            grad.into_tensor_arg(),
            rows.into_tensor_arg(),
            table.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            weight_width != 1,
            dtypes,
        );
        out
    }
}

impl GatherSumOps for burn_cubecl::CubeBackend {
    fn gather_sum(table: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>) -> FloatTensor<Self> {
        cube::gather_sum(table, rows, weights)
    }

    fn gather_sum_table_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, weights: FloatTensor<Self>, kernels: usize) -> FloatTensor<Self> {
        cube::table_grad(grad, rows, weights, kernels)
    }

    fn gather_sum_weight_grad(grad: FloatTensor<Self>, rows: IntTensor<Self>, table: FloatTensor<Self>, weight_width: usize) -> FloatTensor<Self> {
        cube::weight_grad(grad, rows, table, weight_width)
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

/// `sum_j table[rows[p, j]] * weights[p, j]`, differentiable in `table` and `weights`
/// (`[N, k, F]`, or `[N, k, 1]` for one weight per gathered row): one kernel on every backend.
pub fn gather_sum(table: Tensor<2>, rows: Tensor<1, Int>, weights: Tensor<3>) -> Tensor<2> {
    let out = <burn::backend::Dispatch as GatherSumOps>::gather_sum(table.into_dispatch(), rows.into_dispatch(), weights.into_dispatch());
    Tensor::from_dispatch(out)
}

/// The same in plain tensor operations (gather, multiply, sum), which the kernels are tested
/// against.
pub fn gather_sum_reference(table: Tensor<2>, rows: Tensor<1, Int>, weights: Tensor<3>) -> Tensor<2> {
    let [n, k, _] = weights.dims();
    let f = table.dims()[1];
    let index = rows.reshape([n * k, 1]).repeat_dim(1, f);
    (table.gather(0, index).reshape([n, k, f]) * weights).sum_dim(1).reshape([n, f])
}
