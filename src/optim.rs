//! Adam with parameter groups, and learning-rate schedules.
//!
//! Written here rather than taken from burn-optim so that the state is keyed by parameter path
//! (stable across processes, so checkpoints resume exactly), grids get their own learning rate
//! and epsilon, and the state can be read and written as plain tensors.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::config::TrainConfig;
use crate::fields::ParamGroup;

/// First and second moments of one parameter, flattened.
#[derive(Clone, Debug)]
pub struct Moments {
    pub m: Tensor<1>,
    pub v: Tensor<1>,
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
    pub fn step<M: Module>(&mut self, module: M, grads: GradientsParams, lr_scale: f64) -> M {
        self.steps_taken += 1;
        let mut mapper = AdamMapper { adam: self, grads, path: Vec::new(), lr_scale };
        module.map(&mut mapper)
    }

    fn settings(&self, group: ParamGroup) -> &GroupSettings {
        match group {
            ParamGroup::Network => &self.network,
            ParamGroup::Grid => &self.grid,
            ParamGroup::Cam => &self.cam,
        }
    }
}

struct AdamMapper<'a> {
    adam: &'a mut Adam,
    grads: GradientsParams,
    path: Vec<String>,
    lr_scale: f64,
}

impl ModuleMapper for AdamMapper<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let path = self.path.join(".");
        let settings = self.adam.settings(ParamGroup::of(&path)).clone();
        let (b1, b2) = (self.adam.beta1, self.adam.beta2);
        let t = self.adam.steps_taken as i32;

        let shape = tensor.dims();
        let numel: usize = shape.iter().product();
        let value = tensor.inner();
        let grad = grad.reshape([numel]);
        let Moments { m, v } = self.adam.state.remove(&path).unwrap_or_else(|| Moments { m: grad.zeros_like(), v: grad.zeros_like() });
        let m = m * b1 + grad.clone() * (1.0 - b1);
        let v = v * b2 + grad.square() * (1.0 - b2);
        let m_hat = m.clone() / (1.0 - b1.powi(t));
        let v_hat = v.clone() / (1.0 - b2.powi(t));
        let update = m_hat / (v_hat.sqrt() + settings.eps) * (settings.lr * self.lr_scale);
        let value = value - update.reshape(shape);
        self.adam.state.insert(path, Moments { m, v });
        Param::from_mapped_value(id, Tensor::from_inner(value).require_grad(), mapper)
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
