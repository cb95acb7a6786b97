//! Adam with parameter groups, and learning-rate schedules.
//!
//! Written here rather than taken from burn-optim so that the state is keyed by parameter path
//! (stable across processes, so checkpoints resume exactly), grids get their own learning rate
//! and epsilon, and the state can be read and written as plain tensors.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::config::TrainConfig;
use crate::fields::ParamGroup;
use crate::profile::read_floats;

/// A parameter-shaped tensor: nfield's parameters are vectors and matrices. Moments keep their
/// parameter's shape because a reshape that changes rank inside the update would split burn's
/// fused update kernel in two.
#[derive(Clone, Debug)]
pub enum Shaped {
    Vector(Tensor<1>),
    Matrix(Tensor<2>),
}

impl Shaped {
    /// A rank-`D` tensor (1 or 2).
    pub fn new<const D: usize>(t: Tensor<D>) -> Self {
        let d = t.dims();
        match D {
            1 => Self::Vector(t.reshape([d[0]])),
            2 => Self::Matrix(t.reshape([d[0], d[1]])),
            _ => unreachable!("nfield's parameters are vectors and matrices"),
        }
    }

    /// The tensor in `shape` (a no-op unless a checkpoint stored it flat).
    pub fn get<const D: usize>(self, shape: [usize; D]) -> Tensor<D> {
        match self {
            Self::Vector(t) => t.reshape(shape),
            Self::Matrix(t) => t.reshape(shape),
        }
    }

    pub fn dims(&self) -> Vec<usize> {
        match self {
            Self::Vector(t) => t.dims().to_vec(),
            Self::Matrix(t) => t.dims().to_vec(),
        }
    }

    /// Shape and values, for a checkpoint.
    pub fn to_host(&self) -> (Vec<usize>, Vec<f32>) {
        let values = match self {
            Self::Vector(t) => read_floats(t.clone()),
            Self::Matrix(t) => read_floats(t.clone()),
        };
        (self.dims(), values)
    }
}

/// First and second moments of one parameter.
#[derive(Clone, Debug)]
pub struct Moments {
    pub m: Shaped,
    pub v: Shaped,
}

#[derive(Clone, Debug)]
pub struct GroupSettings {
    pub lr: f64,
    pub eps: f64,
}

#[derive(Clone, Debug)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub network: GroupSettings,
    pub grid: GroupSettings,
    pub cam: GroupSettings,
    /// Updates taken so far (the `t` of bias correction).
    pub steps_taken: u64,
    pub state: HashMap<String, Moments>,
}

impl Adam {
    pub fn new(config: &TrainConfig) -> Self {
        Self {
            beta1: config.beta1,
            beta2: config.beta2,
            network: GroupSettings { lr: config.lr, eps: config.eps },
            grid: GroupSettings { lr: config.grid_lr, eps: config.grid_eps },
            cam: GroupSettings { lr: config.cam_lr, eps: config.eps },
            steps_taken: 0,
            state: HashMap::new(),
        }
    }

    /// One update of every parameter that has a gradient; `lr_scale` is the schedule's factor.
    /// The updates are issued grouped by shape: burn's fusion merges the updates of same-shaped
    /// parameters into one kernel, and fewer changes of shape leave fewer update operations
    /// stranded in a kernel of their own where fusion closes a batch of work.
    pub fn step<M: Module>(&mut self, module: M, mut grads: GradientsParams, lr_scale: f64) -> M {
        self.steps_taken += 1;
        let mut collect = CollectParams { grads: &mut grads, path: Vec::new(), found: Vec::new() };
        module.visit(&mut collect);
        let mut found = collect.found;
        found.sort_by_key(|p| p.value.dims());
        let mut updated = HashMap::new();
        for p in found {
            let value = match (p.value, p.grad) {
                (Shaped::Vector(value), Shaped::Vector(grad)) => Shaped::Vector(self.update(&p.path, value, grad, lr_scale)),
                (Shaped::Matrix(value), Shaped::Matrix(grad)) => Shaped::Matrix(self.update(&p.path, value, grad, lr_scale)),
                _ => unreachable!("a gradient has its parameter's rank"),
            };
            updated.insert(p.id, value);
        }
        module.map(&mut ReplaceParams { updated })
    }

