//! Snapshots round-trip a cube exactly, and refuse what they cannot trust.
//!
//! The cube is made by hand (the store may not call the build, see the layer test in
//! `lib.rs`), in the shape a build gives a small bank, with every column kind: decimal sums
//! (a NULL cell, extreme values), counts, distinct member sets, a semi-additive balance, a
//! metric band with per-month codes, an integer key dimension with a dense range, a text key
//! dimension, parent maps with and without a single ancestor, a cuboid without levels and an
//! empty one; and base rows: a fact kept in two ranges of periods (64-bit decimals with NULLs,
//! counts, distinct values with rows of none, a row of no period) and one kept whole (128-bit
//! decimals).

use std::collections::HashMap;
use std::path::Path;

use lattice_defs::Model;
use lattice_defs::model::{Agg, LevelRef, TimeGrain};
use roaring::RoaringBitmap;
use serde_json::{Value, json};

use super::{MANIFEST, read, write};
use crate::error::EngineError;
use crate::store::base::{BaseTable, FactBase, MeasureSpec};
use crate::store::encoding::{DimCodes, Encoding, KeyValue, MetricCodes};
use crate::store::time::NO_PERIOD;
use crate::store::time::TimeAxis;
use crate::store::{Cube, CubeIndex, Cuboid, LevelDict, MeasureColumn, NO_VALUE};

const YAML: &str = r#"
version: 1
cube: bank
sources:
  customers:    { path: customers.csv }
  channels:     { path: channels.csv }
  transactions: { path: transactions.csv }
  balances:     { path: balances.csv }
facts:
  transactions: { time: txn_date, dimensions: [customer, channel] }
  balances:     { time: month_end, dimensions: [customer] }
dimensions:
  time: { type: time, hierarchy: [year, month] }
  customer:
    table: customers
    key: customer_id
    levels:
      province: { column: province }
      city:     { column: city }
      spend_band:
        bucket: { metric: amount, per: [customer, time.month], edges: [100], labels: [low, high] }
    hierarchy: [province, city]
  channel:
    table: channels
    key: channel
    levels:
      channel: { column: channel }
measures:
  amount:    { fact: transactions, agg: sum, column: amount }
  txn_count: { fact: transactions, agg: count }
  customers: { fact: transactions, agg: distinct, column: customer_id }
  balance:   { fact: balances, agg: sum, column: balance, over_time: last }
aggregates:
  mode: explicit
  cuboids: [[customer.city, channel.channel]]
"#;

/// The sources' fingerprints, as `source::load::fingerprint` gives them (the store may not call
/// it): `transactions` is `size` bytes.
fn sources(size: u64) -> Value {
    let one = |name: &str, size: u64| {
        json!({"name": name, "path": format!("/data/{name}.csv"), "size": size,
               "modified_secs": 1_750_000_000u64, "modified_nanos": 5u32})
    };
    json!([
        one("customers", 40),
        one("channels", 20),
        one("transactions", size),
        one("balances", 30)
    ])
}

