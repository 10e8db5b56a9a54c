//! Serving from snapshots (`serve --snapshots DIR`): a second start loads what the first built
//! and answers the same; damaged snapshots are set aside and never served; snapshots of another
//! definition or other data are passed over and left alone; the newest versions are kept; and
//! a `lattice build --snapshots` killed while it writes never leaves a snapshot that is served
//! damaged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lattice_engine::source::load;
use lattice_engine::store::snapshot::{MANIFEST, versions};
use lattice_server::{Config, Served, Server, Snapshots};
use serde_json::{Value, json};

use crate::util::{Listening, listen, parquet_dir, post_json};

const CUBE: &str = "bank_crm";

/// Questions over every fact, a value class, a band, and the allocation; the last one no
/// cuboid covers ([`uncovered`]).
fn questions() -> Vec<Value> {
    vec![
        json!({"measures": ["txn_amount", "active_customers", "fee_income"], "rows": ["time.year", "channel.channel"]}),
        json!({"measures": ["deposit_balance", "customers"], "rows": ["region.province", "time.quarter"]}),
        json!({"measures": ["contribution", "allocated_cost"], "rows": ["customer.segment"]}),
        json!({"measures": ["txn_count"], "rows": ["customer.value_class", "customer.deposit_band"]}),
        uncovered(),
    ]
}

/// A question no cuboid covers (customers are in none): answered from the base rows.
fn uncovered() -> Value {
    json!({"measures": ["txn_amount"], "rows": ["customer.id"], "limit": 5})
}

