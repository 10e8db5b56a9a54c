//! The `lattice` program end to end: exit codes and what it prints.

use std::process::Command;

use crate::util::parquet_dir;

fn lattice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lattice"))
}

#[test]
fn validate_accepts_the_shipped_cube_with_its_data() {
    let out = lattice()
        .args([
            "validate",
            concat!(env!("CARGO_MANIFEST_DIR"), "/cube_defs/bank_crm.yaml"),
            "--data",
        ])
        .arg(parquet_dir())
        .output()
        .expect("run lattice");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("cube 'bank_crm'") && stdout.contains("data checked"),
        "{stdout}"
    );
}

#[test]
fn validate_prints_every_error_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    let yaml = lattice_defs::BANK_CRM_YAML
        .replace(
            "hierarchy: [category, product]",
            "hierarchy: [categry, product]",
        )
        .replace("agg: count, format", "agg: median, format");
    std::fs::write(&file, &yaml).expect("write");
    let out = lattice()
        .arg("validate")
        .arg(&file)
        .output()
        .expect("run lattice");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = yaml
        .lines()
        .position(|l| l.contains("categry"))
        .expect("line")
        + 1;
    assert!(
        stderr.contains(&format!(
            "bad.yaml:{line}:17: dimensions.product.hierarchy[0]: unknown level 'categry' in dimension 'product' (did you mean 'category'?)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("unsupported aggregation 'median'"),
        "{stderr}"
    );
    assert!(stderr.trim_end().ends_with("2 errors"), "{stderr}");
}

#[test]
fn gen_rejects_a_bad_scale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lattice()
        .args(["gen", "--scale", "0", "--out"])
        .arg(dir.path())
        .output()
        .expect("run lattice");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scale"));
}