fn model(text: &str) -> Model {
    lattice_defs::parse_str(text, "bank.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("definition: {e:?}"))
}

fn level(model: &Model, name: &str) -> LevelRef {
    model.level(name).unwrap_or_else(|| panic!("level {name}"))
}

fn names(names: &[&str]) -> LevelDict {
    LevelDict::new(names.iter().map(|n| n.to_string()).collect())
}

fn set(codes: impl IntoIterator<Item = u32>) -> RoaringBitmap {
    codes.into_iter().collect()
}

/// Member names of every level of the model, by qualified name.
fn levels(model: &Model) -> Vec<Vec<LevelDict>> {
    let members: HashMap<&str, LevelDict> = [
        ("time.year", names(&["2025", "unknown"])),
        (
            "time.month",
            names(&["2025-01", "2025-02", "2025-03", "unknown"]),
        ),
        (
            "customer.province",
            names(&["Ontario", "Québec", "unknown"]),
        ),
        (
            "customer.city",
            names(&["Montréal", "Ottawa", "Toronto", "unknown"]),
        ),
        ("customer.spend_band", names(&["low", "high", "unknown"])),
        (
            "channel.channel",
            names(&["", "branch", "online", "unknown"]),
        ),
    ]
    .into_iter()
    .collect();
    (0..model.dimensions.len())
        .map(|d| {
            (0..model.dimensions[d].levels.len())
                .map(|l| members[model.level_name(LevelRef { dim: d, level: l }).as_str()].clone())
                .collect()
        })
        .collect()
}

fn decimal(values: Vec<i128>, valid: Vec<bool>, scale: i8) -> MeasureColumn {
    MeasureColumn::Decimal {
        values: values.into(),
        valid,
        scale,
    }
}

fn cuboids(model: &Model) -> Vec<Cuboid> {
    let (txn, bal) = (
        model.fact("transactions").unwrap(),
        model.fact("balances").unwrap(),
    );
    let m = |n: &str| model.measure(n).unwrap();
    let l = |n: &str| level(model, n);
    let big = set((0..100_000).chain([u32::MAX - 1]));
    vec![
        Cuboid {
            fact: txn,
            levels: vec![l("customer.city"), l("channel.channel")],
            codes: vec![vec![0, 1, 1, 2, 3].into(), vec![1, 0, 2, 2, 3].into()],
            measure_ids: vec![m("amount"), m("txn_count"), m("customers")],
            measures: vec![
                // A NULL cell keeps the value under it; extremes of i128 survive.
                decimal(
                    vec![23_000, 7, i128::MAX, i128::MIN, -1_250],
                    vec![true, false, true, true, true],
                    2,
                ),
                MeasureColumn::Count(vec![2, 1, u64::MAX, 0, 3].into()),
                MeasureColumn::Distinct(vec![set([0]), set([1]), big, set([]), set([3, 7])]),
            ],
            parent: None,
        },
        Cuboid {
            fact: txn,
            levels: vec![l("customer.province")],
            codes: vec![vec![0, 1, 2].into()],
            measure_ids: vec![m("amount"), m("customers")],
            measures: vec![
                decimal(vec![1, 2, 3], vec![true; 3], 2),
                MeasureColumn::Distinct(vec![set([0, 1]), set([2]), set([3])]),
            ],
            parent: Some(0),
        },
        Cuboid {
            fact: bal,
            levels: vec![l("time.month"), l("customer.spend_band")],
            codes: vec![vec![0, 1, 2].into(), vec![0, 1, 1].into()],
            measure_ids: vec![m("balance")],
            measures: vec![decimal(
                vec![500_000, 0, 712_345],
                vec![true, false, true],
                3,
            )],
            parent: None,
        },
        // No levels: one cell, the balance at the latest period.
        Cuboid {
            fact: bal,
            levels: vec![],
            codes: vec![],
            measure_ids: vec![m("balance")],
            measures: vec![decimal(vec![712_345], vec![true], -2)],
            parent: Some(2),
        },
        // Empty.
        Cuboid {
            fact: txn,
            levels: vec![l("customer.spend_band"), l("time.month")],
            codes: vec![vec![].into(), vec![].into()],
            measure_ids: vec![m("txn_count")],
            measures: vec![MeasureColumn::Count(vec![].into())],
            parent: None,
        },
    ]
}

fn spec(agg: Agg, semi: bool) -> MeasureSpec {
    MeasureSpec { agg, semi }
}

/// The base rows of both facts: transactions (customer, channel, period) in two ranges of
/// periods, sorted by customer then period as the build sorts them; balances (customer,
/// period) whole.
fn bases(model: &Model) -> Vec<Option<FactBase>> {
    let m = |n: &str| model.measure(n).unwrap();
    let txn_ids = vec![m("amount"), m("txn_count"), m("customers")];
    let txn_specs = vec![
        spec(Agg::Sum, false),
        spec(Agg::Count, false),
        spec(Agg::Distinct, false),
    ];
    let first = BaseTable {
        codes: vec![
            vec![0, 0, 1, 3].into(),
            vec![1, 2, 0, 3].into(),
            vec![0, 1, 0, 1].into(),
        ],
        measure_ids: txn_ids.clone(),
        specs: txn_specs.clone(),
        measures: vec![
            // A NULL row keeps the value under it; extremes of i64 survive.
            MeasureColumn::Decimal64 {
                values: vec![12_500, 99, i64::MAX, i64::MIN].into(),
                valid: vec![true, false, true, true],
                scale: 2,
            },
            MeasureColumn::Count(vec![2, 1, u64::MAX, 0].into()),
            MeasureColumn::DistinctValues(vec![0, NO_VALUE, 1, 3].into()),
        ],
        fact_rows: 7,
        queries: 1,
        sorted_by: Some(0),
        planned_rows: None,
        periods_present: None,
    };
    let second = BaseTable {
        codes: vec![
            vec![1, 2].into(),
            vec![2, 0].into(),
            vec![2, NO_PERIOD].into(),
        ],
        measure_ids: txn_ids,
        specs: txn_specs,
        measures: vec![
            MeasureColumn::Decimal64 {
                values: vec![-1_250, 0].into(),
                valid: vec![true, false],
                scale: 2,
            },
            MeasureColumn::Count(vec![3, 1].into()),
            MeasureColumn::DistinctValues(vec![NO_VALUE, 2].into()),
        ],
        fact_rows: 4,
        queries: 1,
        sorted_by: Some(0),
        planned_rows: None,
        periods_present: None,
    };
    let balances = BaseTable {
        codes: vec![vec![0, 1, 2].into(), vec![0, 0, 2].into()],
        measure_ids: vec![m("balance")],
        specs: vec![spec(Agg::Sum, true)],
        measures: vec![decimal(
            vec![i128::MAX, 7, i128::MIN],
            vec![true, false, true],
            3,
        )],
        fact_rows: 3,
        queries: 1,
        sorted_by: None,
        planned_rows: Some(3),
        periods_present: Some(set([0, 2])),
    };
    let mut out: Vec<Option<FactBase>> = model.facts.iter().map(|_| None).collect();
    out[model.fact("transactions").unwrap()] =
        Some(FactBase::new(vec![first, second], set([0, 1, 2])));
    out[model.fact("balances").unwrap()] = Some(FactBase::new(vec![balances], set([0, 2])));
    out
}

fn customer_codes() -> DimCodes {
    let key_map = (1..=4)
        .map(|k| (KeyValue::Int(k), (k - 1) as u32))
        .collect();
    DimCodes {
        n_keys: 4,
        key_map,
        integer_key: true,
        dense: Some((1, vec![0, 1, 2, 3])),
        by_key: vec![Some(vec![0, 0, 0, 1, 2]), Some(vec![1, 2, 2, 0, 3]), None],
        metric: vec![
            None,
            None,
            Some(MetricCodes {
                grain: Some(TimeGrain::Month),
                first: 2025 * 12,
                periods: 3,
                codes: vec![0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 2, 2, 2],
                unknown: 2,
            }),
        ],
    }
}

fn channel_codes() -> DimCodes {
    let keys = ["", "branch", "online", "🙂"];
    DimCodes {
        n_keys: keys.len(),
        key_map: (0..)
            .zip(keys)
            .map(|(c, k)| (KeyValue::Text(k.to_string()), c))
            .collect(),
        integer_key: false,
        dense: None,
        by_key: vec![Some(vec![0, 1, 2, 3, 3])],
        metric: vec![None],
    }
}

fn encoding(model: &Model) -> Encoding {
    let (time, customer) = (
        level(model, "time.month").dim,
        level(model, "customer.city").dim,
    );
    let channel = level(model, "channel.channel").dim;
    let mut codes: Vec<Option<DimCodes>> = (0..model.dimensions.len()).map(|_| None).collect();
    codes[customer] = Some(customer_codes());
    codes[channel] = Some(channel_codes());
    let mut via = vec![None; model.dimensions.len()];
    via[channel] = Some(vec![2, 0, 1]);
    Encoding {
        time: Some(TimeAxis {
            grain: TimeGrain::Month,
            first: 2025 * 12,
            len: 3,
        }),
        codes,
        via,
        dicts: Vec::new(),
        parents: [
            ((customer, 1, 0), Some(vec![1, 0, 0, 2])),
            ((customer, 2, 0), None),
            ((time, 1, 0), Some(vec![0, 0, 0, 1])),
        ]
        .into_iter()
        .collect(),
    }
}

/// The hand-made bank cube, indexed as the build leaves it.
fn cube() -> Cube {
    let model = model(YAML);
    let (time, customer) = (
        level(&model, "time.month").dim,
        level(&model, "customer.city").dim,
    );
    let index = CubeIndex {
        parents: [
            ((customer, 1, 0), vec![1, 0, 0, 2]),
            ((time, 1, 0), vec![0, 0, 0, 1]),
        ]
        .into_iter()
        .collect(),
        finest_time: Some(level(&model, "time.month")),
        present: vec![set([0, 1, 2]), set([0, 2])],
        scales: vec![2, 0, 0, 3],
        ..CubeIndex::default()
    };
    let mut cube = Cube {
        levels: levels(&model),
        cuboids: cuboids(&model),
        encoding: encoding(&model),
        bases: bases(&model),
        index,
        model,
    };
    cube.index_cuboids();
    cube
}

fn assert_same(read: &Cube, written: &Cube) {
    assert_eq!(read.model.name, written.model.name);
    assert_eq!(read.levels, written.levels);
    assert_eq!(read.cuboids, written.cuboids);
    assert_eq!(read.index, written.index);
    assert_eq!(read.encoding, written.encoding);
    assert_eq!(read.bases, written.bases);
}

/// Writes the cube into `<tempdir>/snap`; returns the temp dir and the cube.
fn written() -> (tempfile::TempDir, Cube) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cube = cube();
    write(&cube, YAML, &sources(123), &dir.path().join("snap")).expect("write");
    (dir, cube)
}

