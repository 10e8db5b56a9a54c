//! Random small cubes over random facts, every cuboid against the SQL reference.
//!
//! Each case draws a definition (1-3 dimensions with column levels, a functional two-level
//! hierarchy now and then, a dimension reached `via` another, column buckets with random
//! edges and labels, sometimes a metric bucket; random measures, some semi-additive; 1-4
//! explicit cuboids, the grand total among the possibilities) and data (0-199 fact rows with
//! negative amounts, NULLs and keys missing from their dimension table), writes it as CSV or
//! Parquet, builds the cube and checks every cuboid with [`crate::reference::check_cube`].
//!
//! A failure prints the case (seed, rows, dimensions), the YAML and every table as CSV. To
//! replay one case: `LATTICE_CASE=seed,rows,dims cargo test --test it replay_random_cube --
//! --ignored --nocapture`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use lattice_engine::build::{BuildOptions, build_cube};
use lattice_engine::source::load::load;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use crate::reference::{check_cube, describe_cuboid, reference_cells};

/// A column type of a generated table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Int,
    /// decimal(18, 2) in Parquet; a number with 2 places in CSV.
    Dec2,
    Date,
    Text,
}

impl ColType {
    fn arrow(self) -> DataType {
        match self {
            ColType::Int => DataType::Int64,
            ColType::Dec2 => DataType::Decimal128(18, 2),
            ColType::Date => DataType::Date32,
            ColType::Text => DataType::Utf8,
        }
    }
}

/// A column: its values as text, `None` for NULL.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
    pub values: Vec<Option<String>>,
}

/// A generated table, written as CSV or as Parquet (with exact types).
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn new(name: &str) -> Self {
        Table {
            name: name.into(),
            columns: Vec::new(),
        }
    }

    pub fn column(mut self, name: &str, ty: ColType, values: Vec<Option<String>>) -> Self {
        self.columns.push(Column {
            name: name.into(),
            ty,
            values,
        });
        self
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    /// The table as CSV: a header, then one line per row (NULL is an empty field).
    pub fn csv(&self) -> String {
        let mut out = self
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
        for r in 0..self.rows() {
            let fields: Vec<&str> = self
                .columns
                .iter()
                .map(|c| c.values[r].as_deref().unwrap_or(""))
                .collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }

    /// Writes `dir/<name>.parquet` with the columns' exact types.
    pub fn write_parquet(&self, dir: &Path) {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.arrow(), true))
            .collect();
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|c| {
                let text: ArrayRef = Arc::new(StringArray::from(c.values.clone()));
                arrow::compute::cast(&text, &c.ty.arrow()).expect("cast generated column")
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch");
        let file = std::fs::File::create(dir.join(format!("{}.parquet", self.name)))
            .expect("create parquet");
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
        writer.write(&batch).expect("write parquet");
        writer.close().expect("close parquet");
    }

    /// Writes `dir/<name>.csv`.
    pub fn write_csv(&self, dir: &Path) {
        std::fs::write(dir.join(format!("{}.csv", self.name)), self.csv()).expect("write csv");
    }
}

/// Whether time hierarchies may end in `day` (one case in ten does).
const DAY_GRAIN: bool = true;

/// splitmix64: a small deterministic generator, so that a case is its seed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// `-12.05` from cents.
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        cents.unsigned_abs() / 100,
        cents.unsigned_abs() % 100
    )
}

/// Strictly ascending edges (1-4) between `lo` and `hi`, with 0-2 decimals.
fn edges(rng: &mut Rng, lo: i64, hi: i64) -> Vec<String> {
    let n = 1 + rng.below(4);
    let mut cents: Vec<i64> = (0..n)
        .map(|_| {
            let whole = rng.range(lo, hi) * 100;
            match rng.below(3) {
                0 => whole,
                1 => whole + 50,
                _ => whole + rng.range(1, 99),
            }
        })
        .collect();
    cents.sort_unstable();
    cents.dedup();
    cents
        .into_iter()
        .map(|c| {
            if c % 100 == 0 {
                (c / 100).to_string()
            } else {
                money(c)
            }
        })
        .collect()
}

