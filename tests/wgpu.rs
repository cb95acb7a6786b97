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
