//! The `lattice` program end to end: exit codes and what it prints.

use std::process::Command;

use crate::util::parquet_dir;

pub fn lattice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lattice"))
}

/// Runs `lattice <args> <bank_crm.yaml> [rest] --data <test data>`, insists it succeeds, and
/// returns what it printed.
pub fn run_on_test_data(args: &[&str]) -> String {
    let (cmd, rest) = args.split_first().expect("a subcommand");
    let out = lattice()
        .arg(cmd)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/cube_defs/bank_crm.yaml"
        ))
        .args(rest)
        .arg("--data")
        .arg(parquet_dir())
        .output()
        .expect("run lattice");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn validate_accepts_the_shipped_cube_with_its_data() {
    let stdout = run_on_test_data(&["validate"]);
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

/// `lattice serve` over a real socket: it builds the cube, says where it listens, answers, and
/// stops cleanly on SIGTERM.
#[test]
fn serve_answers_over_a_socket_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::Stdio;
    use std::time::Duration;

    let snapshots = tempfile::tempdir().expect("tempdir");
    let mut child = lattice()
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(parquet_dir())
        .arg("--snapshots")
        .arg(snapshots.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start lattice serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("serve ended before saying where it listens");
        };
        if let Some(rest) = line.split("serving on http://").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let get = |path: &str| -> String {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read");
        response
    };
    let cubes = get("/v1/cubes");
    assert!(cubes.starts_with("HTTP/1.1 200"), "{cubes}");
    // Built, and kept as a snapshot in the folder given, before it served.
    let written =
        lattice_engine::store::snapshot::versions::versions(&snapshots.path().join("bank_crm"))
            .expect("versions");
    assert_eq!(written.len(), 1, "{written:?}");
    let cube = get("/v1/cubes/bank_crm");
    assert!(
        cube.contains("\"origin\":\"built\"") && cube.contains(&written[0]),
        "{cube}"
    );
    assert!(
        cubes.contains("\"name\":\"bank_crm\"") && cubes.contains("\"cuboids\":"),
        "{cubes}"
    );
    let missing = get("/v1/cubes/nope");
    assert!(
        missing.starts_with("HTTP/1.1 404") && missing.contains("unknown_cube"),
        "{missing}"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "serve exited with {status} after SIGTERM");
}

/// Runs `lattice query` on the test data with `doc` on standard input.
fn query_on_test_data(doc: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    use std::io::Write as _;
    let mut child = lattice()
        .arg("query")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/cube_defs/bank_crm.yaml"
        ))
        .arg("--data")
        .arg(parquet_dir())
        .args(["--json", "-"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run lattice");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(doc.as_bytes())
        .expect("write the query");
    let out = child.wait_with_output().expect("lattice ends");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

/// Cents of an exact decimal string.
fn cents(v: &serde_json::Value) -> i64 {
    let s = v.as_str().expect("a decimal string");
    let (int, frac) = s.split_once('.').expect("two decimals");
    assert_eq!(frac.len(), 2, "{s}");
    let sign = if int.starts_with('-') { -1 } else { 1 };
    int.parse::<i64>().expect("integer part") * 100 + sign * frac.parse::<i64>().expect("cents")
}

#[test]
fn query_prints_the_answer_whose_rows_add_up_to_its_totals() {
    let (code, answer) = query_on_test_data(
        r#"{"measures": ["fee_income", "txn_count"], "rows": ["channel.channel"], "totals": true}"#,
        &[],
    );
    assert_eq!(code, Some(0), "{answer}");
    let rows = answer["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6, "six channels: {answer}");
    let fee: i64 = rows.iter().map(|r| cents(&r[1])).sum();
    let count: i64 = rows.iter().map(|r| r[2].as_i64().expect("a count")).sum();
    assert_eq!(fee, cents(&answer["totals"]["fee_income"]));
    assert_eq!(
        count,
        answer["totals"]["txn_count"].as_i64().expect("count")
    );
    assert_eq!(answer["meta"]["source"], "cuboid");
    assert_eq!(answer["columns"][1]["type"], "decimal");
}

#[test]
fn query_errors_are_json_with_a_code_and_exit_2() {
    let (code, answer) = query_on_test_data(
        r#"{"measures": ["fee_income"], "rows": ["region.provnce"]}"#,
        &[],
    );
    assert_eq!(code, Some(2));
    assert_eq!(answer["error"]["code"], "unknown_level");
    assert_eq!(
        answer["error"]["message"],
        "unknown level 'region.provnce' (did you mean 'region.province'?)"
    );
}

#[test]
fn query_drills_through_to_the_customers_behind_a_cell() {
    let cell = r#"[{"level": "channel.channel", "op": "eq", "value": "ATM"}]"#;
    let (code, drill) = query_on_test_data(
        &format!(r#"{{"level": "customer.id", "filters": {cell}, "limit": 1000000}}"#),
        &["--drill"],
    );
    assert_eq!(code, Some(0), "{drill}");
    // The same cell's distinct customers, as a query counts them.
    let (_, answer) = query_on_test_data(
        &format!(r#"{{"measures": ["active_customers"], "filters": {cell}}}"#),
        &[],
    );
    let customers = answer["rows"][0][0].as_u64().expect("a count");
    assert_eq!(drill["total"].as_u64(), Some(customers));
    assert_eq!(
        drill["rows"].as_array().expect("rows").len() as u64,
        customers
    );
}

/// `lattice build --snapshots DIR` writes the built cube as a version `DIR/<cube>/<version>/`,
/// its manifest recording every source's fingerprint; building again adds a newer version
/// beside it and leaves no temporary folder behind.
#[test]
fn build_writes_a_snapshot_and_a_second_build_adds_a_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = dir.path().to_str().expect("utf-8 path");
    let entries = |at: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(at)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let cube_dir = dir.path().join("bank_crm");
    let mut written = Vec::new();
    for round in 0..2 {
        let stdout = run_on_test_data(&["build", "--snapshots", snapshots]);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("wrote snapshot "))
            .unwrap_or_else(|| panic!("no snapshot line: {stdout}"));
        assert!(
            line.contains(" files, ") && line.contains(" bytes"),
            "{line}"
        );
        let folder = line
            .strip_prefix("wrote snapshot ")
            .and_then(|l| l.split(": ").next())
            .expect("the folder");
        let folder = std::path::PathBuf::from(folder);
        assert_eq!(folder.parent(), Some(cube_dir.as_path()), "{line}");
        written.push(
            folder
                .file_name()
                .expect("a version")
                .to_string_lossy()
                .into_owned(),
        );
        assert_eq!(entries(dir.path()), ["bank_crm"]);
        // Only versions: no temporary folder left.
        assert_eq!(entries(&cube_dir), written, "round {round}");
        assert!(entries(&folder).contains(&"levels.arrow".to_string()));
        let text = std::fs::read_to_string(folder.join("manifest.json")).expect("manifest");
        let manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(manifest["cube"], "bank_crm");
        let sources = manifest["sources"].as_array().expect("sources").clone();
        let names: Vec<&str> = sources
            .iter()
            .map(|s| s["name"].as_str().expect("name"))
            .collect();
        assert!(
            names.contains(&"transactions") && names.contains(&"customers"),
            "{names:?}"
        );
        for s in &sources {
            let path = s["path"].as_str().expect("path");
            let size = std::fs::metadata(path).expect("source file").len();
            assert_eq!(s["size"], size, "{s}");
            assert!(s["modified_secs"].as_u64().is_some(), "{s}");
        }
    }
    assert!(written[0] < written[1], "{written:?}");
}
