//! NeuRBF's decoder activation `h + sin(h * m)` (`m` one frequency per channel) in one pass
//! over all cores, which also keeps its slope `1 + m cos(h * m)` for the backward pass, so the
//! backward is a single multiply.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::{contiguous_f32, f32s, sin_cos, tensor};

#[backend_extension(Flex, Autodiff)]
pub trait ResidualSineOps: Backend {
    /// `h: [rows, channels]`, `m: [channels]`; returns `h + sin(h m)` and `1 + m cos(h m)`.
    fn residual_sine_with_slope(h: FloatTensor<Self>, m: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl ResidualSineOps for Flex {
    fn residual_sine_with_slope(h: FloatTensor<Self>, m: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let shape = h.shape().to_vec();
        let (h, m) = (contiguous_f32(&h), contiguous_f32(&m));
        let (h, m) = (f32s(&h), f32s(&m));
        let channels = m.len();
        let mut out = vec![0.0f32; h.len()];
        let mut slope = vec![0.0f32; h.len()];
        let rows = 256 * channels;
        out.par_chunks_mut(rows).zip(slope.par_chunks_mut(rows)).zip(h.par_chunks(rows)).for_each(|((out, slope), h)| {
            for ((out, slope), h) in out.chunks_mut(channels).zip(slope.chunks_mut(channels)).zip(h.chunks(channels)) {
                for c in 0..channels {
                    let (s, cos) = sin_cos(h[c] * m[c]);
                    out[c] = h[c] + s;
                    slope[c] = 1.0 + m[c] * cos;
                }
            }
        });
        (tensor(out, shape.clone()), tensor(slope, shape))
    }
}

impl<B: Backend + ResidualSineOps, C: CheckpointStrategy> ResidualSineOps for Autodiff<B, C> {
    fn residual_sine_with_slope(h: FloatTensor<Self>, m: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let node = h.node();
        let (out, slope) = B::residual_sine_with_slope(h.into_primitive(), m.into_primitive());
        let slope_out = <Self as AutodiffBackend>::from_inner(slope.clone());
        let out = super::elementwise_with_slope::<B, C>(node, out, slope);
        (out, slope_out)
    }
}

/// `h + sin(h * m)` on the CPU backend, differentiable in `h` (`m` is a constant).
pub fn residual_sine(h: Tensor<2>, m: Tensor<1>) -> Tensor<2> {
    let (out, _) = <burn::backend::Dispatch as ResidualSineOps>::residual_sine_with_slope(h.into_dispatch(), m.into_dispatch());
    Tensor::from_dispatch(out)
}