/// `bucket: {...}` with edges and, half the time, labels of our own.
fn bucket_yaml(rng: &mut Rng, source: &str, edges: &[String]) -> String {
    let mut yaml = format!("{{ {source}, edges: [{}]", edges.join(", "));
    if rng.chance(0.5) {
        let labels: Vec<String> = (0..=edges.len()).map(|i| format!("\"b{i}\"")).collect();
        write!(yaml, ", labels: [{}]", labels.join(", ")).unwrap();
    }
    yaml.push_str(" }");
    yaml
}

/// A generated case: the definition and its tables.
#[derive(Debug)]
pub(crate) struct Case {
    pub yaml: String,
    pub tables: Vec<Table>,
    pub parquet: bool,
    /// The explicit cuboids, as level names.
    pub cuboids: Vec<Vec<String>>,
}

impl Case {
    pub(crate) fn describe(&self) -> String {
        let mut out = format!(
            "format: {}\n--- test.yaml\n{}\n",
            if self.parquet { "parquet" } else { "csv" },
            self.yaml
        );
        for t in &self.tables {
            if self.parquet {
                write!(out, "--- {}.parquet, as CSV\n{}", t.name, t.csv()).unwrap();
            } else {
                write!(out, "--- {}.csv\n{}", t.name, t.csv()).unwrap();
            }
        }
        out
    }
}

/// One dimension table's generated shape.
struct DimGen {
    members: usize,
    /// Index of the dimension whose table carries this one's key (`via`).
    via: Option<usize>,
}

