//! Fused operations, where profiling showed the tensor versions spending their time.
//!
//! On the CPU backend (burn-flex): sines (flex evaluates `sin` and, in the backward pass, `cos`
//! on one thread with scalar libm calls), in NeuRBF's decoder, SIREN's layers and the Fourier
//! features, and the gather-multiply-sum of kernel features and grid corners (index conversion,
//! scatter and fresh buffers on every step).
//!
//! On the GPU backends (CubeCL: wgpu, CUDA): the gather-multiply-sum, which as tensor ops is a
//! gather, a multiply, a sum and, backwards, a scatter per grid or kernel set (`gather_sum`'s
//! CubeCL kernels). The sines stay tensor ops there: burn's fusion already merges an elementwise
//! `sin` into the kernel around it, which an opaque custom kernel would prevent.
//!
//! Each op is a burn backend extension with a hand-written backward (`Autodiff`), tested against
//! the plain tensor version: values and gradients (`tests` below on the CPU, `tests/wgpu.rs` on
//! the GPU).

pub mod gather_sum;
pub mod residual_sine;
pub mod sine;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};
use burn::tensor::{DType, TensorData};

/// The backward pass of an elementwise op whose slope the forward pass kept: gradient x slope.
#[derive(Debug)]
struct TimesSlope;

impl<B: Backend> Backward<B, 1> for TimesSlope {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let slope = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::float_mul(grad, slope));
    }
}

