//! The wgpu path (lavapipe in CI): the same config must give the same PSNR as on the CPU, and a
//! machine without an adapter must get a sentence that names the fix. One short run, so the
//! shader compilation cost is paid once.

mod common;

use common::*;

#[test]
fn wgpu_matches_cpu_and_missing_adapter_is_explained() {
    // No Vulkan driver at all: a clear error that names the fix.
    let o = nfield()
        .args(["train", "configs/image/hashgrid.toml", "--device", "vulkan", "--out", "/tmp/nfield-never"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert_clean_error(&o, &["no vulkan adapter", "mesa-vulkan-drivers"]);
    assert!(!std::path::Path::new("/tmp/nfield-never").exists());

    let t = tempfile::tempdir().unwrap();
    let out = t.path().to_str().unwrap();
    let mut results = Vec::new();
    for device in ["cpu", "wgpu"] {
        let mut args = small_run("configs/image/hashgrid.toml", out, device, "150");
        args[3] = device;
        let o = run(&args);
        if device == "wgpu" && stderr(&o).contains("no wgpu adapter") && std::env::var("CI").is_err() {
            eprintln!("skipping the wgpu half: no adapter here (apt-get install mesa-vulkan-drivers)");
            return;
        }
        assert!(o.status.success(), "{device}: {}", stderr(&o));
        let s = summary(&run_dir(&o));
        assert_eq!(s["device"], device);
        results.push(s["psnr"].as_f64().unwrap());
    }
    assert!(results[0] > 28.0, "cpu PSNR {}", results[0]);
    assert!((results[0] - results[1]).abs() < 0.1, "cpu {} dB vs wgpu {} dB", results[0], results[1]);
}

/// The hash grid's forward and its table gradient on wgpu equal the CPU's at training sizes
/// (burn 0.22.1's wgpu `select` backward drops rows past 65535; the grid must not depend on it).
#[test]
fn hash_grid_gradient_on_wgpu_matches_cpu() {
    use burn::tensor::{Device, Tensor, TensorData};
    use nfield::fields::grid::{GridSize, HashGrid};
    use rand::SeedableRng;

    let Some(gpu) = wgpu_device() else { return };
    let points = nfield::data::image::Image::pixel_centres(64, 48);
    let mut outputs = Vec::new();
    for device in [Device::flex().autodiff(), gpu.device.autodiff()] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // 16 levels x 4 corners x 3072 points = 196608 table reads, some levels hashed.
        let grid = HashGrid::new(2, GridSize { levels: 16, features: 2, log2_table_size: 10, base: 16, finest: 64 }, &mut rng, &device);
        let x = Tensor::<2>::from_data(TensorData::new(points.clone(), [64 * 48, 2]), &device);
        let features = grid.forward(x);
        // A loss that weights each output differently, so a dropped row shows.
        let weights = Tensor::<2>::from_data(
            TensorData::new((0..features.shape().num_elements()).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(), features.dims()),
            &device,
        );
        let loss = (features.clone() * weights).sum();
        let grad = grid.table.val().grad(&loss.backward()).expect("table gradient");
        let f: Vec<f32> = features.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let g: Vec<f32> = grad.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        outputs.push((f, g));
    }
    let (cpu, wgpu) = (&outputs[0], &outputs[1]);
    for (a, b) in cpu.0.iter().zip(&wgpu.0) {
        assert!((a - b).abs() < 1e-6, "features differ: {a} vs {b}");
    }
    for (i, (a, b)) in cpu.1.iter().zip(&wgpu.1).enumerate() {
        assert!((a - b).abs() < 1e-3 * (1.0 + a.abs()), "gradient of row {} differs: {a} vs {b}", i / 2);
    }
}

/// NeuRBF's forward and its kernel-feature gradient on wgpu (gathers) equal the CPU's (selects)
/// past 65,535 neighbour rows: 19,200 points x 4 neighbours.
#[test]
fn neurbf_gradient_on_wgpu_matches_cpu() {
    use burn::tensor::{Device, Tensor, TensorData};
    use nfield::config::Config;
    use nfield::fields::{Encoding, Field, FieldSpec};

    let Some(gpu) = wgpu_device() else { return };
    let image = asset("test/coffee-64x48-rgb8.png");
    let sets = ["model.kernels=200".to_string(), format!("task.path={}", image.display()), "task.crop=[64,48]".into()];
    let mut config = Config::load(&repo().join("configs/image/neurbf.toml"), &sets).unwrap();
    config.resolve();
    let task = config.task.build(&config, &Device::flex()).unwrap();
    let spec = FieldSpec { importance: task.importance().map(std::sync::Arc::new), ..task.field_spec() };
    let points = nfield::data::image::Image::pixel_centres(160, 120);
    let mut outputs = Vec::new();
    for device in [Device::flex().autodiff(), gpu.device.autodiff()] {
        let field = Field::new(&config.model, &spec, 5, &device).unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(points.clone(), [160 * 120, 2]), &device);
        let y = field.forward(x);
        let weights = Tensor::<2>::from_data(
            TensorData::new((0..y.shape().num_elements()).map(|i| (i % 5) as f32 - 2.0).collect::<Vec<_>>(), y.dims()),
            &device,
        );
        let grads = (y.clone() * weights).sum().backward();
        let Encoding::NeuRbf(rbf) = &field.encoding else { unreachable!() };
        let grad = rbf.kernel_features.val().grad(&grads).expect("kernel feature gradient");
        let f: Vec<f32> = y.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let g: Vec<f32> = grad.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        outputs.push((f, g));
    }
    let (cpu, wgpu) = (&outputs[0], &outputs[1]);
    for (a, b) in cpu.0.iter().zip(&wgpu.0) {
        assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "outputs differ: {a} vs {b}");
    }
    let scale = cpu.1.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in cpu.1.iter().zip(&wgpu.1).enumerate() {
        assert!((a - b).abs() < 1e-3 * scale, "gradient of kernel {} differs: {a} vs {b}", i / 32);
    }
}

/// The wgpu device, or `None` (with a note) on a machine without an adapter; CI must have one.
fn wgpu_device() -> Option<nfield::device::SelectedDevice> {
    match nfield::device::select(nfield::device::DeviceChoice::Wgpu) {
        Ok(gpu) => Some(gpu),
        Err(_) => {
            assert!(std::env::var("CI").is_err(), "CI must have a wgpu adapter (mesa-vulkan-drivers)");
            eprintln!("skipping: no wgpu adapter");
            None
        }
    }
}