pub(crate) fn generate(seed: u64, fact_rows: usize, n_dims: usize) -> Case {
    let mut rng = Rng(seed);
    let mut yaml = String::from("version: 1\ncube: random\n");
    let mut dims: Vec<DimGen> = (0..n_dims)
        .map(|_| DimGen {
            members: 1 + rng.below(6),
            via: None,
        })
        .collect();
    // Sometimes the last dimension is reached through the first (a customer's region).
    if n_dims > 1 && rng.chance(0.35) {
        dims[n_dims - 1].via = Some(0);
    }
    let grains = ["year", "quarter", "month", "day"];
    let time_levels: Vec<&str> = {
        let mut t: Vec<&str> = grains[..3]
            .iter()
            .copied()
            .filter(|_| rng.chance(0.6))
            .collect();
        if DAY_GRAIN && rng.chance(0.1) {
            t.push("day");
        }
        if t.is_empty() {
            t.push(*rng.pick(&grains[..3]));
        }
        t
    };
    let finest_time = *time_levels.last().expect("a time level");

    // A key of dimension `d` as a fact (or carrier) carries it: mostly members, sometimes a
    // key missing from the dimension table, rarely NULL.
    let key_value = |rng: &mut Rng, d: &DimGen| -> Option<String> {
        if rng.chance(0.04) {
            None
        } else if rng.chance(0.06) {
            Some((d.members + 1).to_string())
        } else {
            Some(rng.range(1, d.members as i64).to_string())
        }
    };

    // Dimension tables.
    let mut tables = Vec::new();
    let mut dim_yaml = String::new();
    let mut all_levels: Vec<String> = time_levels.iter().map(|l| format!("time.{l}")).collect();
    let mut bucket_dims = Vec::new();
    for (i, d) in dims.iter().enumerate() {
        let n = d.members;
        let hierarchy = rng.chance(0.4);
        // Names may repeat across members; the group is a function of the name, so the
        // hierarchy [grp, name] is functional. In a hierarchy the name is never NULL.
        let name_of: Vec<usize> = (0..n).map(|_| rng.below(4)).collect();
        // Names with this index have no group (never the first row's: CSV infers types from
        // the values, and a column needs one).
        let mut null_group = rng.below(5);
        if null_group == name_of[0] {
            null_group = 4;
        }
        let names: Vec<Option<String>> = name_of
            .iter()
            .enumerate()
            .map(|(j, &r)| (j == 0 || hierarchy || !rng.chance(0.2)).then(|| format!("n{i}_{r}")))
            .collect();
        let groups: Vec<Option<String>> = name_of
            .iter()
            .map(|&r| (r != null_group).then(|| format!("g{i}_{}", r % 2)))
            .collect();
        let numeric_int = rng.chance(0.3);
        let vals: Vec<Option<String>> = (0..n)
            .map(|j| {
                (j == 0 || !rng.chance(0.2)).then(|| {
                    if numeric_int {
                        rng.range(-60, 160).to_string()
                    } else {
                        money(rng.range(-6000, 16000))
                    }
                })
            })
            .collect();
        let mut t = Table::new(&format!("dim{i}"))
            .column(
                &format!("k{i}"),
                ColType::Int,
                (1..=n).map(|k| Some(k.to_string())).collect(),
            )
            .column(&format!("name{i}"), ColType::Text, names)
            .column(&format!("grp{i}"), ColType::Text, groups)
            .column(
                &format!("val{i}"),
                if numeric_int {
                    ColType::Int
                } else {
                    ColType::Dec2
                },
                vals,
            );
        // The carrier of a `via` dimension's key.
        for (j, other) in dims.iter().enumerate() {
            if other.via == Some(i) {
                let keys = (0..n)
                    .map(|r| {
                        if r == 0 {
                            Some("1".to_string())
                        } else {
                            key_value(&mut rng, other)
                        }
                    })
                    .collect();
                t = t.column(&format!("k{j}"), ColType::Int, keys);
            }
        }
        tables.push(t);

        let mut levels = Vec::new();
        if hierarchy || rng.chance(0.7) {
            levels.push(format!("name: {{ column: name{i} }}"));
        }
        if hierarchy || rng.chance(0.4) {
            levels.push(format!("grp: {{ column: grp{i} }}"));
        }
        if rng.chance(0.3) {
            levels.push(format!("id: {{ column: k{i} }}"));
        }
        if rng.chance(0.6) || levels.is_empty() {
            let e = edges(&mut rng, -50, 150);
            let b = bucket_yaml(&mut rng, &format!("column: val{i}"), &e);
            levels.push(format!("band: {{ bucket: {b} }}"));
        }
        for l in &levels {
            all_levels.push(format!("d{i}.{}", l.split(':').next().unwrap()));
        }
        bucket_dims.push(i);
        write!(
            dim_yaml,
            "  d{i}:\n    table: dim{i}\n    key: k{i}\n{}    levels:\n",
            d.via.map_or(String::new(), |v| format!("    via: d{v}\n"))
        )
        .unwrap();
        for l in &levels {
            writeln!(dim_yaml, "      {l}").unwrap();
        }
        if hierarchy {
            dim_yaml.push_str("    hierarchy: [grp, name]\n");
        }
    }

    // The fact table.
    let b_column = rng.chance(0.5);
    let mut fact = Table::new("facts").column(
        "day",
        ColType::Date,
        (0..fact_rows)
            .map(|_| {
                let month = rng.below(18); // 2024-01 .. 2025-06
                if rng.chance(0.03) {
                    return None; // a fact without a date belongs to `unknown` in time
                }
                Some(format!(
                    "{}-{:02}-{:02}",
                    2024 + month / 12,
                    month % 12 + 1,
                    1 + rng.below(28)
                ))
            })
            .collect(),
    );
    let mut direct = Vec::new();
    for (i, d) in dims.iter().enumerate() {
        if d.via.is_some() {
            continue;
        }
        direct.push(format!("d{i}"));
        let keys = (0..fact_rows)
            .map(|r| {
                if r == 0 {
                    Some("1".to_string())
                } else {
                    key_value(&mut rng, d)
                }
            })
            .collect();
        fact = fact.column(&format!("k{i}"), ColType::Int, keys);
    }
    let amounts = |rng: &mut Rng, null: f64| -> Vec<Option<String>> {
        (0..fact_rows)
            .map(|r| (r == 0 || !rng.chance(null)).then(|| money(rng.range(-5000, 10000))))
            .collect()
    };
    let a = amounts(&mut rng, 0.15);
    fact = fact.column("a", ColType::Dec2, a);
    if b_column {
        let b = amounts(&mut rng, 0.3);
        fact = fact.column("b", ColType::Dec2, b);
    }
    let q = (0..fact_rows)
        .map(|r| (r == 0 || !rng.chance(0.1)).then(|| rng.range(0, 9).to_string()))
        .collect();
    fact = fact.column("q", ColType::Int, q);
    tables.push(fact);

    // Measures.
    let mut templates: Vec<(&str, Option<&str>)> = vec![
        ("sum", Some("a")),
        ("count", None),
        ("count", Some("a")),
        ("min", Some("a")),
        ("max", Some("a")),
        ("sum", Some("q")),
        ("min", Some("q")),
        ("distinct", Some("q")),
        ("distinct", Some("k0")),
    ];
    if b_column {
        templates.extend([("sum", Some("b")), ("max", Some("b"))]);
    }
    if dims[0].via.is_some() {
        templates.retain(|t| t.1 != Some("k0"));
    }
    let n_measures = 1 + rng.below(5);
    // (name, agg, semi-additive)
    let mut measures: Vec<(String, &str, bool)> = Vec::new();
    let mut measure_yaml = String::new();
    for m in 0..n_measures {
        let (agg, column) = *rng.pick(&templates);
        let last = agg != "distinct" && rng.chance(0.3);
        write!(measure_yaml, "  m{m}: {{ fact: facts, agg: {agg}").unwrap();
        if let Some(c) = column {
            write!(measure_yaml, ", column: {c}").unwrap();
        }
        if last {
            measure_yaml.push_str(", over_time: last");
        }
        measure_yaml.push_str(" }\n");
        measures.push((format!("m{m}"), agg, last));
    }

    // Sometimes a metric bucket: a measure per entity (and period), bucketed.
    if rng.chance(0.5) {
        let i = *rng.pick(&bucket_dims);
        let (name, agg, last) = rng.pick(&measures).clone();
        // A semi-additive metric is taken per finest period (within it, a plain aggregate).
        let per = if last {
            format!(", time.{finest_time}")
        } else {
            match rng.below(3) {
                0 => String::new(),
                _ => format!(", time.{}", rng.pick(&time_levels)),
            }
        };
        let e = if matches!(agg, "count" | "distinct") {
            edges(&mut rng, 0, 6)
        } else {
            edges(&mut rng, -50, 150)
        };
        let b = bucket_yaml(&mut rng, &format!("metric: {name}, per: [d{i}{per}]"), &e);
        let at = dim_yaml
            .find(&format!("  d{i}:\n"))
            .and_then(|s| dim_yaml[s..].find("    levels:\n").map(|p| s + p + 12))
            .expect("levels of the dimension");
        dim_yaml.insert_str(at, &format!("      mband: {{ bucket: {b} }}\n"));
        all_levels.push(format!("d{i}.mband"));
    }

    // 1-4 explicit cuboids over random levels (possibly none: the grand total).
    let mut cuboids: Vec<Vec<String>> = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let size = rng.below(4.min(all_levels.len() + 1));
        let mut c: Vec<String> = Vec::new();
        while c.len() < size {
            let l = rng.pick(&all_levels).clone();
            if !c.contains(&l) {
                c.push(l);
            }
        }
        if !cuboids.contains(&c) {
            cuboids.push(c);
        }
    }

    // A fact with no rows cannot be CSV: its columns' types could not be inferred.
    let parquet = fact_rows == 0 || rng.chance(0.5);
    let ext = if parquet { "parquet" } else { "csv" };
    yaml.push_str("sources:\n");
    for t in &tables {
        writeln!(yaml, "  {0}: {{ path: {0}.{ext} }}", t.name).unwrap();
    }
    writeln!(
        yaml,
        "facts:\n  facts: {{ time: day, dimensions: [{}] }}",
        direct.join(", ")
    )
    .unwrap();
    writeln!(
        yaml,
        "dimensions:\n  time: {{ type: time, hierarchy: [{}] }}",
        time_levels.join(", ")
    )
    .unwrap();
    yaml.push_str(&dim_yaml);
    yaml.push_str("measures:\n");
    yaml.push_str(&measure_yaml);
    yaml.push_str("aggregates:\n  mode: explicit\n  cuboids:\n");
    for c in &cuboids {
        writeln!(yaml, "    - [{}]", c.join(", ")).unwrap();
    }
    Case {
        yaml,
        tables,
        parquet,
        cuboids,
    }
}

