//! The run directory: resolved config, metrics log, summary, and atomic checkpoints.
//!
//! A checkpoint is one safetensors file (`checkpoint/checkpoint.safetensors`) holding the model
//! (`model.<path>`), Adam's moments (`adam.m.<path>`, `adam.v.<path>`) and, in its metadata, the
//! step. It is written to a temporary file, synced, then renamed over the old one, so a kill at
//! any moment leaves either the old or the new checkpoint. It opens in any safetensors reader.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::optim::{Adam, Moments, Shaped};
use crate::profile::read_floats;
use crate::tasks::TaskState;

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
/// FreSh's table of candidates and distances, when FreSh chose a hyperparameter for the run.
pub const FRESH_FILE: &str = "fresh.json";
const CHECKPOINT_DIR: &str = "checkpoint";
const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "nfield-checkpoint-1";

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Create `<out>/<name>`. An explicit name that exists is refused; a generated one gets a
    /// `-2`, `-3`, ... suffix. Nothing that exists is ever written into.
    pub fn create(out: &Path, name: Option<&str>, default_stem: &str) -> Result<Self> {
        if out.exists() && !out.is_dir() {
            bail!("output directory {} is a file, not a directory", out.display());
        }
        fs::create_dir_all(out).with_context(|| format!("cannot create output directory {}", out.display()))?;
        let path = match name {
            Some(n) => {
                if n.is_empty() || n.contains('/') || n == "." || n == ".." {
                    bail!("--name {n:?} must be a plain directory name");
                }
                let p = out.join(n);
                if p.exists() {
                    bail!("run directory {} already exists; choose another --name, or continue it with --resume {}", p.display(), p.display());
                }
                p
            }
            None => {
                let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
                let base = format!("{default_stem}-{stamp}");
                let mut candidate = out.join(&base);
                let mut i = 2;
                while candidate.exists() {
                    candidate = out.join(format!("{base}-{i}"));
                    i += 1;
                }
                candidate
            }
        };
        // create_dir (not _all) fails if another process made it meanwhile: never share a run.
        fs::create_dir(&path).with_context(|| format!("cannot create run directory {}", path.display()))?;
        let probe = path.join(".write-test");
        fs::write(&probe, b"").with_context(|| format!("run directory {} is not writable", path.display()))?;
        let _ = fs::remove_file(probe);
        Ok(Self { path })
    }

    /// An existing run, for `--resume`, `eval` and `render`.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join(CONFIG_FILE).is_file() {
            bail!("{} is not a run directory (it has no {CONFIG_FILE})", path.display());
        }
        Ok(Self { path: path.to_path_buf() })
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join(CHECKPOINT_DIR).join(CHECKPOINT_FILE)
    }

    pub fn write_config(&self, toml: &str) -> Result<()> {
        write_atomic(&self.config_path(), toml.as_bytes())
    }

    /// Append one JSON object per line.
    pub fn log_metrics(&self, record: &serde_json::Value) -> Result<()> {
        let path = self.path.join(METRICS_FILE);
        let mut file = fs::OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(file, "{record}")?;
        Ok(())
    }

    /// Drop log lines past `step` (logged after the checkpoint a resumed run restarts from).
    pub fn truncate_metrics_after(&self, step: u64) -> Result<()> {
        let path = self.path.join(METRICS_FILE);
        let Ok(text) = fs::read_to_string(&path) else { return Ok(()) };
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v.get("step").and_then(|s| s.as_u64())).is_some_and(|s| s <= step)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        write_atomic(&path, kept.as_bytes())
    }

    pub fn write_summary(&self, summary: &serde_json::Value) -> Result<()> {
        write_atomic(&self.path.join(SUMMARY_FILE), serde_json::to_string_pretty(summary)?.as_bytes())
    }

    pub fn read_summary(&self) -> Option<serde_json::Value> {
        let text = fs::read_to_string(self.path.join(SUMMARY_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write_fresh(&self, report: &serde_json::Value) -> Result<()> {
        write_atomic(&self.path.join(FRESH_FILE), serde_json::to_string_pretty(report)?.as_bytes())
    }

    pub fn read_fresh(&self) -> Option<serde_json::Value> {
        let text = fs::read_to_string(self.path.join(FRESH_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Save model, optimiser and progress. Refuses (and keeps the previous checkpoint) when any
    /// value is NaN or infinite.
    pub fn save_checkpoint<M: Module>(&self, model: &M, adam: &Adam, progress: &Progress, task: &TaskState) -> Result<()> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for (path, shape, values) in collect_params(model) {
            tensors.push((format!("model.{path}"), shape, values));
        }
        for (name, shape, values) in task {
            tensors.push((format!("task.{name}"), shape.clone(), values.clone()));
        }
        let mut names: Vec<&String> = adam.state.keys().collect();
        names.sort();
        for name in names {
            let Moments { m, v } = &adam.state[name];
            let ((m_shape, m), (v_shape, v)) = (m.to_host(), v.to_host());
            tensors.push((format!("adam.m.{name}"), m_shape, m));
            tensors.push((format!("adam.v.{name}"), v_shape, v));
        }
        if let Some((name, _, _)) = tensors.iter().find(|(_, _, v)| v.iter().any(|x| !x.is_finite())) {
            bail!("{name} holds NaN or infinite values; the last good checkpoint is kept");
        }
        let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views = tensors
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), b)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("step".to_string(), progress.step.to_string()),
            ("adam_steps".to_string(), adam.steps_taken.to_string()),
            ("train_seconds".to_string(), progress.train_seconds.to_string()),
        ]);
        let data = safetensors::serialize(views, Some(metadata))?;
        let dir = self.path.join(CHECKPOINT_DIR);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_atomic(&self.checkpoint_path(), &data)
    }

    /// Load a checkpoint into `model` (which must have the same structure) and `adam`; returns the
    /// progress and the task's state.
    pub fn load_checkpoint<M: Module>(&self, model: M, adam: &mut Adam, device: &Device) -> Result<(M, Progress, TaskState)> {
        let path = self.checkpoint_path();
        let data = fs::read(&path).with_context(|| format!("run {} has no checkpoint ({})", self.path.display(), path.display()))?;
        let bad = |e: safetensors::SafeTensorError| anyhow::anyhow!("checkpoint {} is unreadable: {e}", path.display());
        let (_, meta) = SafeTensors::read_metadata(&data).map_err(bad)?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            bail!("{} is not an nfield checkpoint", path.display());
        }
        let number = |key: &str| -> Result<f64> {
            meta.get(key).and_then(|v| v.parse().ok()).with_context(|| format!("checkpoint {} lacks `{key}`", path.display()))
        };
        let progress = Progress { step: number("step")? as u64, train_seconds: number("train_seconds")? };
        adam.steps_taken = number("adam_steps")? as u64;
        let file = SafeTensors::deserialize(&data).map_err(bad)?;
        let mut values: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
        for (name, view) in file.tensors() {
            if view.dtype() != Dtype::F32 {
                bail!("checkpoint tensor {name} is not f32");
            }
            let floats = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            values.insert(current_name(&name), (view.shape().to_vec(), floats));
        }
        stack_gnf_tables(&mut values);
        adam.state.clear();
        for (name, (shape, m)) in values.iter().filter(|(k, _)| k.starts_with("adam.m.")) {
            let key = &name["adam.m.".len()..];
            let (_, v) = values.get(&format!("adam.v.{key}")).with_context(|| format!("checkpoint lacks adam.v.{key}"))?;
            let device = device.clone().without_autodiff();
            // Older checkpoints stored every moment flat; those load as vectors and take their
            // parameter's shape at the first update.
            let shaped = |values: &Vec<f32>| match shape[..] {
                [rows, cols] => Shaped::Matrix(Tensor::from_data(TensorData::new(values.clone(), [rows, cols]), &device)),
                _ => Shaped::Vector(Tensor::from_data(TensorData::new(values.clone(), [shape.iter().product::<usize>()]), &device)),
            };
            let moments = Moments { m: shaped(m), v: shaped(v) };
            adam.state.insert(key.to_string(), moments);
        }
        let mut loader = ParamLoader { values: &values, path: Vec::new(), error: None };
        let model = model.map(&mut loader);
        if let Some(e) = loader.error {
            bail!("checkpoint {} does not match the model: {e}", path.display());
        }
        // A moment the size of another parameter would fail at the first update, far from here.
        for (key, moments) in &adam.state {
            let expected = values.get(&format!("model.{key}")).map(|(shape, _)| shape.iter().product::<usize>());
            for (which, moment) in [("m", &moments.m), ("v", &moments.v)] {
                if expected.is_some_and(|n| n != moment.dims().iter().product::<usize>()) {
                    bail!("checkpoint {}: adam.{which}.{key} has {:?} values, its parameter {:?}", path.display(), moment.dims(), expected);
                }
            }
        }
        let mut task: TaskState =
            values.iter().filter_map(|(name, (shape, v))| Some((name.strip_prefix("task.")?.to_string(), shape.clone(), v.clone()))).collect();
        task.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((model, progress, task))
    }
}