fn read_error(dir: &Path, definition: &str) -> String {
    read_error_over(dir, definition, &sources(123))
}

fn read_error_over(dir: &Path, definition: &str, sources: &Value) -> String {
    match read(&dir.join("snap"), model(definition), definition, sources) {
        Ok(_) => panic!("the snapshot was read"),
        Err(e @ EngineError::Snapshot { .. }) => e.to_string(),
        Err(e) => panic!("not a snapshot error: {e}"),
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_snapshot_reads_back_equal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cube = cube();
    let snap = dir.path().join("snap");
    let info = write(&cube, YAML, &sources(123), &snap).expect("write");
    assert_eq!((info.cuboids, info.cells), (5, 12));
    assert_eq!(info.memory_bytes, cube.memory_bytes() as u64);
    assert!(info.files > 10 && info.file_bytes > 0, "{info:?}");
    assert_same(
        &read(&snap, model(YAML), YAML, &sources(123)).expect("read"),
        &cube,
    );
    // Each part of each base is a file.
    let files = entries(&snap);
    for base in ["base-0-0.arrow", "base-0-1.arrow", "base-1-0.arrow"] {
        assert!(files.contains(&base.to_string()), "{files:?}");
    }
    // Only the snapshot remains: no temporary folder.
    assert_eq!(entries(dir.path()), ["snap"]);
}

#[test]
fn a_second_write_replaces_the_first() {
    let (dir, mut cube) = written();
    cube.cuboids.truncate(2);
    cube.index_cuboids();
    let info = write(&cube, YAML, &sources(456), &dir.path().join("snap")).expect("rewrite");
    assert_eq!(info.cuboids, 2);
    assert_same(
        &read(&dir.path().join("snap"), model(YAML), YAML, &sources(456)).expect("read"),
        &cube,
    );
    assert_eq!(entries(dir.path()), ["snap"]);
    assert!(!entries(&dir.path().join("snap")).contains(&"cuboid-0002.arrow".to_string()));
}

#[test]
fn a_corrupt_file_is_refused_by_name() {
    let (dir, _) = written();
    let path = dir.path().join("snap/cuboid-0000.arrow");
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).expect("write");
    let error = read_error(dir.path(), YAML);
    assert!(
        error.contains("cuboid-0000.arrow") && error.contains("checksum mismatch"),
        "{error}"
    );
}

