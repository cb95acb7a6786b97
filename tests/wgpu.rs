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

/// The hash grid's forward and its table gradient on wgpu (the CubeCL gather-sum kernels) equal
/// the CPU's at training sizes, past 65,535 table reads.
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

/// NeuRBF's forward and its kernel-feature gradient on wgpu equal the CPU's past 65,535
/// neighbour rows: 19,200 points x 4 neighbours.
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

/// The gather-sum's CubeCL kernels against the same sum in plain tensor operations on wgpu
/// (value, table gradient with repeated rows, weight gradient; one weight per row as the grids
/// use, and one per feature as NeuRBF does), and both gradients against central differences.
#[test]
fn gather_sum_kernels_match_their_tensor_twin_and_finite_differences() {
    use burn::tensor::{Int, Tensor, TensorData};
    use nfield::kernels::gather_sum::{gather_sum, gather_sum_reference};
    use rand::{RngExt, SeedableRng};

    let Some(gpu) = wgpu_device() else { return };
    let device = gpu.device.autodiff();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut random = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect() };
    let (rows_in_table, n, k, f) = (300, 5000, 4, 6);
    let table = random(rows_in_table * f);
    let loss_weights = Tensor::<2>::from_data(TensorData::new(random(n * f), [n, f]), &device);
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let rows: Vec<i32> = (0..n * k).map(|_| rng.random_range(0..rows_in_table as i32)).collect();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n * k]), &device);
    let host = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    for width in [1, f] {
        let weight_values = random(n * k * width);
        let weights = Tensor::<3>::from_data(TensorData::new(weight_values.clone(), [n, k, width]), &device);
        let mut results = Vec::new();
        for kernel in [true, false] {
            let t = Tensor::<2>::from_data(TensorData::new(table.clone(), [rows_in_table, f]), &device).require_grad();
            let w = weights.clone().require_grad();
            let out = if kernel { gather_sum(t.clone(), rows.clone(), w.clone()) } else { gather_sum_reference(t.clone(), rows.clone(), w.clone()) };
            let grads = (out.clone() * loss_weights.clone()).sum().backward();
            let w_grad = w.grad(&grads).unwrap().reshape([n * k, width]);
            results.push((host(out), host(t.grad(&grads).unwrap()), host(w_grad)));
        }
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "width {width}, {what}[{i}]: kernel {x} vs tensors {y}");
            }
        };
        close(&results[0].0, &results[1].0, "value");
        close(&results[0].1, &results[1].1, "table gradient");
        close(&results[0].2, &results[1].2, "weight gradient");

        // The loss is linear in each table entry and each weight, so a central difference is
        // exact up to rounding of the f32 sums.
        let loss = |table: &[f32], weights: &[f32]| -> f64 {
            let t = Tensor::<2>::from_data(TensorData::new(table.to_vec(), [rows_in_table, f]), &device);
            let w = Tensor::<3>::from_data(TensorData::new(weights.to_vec(), [n, k, width]), &device);
            (gather_sum(t, rows.clone(), w) * loss_weights.clone()).sum().into_scalar::<f32>() as f64
        };
        let h = 0.5f32;
        let check = |what: &str, entry: usize, gradient: f32, plus: (&[f32], &[f32]), minus: (&[f32], &[f32])| {
            let difference = (loss(plus.0, plus.1) - loss(minus.0, minus.1)) / (2.0 * h as f64);
            let gradient = gradient as f64;
            assert!(
                (gradient - difference).abs() < 2e-2 * (1.0 + gradient.abs()),
                "width {width}, {what} {entry}: gradient {gradient} vs difference {difference}"
            );
        };
        for entry in [0, 7, 451, rows_in_table * f - 1] {
            let (mut plus, mut minus) = (table.clone(), table.clone());
            plus[entry] += h;
            minus[entry] -= h;
            check("table entry", entry, results[0].1[entry], (&plus, &weight_values), (&minus, &weight_values));
        }
        for entry in [0, 13, n * k * width - 1] {
            let (mut plus, mut minus) = (weight_values.clone(), weight_values.clone());
            plus[entry] += h;
            minus[entry] -= h;
            check("weight", entry, results[0].2[entry], (&table, &plus), (&table, &minus));
        }
    }
}

/// Kernel launches of a steady-state step stay within the targets on 64x64 full batches
/// (before: FFN 119, hash grid 104, NeuRBF 120, GNF 150), and nothing between log steps (the
/// counted window) waits for the device.
#[test]
fn step_launches_stay_under_targets() {
    const TARGETS: &[(&str, f64)] = &[("ffn", 40.0), ("hashgrid", 30.0), ("neurbf", 40.0), ("gnf", 40.0)];
    if wgpu_device().is_none() {
        return;
    }
    let t = tmp();
    let out = t.path().to_str().unwrap();
    for &(field, target) in TARGETS {
        let config = format!("configs/image/{field}.toml");
        let o = run(&[
            "train",
            &config,
            "--set",
            "task.crop=[64,64]",
            "--set",
            "task.batch_size=0",
            "--steps",
            "12",
            "--set",
            "train.log_every=1000",
            "--device",
            "wgpu",
            "--out",
            out,
            "--name",
            field,
            "--quiet",
            "--profile",
        ]);
        assert!(o.status.success(), "{field}: {}", stderr(&o));
        assert!(stdout(&o).contains("kernel launches"), "{field}: the profile table is printed: {}", stdout(&o));
        let text = std::fs::read_to_string(t.path().join(field).join("profile.json")).unwrap();
        let profile: serde_json::Value = serde_json::from_str(&text).unwrap();
        let launches = profile["launches_per_step"].as_f64().unwrap();
        assert!(launches <= target, "{launches} launches per {field} step, target {target}: {text}");
        let reads = profile["host_reads_per_step"].as_f64().unwrap();
        assert_eq!(reads, 0.0, "{field}: host reads between log steps: {text}");
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
