//! nfield: a trainer for neural fields on burn.
//!
//! The command line (`src/main.rs`) parses arguments and calls [`commands`]; everything below it
//! is a library: configs, devices, fields, tasks, the training loop and the run directory.

pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod fields;
pub mod fresh;
pub mod kernels;
pub mod metrics;
pub mod optim;
pub mod profile;
pub mod render;
pub mod run;
pub mod sweep;
pub mod tasks;
pub mod train;
pub mod viewer;