#[test]
fn a_truncated_file_is_refused_by_name() {
    let (dir, _) = written();
    let path = dir.path().join("snap/levels.arrow");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 9]).expect("write");
    let error = read_error(dir.path(), YAML);
    assert!(
        error.contains("levels.arrow") && error.contains("truncated"),
        "{error}"
    );
}

#[test]
fn an_unknown_version_is_refused_by_number() {
    let (dir, _) = written();
    let path = dir.path().join("snap").join(MANIFEST);
    let text = std::fs::read_to_string(&path).expect("read");
    let newer = text.replacen(
        "\"format_version\": 4,",
        "\"format_version\": 7, \"shiny\": [],",
        1,
    );
    std::fs::write(&path, newer).expect("write");
    let error = read_error(dir.path(), YAML);
    assert!(
        error.contains("format version 7") && error.contains("reads version 3, 4"),
        "{error}"
    );
    // Version 2 kept no base rows: refused the same way, so that it is rebuilt.
    let older = text.replacen("\"format_version\": 4,", "\"format_version\": 2,", 1);
    std::fs::write(&path, older).expect("write");
    let error = read_error(dir.path(), YAML);
    assert!(
        error.contains("format version 2") && error.contains("reads version 3, 4"),
        "{error}"
    );
}

/// A format 3 snapshot (sha256 checksums, a base row without a distinct value stored as a
/// null) still reads back equal. It is made here from a format 4 one by undoing what changed.
#[test]
fn a_format_3_snapshot_reads_back_equal() {
    use arrow::array::{Array, ArrayRef, UInt32Array};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;
    use sha2::{Digest, Sha256};
    use std::sync::Arc;

    let (dir, cube) = written();
    let snap = dir.path().join("snap");
    let path = snap.join(MANIFEST);
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    manifest["format_version"] = json!(3);
    let mut nulls = 0;
    for part in manifest["bases"]
        .as_array()
        .expect("bases")
        .iter()
        .flat_map(|b| b["parts"].as_array().into_iter().flatten())
    {
        let file = snap.join(part["file"].as_str().expect("file"));
        let keys = part["keys"].as_u64().expect("keys") as usize;
        let batch = arrow::ipc::reader::FileReader::try_new(
            std::fs::File::open(&file).expect("open"),
            None,
        )
        .expect("ipc")
        .next()
        .expect("one batch")
        .expect("batch");
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (j, m) in part["measures"]
            .as_array()
            .expect("measures")
            .iter()
            .enumerate()
        {
            if m["kind"] == "values" {
                let values = columns[keys + j]
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("u32");
                let old: UInt32Array = values
                    .iter()
                    .map(|v| v.filter(|v| *v != NO_VALUE))
                    .collect();
                nulls += old.null_count();
                columns[keys + j] = Arc::new(old);
                fields[keys + j] = fields[keys + j].clone().with_nullable(true);
            }
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch");
        let mut writer = arrow::ipc::writer::FileWriter::try_new(
            std::fs::File::create(&file).expect("create"),
            &batch.schema(),
        )
        .expect("writer");
        writer.write(&batch).expect("write");
        writer.finish().expect("finish");
    }
    assert!(
        nulls > 0,
        "the test cube's base has rows without a distinct value"
    );
    for (name, entry) in manifest["files"].as_object_mut().expect("files") {
        let bytes = std::fs::read(snap.join(name)).expect("read");
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        *entry = json!({ "bytes": bytes.len(), "sha256": sha });
    }
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&manifest).expect("json"),
    )
    .expect("write");
    assert_same(
        &read(&snap, model(YAML), YAML, &sources(123)).expect("read"),
        &cube,
    );
    // The sha256 is checked as the xxh3 is.
    let file = snap.join("levels.arrow");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[20] ^= 0x01;
    std::fs::write(&file, bytes).expect("write");
    let error = read_error(dir.path(), YAML);
    assert!(
        error.contains("levels.arrow") && error.contains("checksum mismatch (sha256"),
        "{error}"
    );
}

