//! Backend choice at run time: `auto` takes a real GPU through wgpu when one exists and burn-flex
//! on the CPU otherwise; `wgpu`, `vulkan`, `cuda` and `cpu` force one.

use anyhow::{Result, bail};
use burn::tensor::Device;
use burn::tensor::wgpu::{WgpuBackend, wgpu};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Wgpu,
    Vulkan,
    Cuda,
    Cpu,
}

impl DeviceChoice {
    /// The name `--device` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Wgpu => "wgpu",
            Self::Vulkan => "vulkan",
            Self::Cuda => "cuda",
            Self::Cpu => "cpu",
        }
    }
}

/// A device ready for tensors, with a name for humans and summaries.
#[derive(Clone)]
pub struct SelectedDevice {
    pub device: Device,
    /// e.g. `cpu (burn-flex)` or `wgpu (NVIDIA H100, Vulkan)`.
    pub description: String,
    /// `cpu`, `wgpu`, `vulkan` or `cuda`, as recorded in `summary.json`.
    pub kind: &'static str,
    /// The wgpu objects behind a wgpu device, for a window to share it.
    pub wgpu_setup: Option<burn::tensor::wgpu::WgpuSetup>,
}

const NO_ADAPTER_HELP: &str = "install the GPU's driver, or `mesa-vulkan-drivers` \
    (apt-get install -y mesa-vulkan-drivers) for software Vulkan, or use --device cpu";

/// The adapters wgpu can see, without creating a device.
fn adapters(backends: wgpu::Backends) -> Vec<wgpu::AdapterInfo> {
    // WGPU_BACKEND narrows the search, as it does for every wgpu program.
    let backends = wgpu::Backends::from_env().map_or(backends, |env| env & backends);
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor { backends, ..wgpu::InstanceDescriptor::new_without_display_handle() });
    let _quiet = QuietStderr::new();
    pollster_block_on(instance.enumerate_adapters(backends)).into_iter().map(|a| a.get_info()).collect()
}

/// Mutes the process's stderr while it lives. Probing Vulkan drivers on a headless machine makes
/// Mesa's Wayland client print "error: XDG_RUNTIME_DIR is invalid", which would read as if the
/// run had failed. Our own errors are Rust values, so nothing of ours is lost.
struct QuietStderr {
    #[cfg(unix)]
    saved: libc::c_int,
}

impl QuietStderr {
    fn new() -> Self {
        #[cfg(unix)]
        // SAFETY: plain descriptor juggling on fd 2; restored in Drop.
        unsafe {
            let saved = libc::dup(2);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if saved >= 0 && null >= 0 {
                libc::dup2(null, 2);
            }
            if null >= 0 {
                libc::close(null);
            }
            Self { saved }
        }
        #[cfg(not(unix))]
        Self {}
    }
}

impl Drop for QuietStderr {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restores the descriptor saved in `new`.
        unsafe {
            if self.saved >= 0 {
                libc::dup2(self.saved, 2);
                libc::close(self.saved);
            }
        }
    }
}

/// wgpu's `enumerate_adapters` is async on every platform; native adapters resolve immediately.
fn pollster_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

fn is_real_gpu(info: &wgpu::AdapterInfo) -> bool {
    !matches!(info.device_type, wgpu::DeviceType::Cpu | wgpu::DeviceType::Other)
}

/// Start a wgpu device once per process and hand out the same one afterwards: burn's wgpu
/// runtime can be set up only once per device, so a second start (another test thread, an
/// evaluation after training) must not try again.
fn init_wgpu(api: WgpuBackend, backends: wgpu::Backends, label: &'static str) -> Result<SelectedDevice> {
    static STARTED: std::sync::Mutex<Vec<SelectedDevice>> = std::sync::Mutex::new(Vec::new());
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(device) = started.iter().find(|d| d.kind == label) {
        return Ok(device.clone());
    }
    let device = start_wgpu(api, backends, label)?;
    started.push(device.clone());
    Ok(device)
}

fn start_wgpu(api: WgpuBackend, backends: wgpu::Backends, label: &'static str) -> Result<SelectedDevice> {
    let found = adapters(backends);
    if found.is_empty() {
        bail!("--device {label}: no {label} adapter was found; {NO_ADAPTER_HELP}");
    }
    let started = {
        let _quiet = QuietStderr::new();
        Device::wgpu_options().graphics_api(api).init_with_setup()
    };
    let (device, setup) = started.map_err(|e| anyhow::anyhow!("--device {label}: could not start the GPU device ({e}); {NO_ADAPTER_HELP}"))?;
    let info = setup.adapter.get_info();
    let software = if is_real_gpu(&info) { "" } else { ", software" };
    Ok(SelectedDevice { device, description: format!("{label} ({}, {:?}{software})", info.name, info.backend), kind: label, wgpu_setup: Some(setup) })
}