/// A checkpoint tensor's name as the current module tree has it (checkpoints of earlier
/// versions name parameters by their old paths).
fn current_name(name: &str) -> String {
    for prefix in ["model.", "adam.m.", "adam.v."] {
        if let Some(path) = name.strip_prefix(prefix) {
            return format!("{prefix}{}", crate::fields::current_param_path(path));
        }
    }
    name.to_string()
}

/// GNF kept one table per grid (`encoding.Gnf.grids.<i>.table`, `[rows, channels]`) before they
/// were stacked into one (`encoding.Gnf.table`, in rows as wide as the channels' greatest common
/// divisor): the parameters and their moments, which older checkpoints stored flat, are stacked.
fn stack_gnf_tables(values: &mut HashMap<String, (Vec<usize>, Vec<f32>)>) {
    let mut width = 1;
    for prefix in ["model.", "adam.m.", "adam.v."] {
        let mut parts = Vec::new();
        while let Some(part) = values.remove(&format!("{prefix}encoding.Gnf.grids.{}.table", parts.len())) {
            parts.push(part);
        }
        if prefix == "model." {
            width = parts.iter().fold(0, |w, (shape, _)| crate::fields::gnf::gcd(w, shape.last().copied().unwrap_or(1))).max(1);
        }
        if !parts.is_empty() {
            let stacked: Vec<f32> = parts.into_iter().flat_map(|(_, v)| v).collect();
            values.insert(format!("{prefix}encoding.Gnf.table"), (vec![stacked.len() / width, width], stacked));
        }
    }
}