/// Puts `out`, an elementwise function of the input behind `input`, on the autodiff graph,
/// with `slope` (its derivative at each element) as the backward pass.
fn elementwise_with_slope<B: Backend, C: CheckpointStrategy>(
    input: NodeGuard,
    out: FloatTensor<B>,
    slope: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match TimesSlope.prepare::<C>([input]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(slope, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// A float tensor in contiguous f32 storage; read it with [`f32s`]. Copies only when the
/// tensor is strided or of another float type.
fn contiguous_f32(t: &FlexTensor) -> FlexTensor {
    let t = t.to_contiguous();
    if t.dtype() == DType::F32 { t } else { FlexTensor::from_data(t.into_data().convert::<f32>()) }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 storage")
}

/// `(sin x, cos x)` for f32 with Cody-Waite range reduction and minimax polynomials: within a
/// few 1e-7 of libm for |x| up to 1e5 (NeuRBF's decoder sines reach a few thousand radians, where
/// glibc's `sinf` takes its slow path), and simple enough for the compiler to vectorise.
#[inline(always)]
fn sin_cos(x: f32) -> (f32, f32) {
    const FRAC_2_PI: f32 = std::f32::consts::FRAC_2_PI;
    // pi/2 split into three parts whose products with the quadrant count are exact.
    const C1: f32 = 1.570_312_5;
    const C2: f32 = 4.837_513e-4;
    const C3: f32 = 7.549_79e-8;
    // Round to nearest by adding and subtracting 1.5 * 2^23 (no libm call, vectorises).
    const ROUND: f32 = 12_582_912.0;
    let q = (x * FRAC_2_PI + ROUND) - ROUND;
    let r = ((x - q * C1) - q * C2) - q * C3;
    let r2 = r * r;
    let s = r + r * r2 * (-1.666_665_5e-1 + r2 * (8.332_161e-3 + r2 * -1.951_529_6e-4));
    let c = 1.0 - 0.5 * r2 + r2 * r2 * (4.166_664_6e-2 + r2 * (-1.388_731_6e-3 + r2 * 2.443_315_7e-5));
    // Quadrant: odd ones swap sine and cosine; the sign follows from bits of q and q + 1.
    let quadrant = q as i32;
    let (s, c) = if quadrant & 1 == 0 { (s, c) } else { (c, s) };
    let s = if quadrant & 2 == 0 { s } else { -s };
    let c = if (quadrant + 1) & 2 == 0 { c } else { -c };
    (s, c)
}

/// An integer tensor's values as row indices.
fn indices(t: &FlexTensor) -> Vec<usize> {
    let t = t.to_contiguous();
    match t.dtype() {
        DType::I32 => t.as_slice::<i32>().expect("contiguous").iter().map(|&i| i as usize).collect(),
        DType::I64 => t.as_slice::<i64>().expect("contiguous").iter().map(|&i| i as usize).collect(),
        _ => t.into_data().convert::<i64>().try_into_vec::<i64>().expect("integer data").into_iter().map(|i| i as usize).collect(),
    }
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// True when tensors on `device` run on the CPU backend, where these ops apply.
pub fn on_flex(device: &burn::tensor::Device) -> bool {
    device.clone().without_autodiff() == burn::tensor::Device::flex()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Int, Tensor, TensorData};

    #[test]
    fn fast_sin_cos_matches_libm() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = (i as f32 - 100_000.0) * 0.0517; // -5170 .. 5170 radians
            let (s, c) = super::sin_cos(x);
            let (xs, xc) = (x as f64).sin_cos();
            worst = worst.max((s as f64 - xs).abs()).max((c as f64 - xc).abs());
        }
        assert!(worst < 5e-7, "worst error {worst}");
    }
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn random(shape: Vec<usize>, rng: &mut StdRng, device: &Device) -> Tensor<3> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{what}[{i}]: fused {x} vs tensor {y}");
        }
    }

    /// The fused gather-sum against gather-multiply-sum, with per-feature weights (NeuRBF) and
    /// one weight per row (grid corners): value, table gradient (rows repeat, so the scatter
    /// must add) and weight gradient.
    #[test]
    fn gather_sum_matches_the_tensor_version() {
        for weight_width in [8, 1] {
            check_gather_sum(weight_width);
        }
    }

    fn check_gather_sum(weight_width: usize) {
        let device = Device::flex().autodiff();
        let mut rng = StdRng::seed_from_u64(4);
        let (kernels, n, k, f) = (37, 1500, 4, 8);
        let table = random(vec![1, kernels, f], &mut rng, &device).reshape([kernels, f]);
        let psi = random(vec![n, k, weight_width], &mut rng, &device);
        let rows: Vec<i32> = (0..n * k).map(|_| rng.random_range(0..kernels as i32)).collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n * k]), &device);
        let weights = random(vec![1, n, f], &mut rng, &device).reshape([n, f]);

        let mut results = Vec::new();
        for fused in [true, false] {
            let (t, p) = (table.clone().require_grad(), psi.clone().require_grad());
            let out = if fused {
                super::gather_sum::gather_sum(t.clone(), rows.clone(), p.clone())
            } else {
                super::gather_sum::gather_sum_reference(t.clone(), rows.clone(), p.clone())
            };
            let grads = (out.clone() * weights.clone()).sum().backward();
            results.push((host(out), host(t.grad(&grads).unwrap()), host(p.grad(&grads).unwrap())));
        }
        assert_close(&results[0].0, &results[1].0, "output");
        assert_close(&results[0].1, &results[1].1, "table gradient");
        assert_close(&results[0].2, &results[1].2, "basis gradient");
    }

    /// The fused residual sine against `h + sin(h m)`: value and gradient.
    #[test]
    fn residual_sine_matches_the_tensor_version() {
        let device = Device::flex().autodiff();
        let mut rng = StdRng::seed_from_u64(5);
        let (rows, channels) = (700, 64);
        let h = random(vec![1, rows, channels], &mut rng, &device).reshape([rows, channels]) * 3.0;
        let m = Tensor::<1>::from_data(TensorData::new(crate::fields::neurbf::log_spaced(1.0, 1000.0, channels), [channels]), &device);
        let weights = random(vec![1, rows, channels], &mut rng, &device).reshape([rows, channels]);
        // sin(1000 h) in f32: both round h * m the same way, so they agree to float precision.
        compare_elementwise(
            &h,
            &weights,
            |x| super::residual_sine::residual_sine(x, m.clone()),
            |x| x.clone() + (x * m.clone().unsqueeze::<2>()).sin(),
        );
    }

    /// Asserts that `fused` and `reference` agree on `x`, in value and in the gradient of
    /// `sum(weights * f(x))`; returns the fused gradient.
    fn compare_elementwise(
        x: &Tensor<2>,
        weights: &Tensor<2>,
        fused: impl Fn(Tensor<2>) -> Tensor<2>,
        reference: impl Fn(Tensor<2>) -> Tensor<2>,
    ) -> Vec<f32> {
        let mut results = Vec::new();
        for f in [&fused as &dyn Fn(Tensor<2>) -> Tensor<2>, &reference] {
            let x = x.clone().detach().require_grad();
            let out = f(x.clone());
            let grads = (out.clone() * weights.clone()).sum().backward();
            results.push((host(out), host(x.grad(&grads).unwrap())));
        }
        assert_close(&results[0].0, &results[1].0, "output");
        assert_close(&results[0].1, &results[1].1, "gradient");
        results.swap_remove(0).1
    }

    /// The fused sine against the tensor `sin` (value and gradient, over SIREN's and the Fourier
    /// features' argument range) and its gradient against central differences.
    #[test]
    fn sine_matches_the_tensor_version_and_finite_differences() {
        let device = Device::flex().autodiff();
        let mut rng = StdRng::seed_from_u64(6);
        let (rows, channels) = (900, 40);
        let x = random(vec![1, rows, channels], &mut rng, &device).reshape([rows, channels]) * 300.0;
        let weights = random(vec![1, rows, channels], &mut rng, &device).reshape([rows, channels]);
        let fused_grad = compare_elementwise(&x, &weights, super::sine::sin, |x| x.sin());

        // d/dx of sum(w sin x) is w cos x; difference quotients in f64 of the f32 sine.
        let (xs, ws) = (host(x), host(weights));
        let h = 1e-2f32;
        for i in (0..xs.len()).step_by(97) {
            let (plus, _) = super::sin_cos(xs[i] + h);
            let (minus, _) = super::sin_cos(xs[i] - h);
            let quotient = ws[i] as f64 * (plus as f64 - minus as f64) / (((xs[i] + h) as f64) - ((xs[i] - h) as f64));
            assert!((fused_grad[i] as f64 - quotient).abs() < 1e-3, "x = {}: gradient {} vs difference {quotient}", xs[i], fused_grad[i]);
        }
    }
}