    /// Adam's update of the parameter at `path`.
    fn update<const D: usize>(&mut self, path: &str, value: Tensor<D>, grad: Tensor<D>, lr_scale: f64) -> Tensor<D> {
        let settings = self.settings(ParamGroup::of(path)).clone();
        let (b1, b2) = (self.beta1, self.beta2);
        let t = self.steps_taken as i32;
        let (m, v) = match self.state.remove(path) {
            Some(Moments { m, v }) => (m.get(value.dims()), v.get(value.dims())),
            None => (grad.zeros_like(), grad.zeros_like()),
        };
        let m = m * b1 + grad.clone() * (1.0 - b1);
        let v = v * b2 + grad.square() * (1.0 - b2);
        let m_hat = m.clone() / (1.0 - b1.powi(t));
        let v_hat = v.clone() / (1.0 - b2.powi(t));
        let update = m_hat / (v_hat.sqrt() + settings.eps) * (settings.lr * lr_scale);
        self.state.insert(path.to_string(), Moments { m: Shaped::new(m), v: Shaped::new(v) });
        value - update
    }

    fn settings(&self, group: ParamGroup) -> &GroupSettings {
        match group {
            ParamGroup::Network => &self.network,
            ParamGroup::Grid => &self.grid,
            ParamGroup::Cam => &self.cam,
        }
    }
}

/// A parameter with a gradient, found by [`CollectParams`].
struct Found {
    id: ParamId,
    path: String,
    value: Shaped,
    grad: Shaped,
}

/// Finds every parameter that has a gradient, with its path (the optimiser state's key).
struct CollectParams<'a> {
    grads: &'a mut GradientsParams,
    path: Vec<String>,
    found: Vec<Found>,
}

impl ModuleVisitor for CollectParams<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.found.push(Found { id: param.id, path: self.path.join("."), value: Shaped::new(param.val().inner()), grad: Shaped::new(grad) });
        }
    }
}

/// Puts the updated values in place of their parameters.
struct ReplaceParams {
    updated: HashMap<ParamId, Shaped>,
}

impl ModuleMapper for ReplaceParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        match self.updated.remove(&id) {
            Some(value) => Param::from_mapped_value(id, Tensor::from_inner(value.get(tensor.dims())).require_grad(), mapper),
            None => Param::from_mapped_value(id, tensor, mapper),
        }
    }
}

/// The learning-rate factor at `step` (0-based), `progress` of the way through the budget.
pub fn lr_scale(config: &TrainConfig, step: u64, progress: f64) -> f64 {
    match config.schedule.as_str() {
        "step" => {
            let passed =
                config.milestones.iter().filter(|&&m| step >= m).count() + config.milestone_fractions.iter().filter(|&&f| progress >= f).count();
            config.gamma.powi(passed as i32)
        }
        // Cosine from 1 down to the floor `final_lr_ratio` (NeuRBF: lr / 100).
        "cosine" => {
            let floor = config.final_lr_ratio;
            floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        // Geometric decay reaching `final_lr_ratio` at the last step.
        "exponential" => config.final_lr_ratio.powf(progress),
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_start_at_one_and_reach_their_floor() {
        let mut c = TrainConfig { schedule: "cosine".into(), final_lr_ratio: 0.01, ..Default::default() };
        assert!((lr_scale(&c, 0, 0.0) - 1.0).abs() < 1e-12);
        assert!((lr_scale(&c, 100, 1.0) - 0.01).abs() < 1e-12);
        assert!(lr_scale(&c, 30, 0.3) > lr_scale(&c, 60, 0.6));
        c.schedule = "exponential".into();
        assert!((lr_scale(&c, 50, 0.5) - 0.1).abs() < 1e-12);
        c.schedule = "step".into();
        c.milestones = vec![10, 20];
        c.gamma = 0.1;
        assert_eq!(lr_scale(&c, 9, 0.09), 1.0);
        assert!((lr_scale(&c, 10, 0.1) - 0.1).abs() < 1e-12);
        assert!((lr_scale(&c, 25, 0.25) - 0.01).abs() < 1e-12);
        c.milestones = vec![];
        c.milestone_fractions = vec![0.5, 0.9];
        assert!((lr_scale(&c, 0, 0.6) - 0.1).abs() < 1e-12);
        assert!((lr_scale(&c, 0, 0.95) - 0.01).abs() < 1e-12);
        c.schedule = "constant".into();
        assert_eq!(lr_scale(&c, 99, 0.99), 1.0);
    }
}