/// Where training stands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Steps completed.
    pub step: u64,
    /// Training time so far, across resumes.
    pub train_seconds: f64,
}

/// Every float parameter's path, shape and values.
pub fn collect_params<M: Module>(model: &M) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    struct Collect {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>, Vec<f32>)>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            self.out.push((self.path.join("."), t.dims().to_vec(), read_floats(t)));
        }
    }
    let mut c = Collect { path: Vec::new(), out: Vec::new() };
    model.visit(&mut c);
    c.out
}

struct ParamLoader<'a> {
    values: &'a HashMap<String, (Vec<usize>, Vec<f32>)>,
    path: Vec<String>,
    error: Option<String>,
}

impl ModuleMapper for ParamLoader<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let key = format!("model.{}", self.path.join("."));
        match self.values.get(&key) {
            Some((shape, v)) if same_shape(shape, &tensor.dims()) => {
                let mut loaded = Tensor::<D>::from_data(TensorData::new(v.clone(), tensor.dims()), &tensor.device());
                if tensor.is_require_grad() {
                    loaded = loaded.require_grad();
                }
                Param::from_mapped_value(id, loaded, mapper)
            }
            Some((shape, _)) => {
                self.error.get_or_insert(format!("{key} has shape {shape:?}, the model expects {:?}", tensor.dims()));
                Param::from_mapped_value(id, tensor, mapper)
            }
            None => {
                self.error.get_or_insert(format!("{key} is missing"));
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
    }
}

/// Shapes equal but for leading ones: biases were vectors before they became `[1, out]` rows.
fn same_shape(stored: &[usize], expected: &[usize]) -> bool {
    let significant = |s: &[usize]| s.iter().position(|&d| d != 1).map_or(0, |i| s.len() - i);
    let (a, b) = (significant(stored), significant(expected));
    a == b && stored[stored.len() - a..] == expected[expected.len() - b..]
}

/// Write via a temporary file in the same directory, fsync, then rename over the target.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{HashMap, same_shape, stack_gnf_tables};

    #[test]
    fn stored_shapes_match_but_for_leading_ones() {
        assert!(same_shape(&[64], &[1, 64]));
        assert!(same_shape(&[1, 64], &[64]));
        assert!(same_shape(&[3, 64], &[3, 64]));
        assert!(same_shape(&[1], &[1, 1]));
        assert!(!same_shape(&[64, 3], &[3, 64]));
        assert!(!same_shape(&[64], &[64, 1]));
        assert!(!same_shape(&[192], &[3, 64]));
    }

    /// Per-grid GNF tables of 4 and 2 channels stack into rows of 2, in grid order, with their
    /// moments (stored flat by older checkpoints) stacked the same way.
    #[test]
    fn per_grid_gnf_tables_stack_into_rows_of_the_common_width() {
        let mut values: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
        let first: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let second: Vec<f32> = (100..110).map(|i| i as f32).collect();
        values.insert("model.encoding.Gnf.grids.0.table".into(), (vec![3, 4], first.clone()));
        values.insert("model.encoding.Gnf.grids.1.table".into(), (vec![5, 2], second.clone()));
        values.insert("adam.m.encoding.Gnf.grids.0.table".into(), (vec![12], first.clone()));
        values.insert("adam.m.encoding.Gnf.grids.1.table".into(), (vec![10], second.clone()));
        values.insert("model.decoder.Gaussian.centres".into(), (vec![2, 6], vec![0.0; 12]));
        stack_gnf_tables(&mut values);
        let both: Vec<f32> = first.into_iter().chain(second).collect();
        assert_eq!(values["model.encoding.Gnf.table"], (vec![11, 2], both.clone()));
        assert_eq!(values["adam.m.encoding.Gnf.table"], (vec![11, 2], both));
        assert!(!values.keys().any(|k| k.contains("grids.")), "{:?}", values.keys());
        assert_eq!(values["model.decoder.Gaussian.centres"].0, vec![2, 6]);
    }
}