/// A file's checksum is the same whether its bytes come to the writer in any slices or are
/// read back piece by piece (on every core), at every length around a piece's edge.
#[test]
fn a_checksum_by_pieces_is_the_same_written_and_read() {
    use super::{PieceHasher, of_pieces, piece_digest};
    let data: Vec<u8> = (0..100u32).map(|i| (i * 7 % 251) as u8).collect();
    let size = 16;
    for len in [0, 1, 15, 16, 17, 32, 33, 100] {
        let data = &data[..len];
        let mut written = PieceHasher::new(size);
        for slice in data.chunks(5) {
            written.update(slice);
        }
        let digests: Vec<u8> = (0..len.div_ceil(size))
            .flat_map(|p| piece_digest(data, size, p))
            .collect();
        assert_eq!(written.finish(), of_pieces(&digests), "{len} bytes");
    }
    // One byte changed anywhere changes it.
    let mut other = data.clone();
    other[40] ^= 1;
    let whole = |d: &[u8]| {
        let mut h = PieceHasher::new(size);
        h.update(d);
        h.finish()
    };
    assert_ne!(whole(&data), whole(&other));
}

#[test]
fn a_cube_without_base_rows_reads_back_without_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snap = dir.path().join("snap");
    let mut cube = cube();
    cube.bases = Vec::new();
    write(&cube, YAML, &sources(123), &snap).expect("write");
    assert!(!entries(&snap).iter().any(|f| f.starts_with("base-")));
    let back = read(&snap, model(YAML), YAML, &sources(123)).expect("read");
    assert!(back.bases.is_empty());
    assert_same(&back, &cube);

    // One fact's base kept, the other's not: `null` in the manifest, `None` read back.
    let mut cube = self::cube();
    cube.bases[model(YAML).fact("balances").unwrap()] = None;
    write(&cube, YAML, &sources(123), &snap).expect("write");
    assert_eq!(
        entries(&snap)
            .into_iter()
            .filter(|f| f.starts_with("base-"))
            .collect::<Vec<_>>(),
        ["base-0-0.arrow", "base-0-1.arrow"]
    );
    assert_same(
        &read(&snap, model(YAML), YAML, &sources(123)).expect("read"),
        &cube,
    );
}