/// Where `server` answers `q` from (`cuboid`, `base` or `fallback`).
async fn source_of(server: &Listening, q: &Value) -> String {
    let (status, answer) = post_json(
        server.addr,
        &format!("/v1/cubes/{CUBE}/query"),
        &q.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{q}: {answer}");
    answer["meta"]["source"]
        .as_str()
        .unwrap_or_else(|| panic!("no source in {answer}"))
        .to_string()
}

/// A fresh copy of the test data set, whose files a test may touch.
fn data_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(parquet_dir(), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A server of the shipped cube (`yaml`) over `data`, keeping snapshots in `snapshots`.
pub(crate) struct Started {
    pub server: Listening,
    pub info: Value,
}

pub(crate) async fn start(yaml: &str, data: &Path, snapshots: &Path) -> Started {
    let store = Snapshots::in_dir(snapshots);
    let built = lattice_server::build_or_load_definition(
        yaml.to_string(),
        None,
        Some(data),
        &lattice_engine::build::BuildOptions::default(),
        Some(&store),
    )
    .await
    .expect("the cube is served");
    let config = Config {
        watch_interval: None,
        snapshots: Some(store),
        ..Config::default()
    };
    let server =
        listen(Server::new(config, vec![Served { built, path: None }]).expect("server")).await;
    let info = get_json(server.addr, &format!("/v1/cubes/{CUBE}")).await;
    Started { server, info }
}

/// The answers to [`questions`], without their `meta` (timings, snapshot numbers).
pub(crate) async fn answers(server: &Listening) -> Vec<Value> {
    let mut out = Vec::new();
    for q in questions() {
        let (status, mut answer) = post_json(
            server.addr,
            &format!("/v1/cubes/{CUBE}/query"),
            &q.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{q}: {answer}");
        answer.as_object_mut().expect("an object").remove("meta");
        out.push(answer);
    }
    out
}

pub(crate) async fn get_json(addr: std::net::SocketAddr, path: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    serde_json::from_str(body).expect("JSON body")
}

/// The version folders of the cube, oldest first.
fn versions_in(snapshots: &Path) -> Vec<String> {
    versions::versions(&snapshots.join(CUBE)).expect("versions")
}

fn damaged_in(snapshots: &Path) -> Vec<String> {
    let dir = snapshots.join(CUBE).join(versions::DAMAGED);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The version a served cube's info names.
fn served_version(info: &Value) -> String {
    info["snapshot"]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot in {info}"))
        .to_string()
}

/// One built start: the snapshot folder it wrote, its version and its answers.
async fn first_start(data: &Path) -> (tempfile::TempDir, String, Vec<Value>) {
    let snaps = tempfile::tempdir().expect("tempdir");
    let first = start(lattice_defs::BANK_CRM_YAML, data, snaps.path()).await;
    assert_eq!(first.info["origin"], "built", "{}", first.info);
    let version = served_version(&first.info);
    assert_eq!(versions_in(snaps.path()), vec![version.clone()]);
    let expected = answers(&first.server).await;
    assert_eq!(source_of(&first.server, &uncovered()).await, "base");
    first.server.stop().await;
    (snaps, version, expected)
}

#[tokio::test]
async fn a_second_start_loads_the_snapshot_and_answers_as_the_build_did() {
    let (snaps, version, expected) = first_start(parquet_dir()).await;
    let second = start(lattice_defs::BANK_CRM_YAML, parquet_dir(), snaps.path()).await;
    let info = &second.info;
    assert_eq!(info["origin"], "loaded", "{info}");
    assert_eq!(served_version(info), version);
    assert_eq!(
        info["snapshot"]["dir"],
        snaps.path().join(CUBE).join(&version).display().to_string()
    );
    let written = versions::version_time(&version).expect("a version name");
    let secs = written
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    assert_eq!(info["made_at"], secs);
    let sources = info["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 8, "{info}");
    assert!(
        sources.iter().all(|s| s["size"].as_u64() > Some(0)),
        "{info}"
    );
    crate::util::assert_conforms("CubeDetail", info);
    assert_eq!(answers(&second.server).await, expected);
    // The base rows are in the snapshot: what no cuboid covers is not sent to DataFusion.
    assert_eq!(source_of(&second.server, &uncovered()).await, "base");
    second.server.stop().await;
    // Loading writes nothing.
    assert_eq!(versions_in(snaps.path()), vec![version]);
}

/// Damages one file of `dir` (a snapshot version) the way `how` says.
fn damage(dir: &Path, how: &str) {
    let cuboid = dir.join("cuboid-0003.arrow");
    match how {
        "corrupt" => {
            let mut bytes = std::fs::read(&cuboid).expect("read");
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
            std::fs::write(&cuboid, bytes).expect("write");
        }
        "truncated" => {
            let bytes = std::fs::read(&cuboid).expect("read");
            std::fs::write(&cuboid, &bytes[..bytes.len() / 3]).expect("write");
        }
        "missing" => std::fs::remove_file(&cuboid).expect("remove"),
        "unknown version" => {
            let path = dir.join(MANIFEST);
            let mut manifest: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
            manifest["format_version"] = json!(99);
            std::fs::write(&path, manifest.to_string()).expect("write");
        }
        // A snapshot written before the base rows were stored.
        "version 2" => {
            let path = dir.join(MANIFEST);
            let mut manifest: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
            assert_eq!(manifest["format_version"], 4);
            manifest["format_version"] = json!(2);
            manifest.as_object_mut().expect("an object").remove("bases");
            std::fs::write(&path, manifest.to_string()).expect("write");
        }
        other => panic!("no damage {other}"),
    }
}

#[tokio::test]
async fn a_damaged_snapshot_is_set_aside_and_the_cube_built_instead() {
    let (snaps, version, expected) = first_start(parquet_dir()).await;
    for how in [
        "corrupt",
        "truncated",
        "missing",
        "unknown version",
        "version 2",
    ] {
        let here = tempfile::tempdir().expect("tempdir");
        copy_dir(snaps.path(), here.path());
        damage(&here.path().join(CUBE).join(&version), how);
        let started = start(lattice_defs::BANK_CRM_YAML, parquet_dir(), here.path()).await;
        assert_eq!(started.info["origin"], "built", "{how}: {}", started.info);
        assert_eq!(damaged_in(here.path()), vec![version.clone()], "{how}");
        let rebuilt = served_version(&started.info);
        assert_ne!(rebuilt, version, "{how}");
        assert_eq!(versions_in(here.path()), vec![rebuilt], "{how}");
        assert_eq!(answers(&started.server).await, expected, "{how}");
        started.server.stop().await;
    }
}

#[tokio::test]
async fn snapshots_of_another_definition_or_other_data_are_passed_over_and_kept() {
    let data = data_copy();
    let (snaps, first, expected) = first_start(data.path()).await;
    // Another definition (a comment is enough): built, and both versions kept.
    let edited = format!("{}\n# edited\n", lattice_defs::BANK_CRM_YAML);
    let other = start(&edited, data.path(), snaps.path()).await;
    assert_eq!(other.info["origin"], "built", "{}", other.info);
    let second = served_version(&other.info);
    other.server.stop().await;
    assert_eq!(
        versions_in(snaps.path()),
        vec![first.clone(), second.clone()]
    );
    // The shipped definition again: the first version is the newest that matches.
    let again = start(lattice_defs::BANK_CRM_YAML, data.path(), snaps.path()).await;
    assert_eq!(again.info["origin"], "loaded", "{}", again.info);
    assert_eq!(served_version(&again.info), first);
    again.server.stop().await;
    // Rewritten source data (same bytes, a new modification time): nothing matches.
    let file = data.path().join("branch_costs.parquet");
    let bytes = std::fs::read(&file).expect("read");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, bytes).expect("rewrite");
    let fresh = start(lattice_defs::BANK_CRM_YAML, data.path(), snaps.path()).await;
    assert_eq!(fresh.info["origin"], "built", "{}", fresh.info);
    let third = served_version(&fresh.info);
    assert_eq!(answers(&fresh.server).await, expected);
    fresh.server.stop().await;
    assert_eq!(versions_in(snaps.path()), vec![first, second, third]);
    assert!(damaged_in(snaps.path()).is_empty());
}

#[tokio::test]
async fn only_the_newest_versions_are_kept() {
    let built = lattice_server::build_definition(
        lattice_defs::BANK_CRM_YAML.to_string(),
        None,
        Some(parquet_dir()),
        false,
    )
    .await
    .expect("the shipped cube builds");
    let sources = serde_json::to_value(&built.sources).expect("JSON");
    let snaps = tempfile::tempdir().expect("tempdir");
    let cube_dir = snaps.path().join(CUBE);
    let mut written = Vec::new();
    for _ in 0..5 {
        let w = versions::write_version(
            built.data.cube(),
            lattice_defs::BANK_CRM_YAML,
            &sources,
            &cube_dir,
            versions::KEEP,
            written.first().map(|first: &PathBuf| first.as_path()),
        )
        .expect("write");
        written.push(w.info.dir);
    }
    let names: Vec<String> = written
        .iter()
        .map(|d| d.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    // The newest three, and the first: the one being served is never removed.
    assert_eq!(
        versions_in(snaps.path()),
        vec![
            names[0].clone(),
            names[2].clone(),
            names[3].clone(),
            names[4].clone()
        ]
    );
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
}

/// Runs `lattice build --snapshots` and kills it (SIGKILL) at points spread over its write of
/// the snapshot; after each kill the newest snapshot that reads is a whole one (never one that
/// is set aside as damaged), and it holds the cube a build makes. The next writer removes the
/// temporary folders the killed ones left.
#[cfg(unix)]
#[tokio::test]
async fn a_writer_killed_midway_never_leaves_a_damaged_snapshot() {
    let defs = tempfile::tempdir().expect("tempdir");
    let file = defs.path().join("bank_crm.yaml");
    std::fs::write(&file, lattice_defs::BANK_CRM_YAML).expect("write");
    let snaps = tempfile::tempdir().expect("tempdir");
    let cube_dir = snaps.path().join(CUBE);
    let build = |delay_ms: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lattice"));
        cmd.arg("build")
            .arg(&file)
            .arg("--data")
            .arg(parquet_dir())
            .arg("--snapshots")
            .arg(snaps.path())
            .env("LATTICE_SNAPSHOT_WRITE_DELAY_MS", delay_ms)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let reference = lattice_server::build_definition(
        lattice_defs::BANK_CRM_YAML.to_string(),
        Some(&file),
        Some(parquet_dir()),
        false,
    )
    .await
    .expect("the shipped cube builds");
    let model = reference.data.model.clone();
    let sources = serde_json::to_value(load::fingerprint(&model)).expect("JSON");
    assert!(build("0").status().expect("run").success());
    let mut newest = versions_in(snaps.path());
    assert_eq!(newest.len(), 1);
    let mut interrupted = 0;
    for run in 0..8u64 {
        // About 220 files at 3 ms each: the kills land from the first file to past the last.
        let mut child = build("3").spawn().expect("start lattice build");
        let own = format!(".tmp-{}", child.id());
        let waited = Instant::now();
        let writing = loop {
            if temporaries(&cube_dir).iter().any(|t| t.ends_with(&own)) {
                break true;
            }
            if child.try_wait().expect("wait").is_some() || waited.elapsed().as_secs() > 60 {
                break false;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert!(writing, "run {run}: the writer never started a snapshot");
        std::thread::sleep(Duration::from_millis(run * 130));
        // SIGKILL: no destructor, no cleanup.
        let _ = child.kill();
        child.wait().expect("reap");
        if temporaries(&cube_dir).iter().any(|t| t.ends_with(&own)) {
            interrupted += 1;
        }
        let search = versions::find_newest(
            &cube_dir,
            &model,
            lattice_defs::BANK_CRM_YAML,
            Some(&sources),
        )
        .expect("search");
        assert!(
            search.skipped.is_empty(),
            "run {run}: passed over {:?}",
            search.skipped
        );
        let found = search.found.expect("the previous snapshot is still there");
        let now = versions_in(snaps.path());
        assert!(
            found.version >= *newest.last().expect("one"),
            "run {run}: {} is older than {newest:?}",
            found.version
        );
        assert_eq!(Some(&found.version), now.last(), "run {run}");
        assert_eq!(found.cube.levels, reference.data.cube().levels, "run {run}");
        assert_eq!(
            found.cube.cuboids,
            reference.data.cube().cuboids,
            "run {run}"
        );
        newest = now;
    }
    assert!(
        interrupted >= 4,
        "only {interrupted} of 8 kills landed while the snapshot was being written"
    );
    assert!(damaged_in(snaps.path()).is_empty());
    // The next writer removes what the killed ones left, and keeps three versions.
    assert!(build("0").status().expect("run").success());
    assert_eq!(temporaries(&cube_dir), Vec::<String>::new());
    assert!(versions_in(snaps.path()).len() <= versions::KEEP);
}

/// The temporary folders of snapshot writers in `cube_dir`.
fn temporaries(cube_dir: &Path) -> Vec<String> {
    std::fs::read_dir(cube_dir).map_or_else(
        |_| Vec::new(),
        |entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with('.'))
                .collect()
        },
    )
}