/// How many independent blocks of operations burn's fusion search weighs at once, unless a
/// `burn.toml` says otherwise. With burn's default, 5, a training step ran mostly unfused: an
/// optimiser update is one independent chain per parameter, the search stops at the fifth, the
/// order it then proposes fails burn's own check, and the whole segment falls back to one
/// kernel per operation (`[repair] falling back to unfused stream order` in burn's fusion log).
/// At 4 the chains fuse: a steady 64x64 FFN step on lavapipe takes 38 launches instead of 119
/// (bench/gpu_profile.sh has every field's; 3 gave 39 to 50, 4 the fewest overall).
const FUSION_MAX_BLOCKS: i64 = 4;

/// Give burn's fusion nfield's search width before any tensor exists (burn reads its
/// configuration once, at its first use). A `burn.toml` (or
/// `Burn.toml`) in the working directory or above is read as burn reads it, and its own
/// `fusion.beam_search.max_blocks` wins; `BURN_FUSION_LOG` still works.
fn configure_fusion() {
    use burn_std::config::RuntimeConfig;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut table = match burn_toml() {
            Some(text) => match text.parse::<toml::Table>() {
                Ok(table) => table,
                // burn reports a file it cannot parse; leave that to it.
                Err(_) => return,
            },
            None => toml::Table::new(),
        };
        let fusion = table.entry("fusion").or_insert_with(|| toml::Table::new().into());
        let Some(fusion) = fusion.as_table_mut() else { return };
        let search = fusion.entry("beam_search").or_insert_with(|| toml::Table::new().into());
        let Some(search) = search.as_table_mut() else { return };
        search.entry("max_blocks").or_insert(FUSION_MAX_BLOCKS.into());
        if let Ok(config) = toml::Value::Table(table).try_into::<burn::BurnConfig>() {
            // `false` when burn has read its configuration already; nothing to do then.
            let _ = burn::BurnConfig::try_set(config.override_from_env());
        }
    });
}

/// The text of the `burn.toml` burn would read: the first in the working directory or above.
fn burn_toml() -> Option<String> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        for name in ["burn.toml", "Burn.toml"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
                return Some(text);
            }
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// Pick the device. Never panics on a machine without a GPU: `auto` falls back to the CPU.
pub fn select(choice: DeviceChoice) -> Result<SelectedDevice> {
    configure_fusion();
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Wgpu => init_wgpu(WgpuBackend::Auto, wgpu::Backends::PRIMARY, "wgpu"),
        DeviceChoice::Vulkan => init_wgpu(WgpuBackend::Vulkan, wgpu::Backends::VULKAN, "vulkan"),
        DeviceChoice::Cuda => cuda(),
        DeviceChoice::Auto => {
            // Vulkan, Metal and DX12 only: GL cannot run compute shaders, and probing EGL makes
            // Mesa print errors on headless machines.
            if adapters(wgpu::Backends::PRIMARY).iter().any(is_real_gpu) {
                init_wgpu(WgpuBackend::Auto, wgpu::Backends::PRIMARY, "wgpu")
            } else {
                Ok(cpu())
            }
        }
    }
}

pub fn cpu() -> SelectedDevice {
    SelectedDevice { device: Device::flex(), description: "cpu (burn-flex)".into(), kind: "cpu", wgpu_setup: None }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<SelectedDevice> {
    let device = std::panic::catch_unwind(|| {
        let d = Device::cuda(0);
        // Touch the device so a missing driver surfaces here, not mid-training.
        let _ = burn::tensor::Tensor::<1>::zeros([1], &d).into_data();
        d
    })
    .map_err(|_| {
        anyhow::anyhow!("--device cuda: no CUDA device could be started; install the NVIDIA driver and CUDA toolkit, or use --device wgpu")
    })?;
    Ok(SelectedDevice { device, description: "cuda (device 0)".into(), kind: "cuda", wgpu_setup: None })
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<SelectedDevice> {
    bail!("--device cuda: this build has no CUDA support; rebuild with `cargo build --release --features cuda`, or use --device wgpu")
}
