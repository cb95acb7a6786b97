//! `sin x` over all cores with the fast [`sin_cos`], keeping its slope `cos x` for the backward
//! pass: SIREN's sine layers and the Fourier features, where flex's one-thread libm `sin` (and
//! `cos` in the backward pass) took about as long as the matmuls.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::{contiguous_f32, f32s, on_flex, sin_cos, tensor};

#[backend_extension(Flex, Autodiff)]
pub trait SineOps: Backend {
    /// Elementwise `sin x` and its slope `cos x`.
    fn sine_with_slope(x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl SineOps for Flex {
    fn sine_with_slope(x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let shape = x.shape().to_vec();
        let x = contiguous_f32(&x);
        let x = f32s(&x);
        let mut sin = vec![0.0f32; x.len()];
        let mut cos = vec![0.0f32; x.len()];
        const CHUNK: usize = 1 << 14;
        sin.par_chunks_mut(CHUNK).zip(cos.par_chunks_mut(CHUNK)).zip(x.par_chunks(CHUNK)).for_each(|((sin, cos), x)| {
            for ((sin, cos), &x) in sin.iter_mut().zip(cos.iter_mut()).zip(x) {
                (*sin, *cos) = sin_cos(x);
            }
        });
        (tensor(sin, shape.clone()), tensor(cos, shape))
    }
}

impl<B: Backend + SineOps, C: CheckpointStrategy> SineOps for Autodiff<B, C> {
    fn sine_with_slope(x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let node = x.node();
        let (sin, cos) = B::sine_with_slope(x.into_primitive());
        let cos_out = <Self as AutodiffBackend>::from_inner(cos.clone());
        let sin = super::elementwise_with_slope::<B, C>(node, sin, cos);
        (sin, cos_out)
    }
}

/// `sin x`, differentiable; fused on the CPU backend, the plain tensor op elsewhere.
pub fn sin<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x.device()) {
        return x.sin();
    }
    let (sin, _) = <burn::backend::Dispatch as SineOps>::sine_with_slope(x.into_dispatch());
    Tensor::from_dispatch(sin)
}