#[test]
fn a_base_file_unlike_its_manifest_entry_is_refused_by_name() {
    let (dir, _) = written();
    let path = dir.path().join("snap").join(MANIFEST);
    let text = std::fs::read_to_string(&path).expect("read");
    let mut manifest: Value = serde_json::from_str(&text).expect("json");
    let part = &mut manifest["bases"][0]["parts"][1];
    assert_eq!(part["file"], "base-0-1.arrow");
    assert_eq!(part["rows"], 2);
    part["rows"] = json!(3);
    std::fs::write(&path, manifest.to_string()).expect("write");
    let error = read_error(dir.path(), YAML);
    assert!(
        error.contains("base-0-1.arrow") && error.contains("does not hold the 3 rows"),
        "{error}"
    );

    // A column of another type than its kind says.
    manifest["bases"][0]["parts"][1]["rows"] = json!(2);
    manifest["bases"][0]["parts"][1]["measures"][1]["kind"] = json!("values");
    std::fs::write(&path, manifest.to_string()).expect("write");
    let error = read_error(dir.path(), YAML);
    assert!(
        error.contains("base-0-1.arrow") && error.contains("column 4 is missing or not"),
        "{error}"
    );
}

#[test]
fn a_changed_definition_is_refused() {
    let (dir, _) = written();
    let changed = YAML.replace("edges: [100]", "edges: [250]");
    let error = read_error(dir.path(), &changed);
    assert!(error.contains("the definition changed"), "{error}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let (dir, _) = written();
    std::fs::remove_file(dir.path().join("snap/present.arrow")).expect("remove");
    let error =
        read(&dir.path().join("snap"), model(YAML), YAML, &sources(123)).expect_err("refused");
    assert!(error.to_string().contains("present.arrow"), "{error}");
}

#[test]
fn the_manifest_records_the_sources_as_given() {
    let (dir, _) = written();
    let text = std::fs::read_to_string(dir.path().join("snap").join(MANIFEST)).expect("read");
    let manifest: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(manifest["format_version"], 4);
    assert_eq!(manifest["sources"], sources(123));
}

#[test]
fn changed_sources_are_refused_naming_the_first_that_changed() {
    let (dir, _) = written();
    let error = read_error_over(dir.path(), YAML, &sources(456));
    assert!(
        error.contains("source 'transactions' changed since the snapshot: size 123 -> 456")
            && error.contains("rebuild the snapshot"),
        "{error}"
    );

    let mut touched = sources(123);
    touched[0]["modified_nanos"] = json!(6);
    touched[3]["size"] = Value::Null;
    let error = read_error_over(dir.path(), YAML, &touched);
    assert!(
        error.contains("source 'customers' changed since the snapshot: modified_nanos 5 -> 6"),
        "{error}"
    );

    let mut gone = sources(123);
    gone.as_array_mut().expect("array").remove(1);
    let error = read_error_over(dir.path(), YAML, &gone);
    assert!(
        error.contains("source 'channels' is in the snapshot but no longer a source"),
        "{error}"
    );

    let mut more = sources(123);
    more.as_array_mut()
        .expect("array")
        .push(json!({"name": "branches", "path": "/data/branches.csv"}));
    let error = read_error_over(dir.path(), YAML, &more);
    assert!(
        error.contains("source 'branches' is not in the snapshot"),
        "{error}"
    );
}