/// Builds one case and checks it; the error says what went wrong, with the case.
async fn run_case(seed: u64, rows: usize, dims: usize) -> Result<(), String> {
    let case = generate(seed, rows, dims);
    let fail = |what: String| {
        format!(
            "case seed={seed} rows={rows} dims={dims}: {what}\n{}",
            case.describe()
        )
    };
    let dir = tempfile::Builder::new()
        .prefix("lattice-random-")
        .tempdir()
        .expect("tempdir");
    for t in &case.tables {
        if case.parquet {
            t.write_parquet(dir.path());
        } else {
            t.write_csv(dir.path());
        }
    }
    let model = lattice_defs::parse_str(&case.yaml, "test.yaml", dir.path())
        .map_err(|d| fail(format!("the definition does not validate:\n{d}")))?;
    let sources = load(&model).await.map_err(|e| fail(format!("load: {e}")))?;
    // Half the cases read the fact a few ranges of periods at a time: streamed through the
    // scan where the fact allows it, else whole by several queries.
    let options = BuildOptions {
        base_range_rows: seed.is_multiple_of(2).then_some((rows as u64 / 4).max(1)),
        ..BuildOptions::default()
    };
    let cube = build_cube(&model, &sources, &options)
        .await
        .map_err(|e| fail(format!("build: {e}")))?;
    let fact = model.fact("facts").expect("fact");
    for c in &case.cuboids {
        let levels: Vec<_> = c.iter().map(|l| model.level(l).expect("level")).collect();
        if cube.cuboid(fact, &levels).is_none() {
            let built: Vec<String> = cube
                .cuboids()
                .iter()
                .map(|c| describe_cuboid(&model, c.fact(), c.levels()))
                .collect();
            return Err(fail(format!(
                "explicit cuboid [{}] was not built; built: {built:?}",
                c.join(", ")
            )));
        }
    }
    check_cube(&cube, &sources.ctx).await.map_err(fail)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::util::proptest_cases(24),
        // The case is its seed, printed on failure; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_cubes_equal_sql(seed in any::<u64>(), rows in 0usize..200, dims in 1usize..=3) {
        let result = crate::util::block_on(run_case(seed, rows, dims));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// Every generated definition validates and loads, and the reference puts each fact row of
/// every cuboid in one cell (a check of the generator and of the reference, without the
/// build).
#[test]
fn random_definitions_validate_and_load() {
    let mut rng = Rng(42);
    for _ in 0..40 {
        let (seed, rows, dims) = (rng.next(), rng.below(200), 1 + rng.below(3));
        let case = generate(seed, rows, dims);
        let dir = tempfile::tempdir().expect("tempdir");
        for t in &case.tables {
            if case.parquet {
                t.write_parquet(dir.path());
            } else {
                t.write_csv(dir.path());
            }
        }
        let model =
            lattice_defs::parse_str(&case.yaml, "test.yaml", dir.path()).unwrap_or_else(|d| {
                panic!(
                    "seed={seed} rows={rows} dims={dims}: {d}\n{}",
                    case.describe()
                )
            });
        crate::util::block_on(async {
            let sources = load(&model).await.unwrap_or_else(|e| {
                panic!(
                    "seed={seed} rows={rows} dims={dims}: load: {e}\n{}",
                    case.describe()
                )
            });
            // The reference runs on every cuboid and puts each fact row in one cell.
            let fact = model.fact("facts").expect("fact");
            for c in &case.cuboids {
                let levels: Vec<_> = c.iter().map(|l| model.level(l).expect("level")).collect();
                let cells = reference_cells(&model, &sources.ctx, fact, &levels).await;
                assert_eq!(
                    cells.iter().map(|(_, n)| *n as usize).sum::<usize>(),
                    rows,
                    "seed={seed} rows={rows} dims={dims}: cuboid {c:?}\n{}",
                    case.describe()
                );
            }
        });
    }
}

/// Replays one case: `LATTICE_CASE=seed,rows,dims`.
#[test]
#[ignore = "replays the case named by LATTICE_CASE"]
fn replay_random_cube() {
    let spec = std::env::var("LATTICE_CASE").expect("LATTICE_CASE=seed,rows,dims");
    let parts: Vec<u64> = spec
        .split(',')
        .map(|p| p.trim().parse().expect("a number"))
        .collect();
    let [seed, rows, dims] = parts[..] else {
        panic!("LATTICE_CASE=seed,rows,dims");
    };
    let case = generate(seed, rows as usize, dims as usize);
    println!("{}", case.describe());
    if let Err(e) = crate::util::block_on(run_case(seed, rows as usize, dims as usize)) {
        panic!("{e}");
    }
}
