//! The store as Arrow columns: what goes in which file, and back. The layout of every file is
//! in `docs/snapshots.md`; each file holds one record batch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Decimal128Array, Int64Array, LargeBinaryArray, LargeListArray,
    LargeStringArray, UInt8Array, UInt32Array, UInt64Array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use lattice_defs::Model;
use roaring::RoaringBitmap;

use super::manifest::{
    self, Axis, BaseEntry, BaseMeasure, BasePart, CuboidEntry, Dimension, Manifest, Metric, Stats,
};
use super::{FORMAT_VERSION, Folder, FolderWriter, bad};
use crate::error::Result;
use crate::store::base::{BaseTable, FactBase, MeasureSpec};
use crate::store::encoding::{DimCodes, Encoding, KeyValue, MetricCodes};
use crate::store::time::TimeAxis;
use crate::store::{Column, Cube, CubeIndex, Cuboid, LevelDict, MeasureColumn, NO_VALUE};

const LEVELS: &str = "levels.arrow";
const DICTS: &str = "dicts.arrow";
const PARENTS: &str = "parents.arrow";
const ENCODING_PARENTS: &str = "encoding-parents.arrow";
const PRESENT: &str = "present.arrow";
const VIA: &str = "via.arrow";

/// A row of a lists file: its keys and its codes (`None`: a null list).
type ListRow = (Vec<usize>, Option<Vec<u32>>);

/// Parent-map rows: `(dim, child, ancestor)` and the ancestor code per child code.
type ParentRows = HashMap<(usize, usize, usize), Option<Vec<u32>>>;

/// Writes every column file of `cube`; returns the manifest without the definition's hash and
/// the file list (the caller adds them).
pub(super) fn write_cube(out: &mut FolderWriter, cube: &Cube) -> Result<Manifest> {
    put(out, LEVELS, levels_columns(&cube.levels))?;
    put(out, DICTS, levels_columns(&cube.encoding.dicts))?;
    let index_parents = cube.index.parents.iter();
    put(
        out,
        PARENTS,
        parents_columns(index_parents.map(|(k, v)| (*k, Some(v.as_slice())))),
    )?;
    let parents = cube.encoding.parents.iter();
    put(
        out,
        ENCODING_PARENTS,
        parents_columns(parents.map(|(k, v)| (*k, v.as_deref()))),
    )?;
    put(out, PRESENT, bitmap_columns("fact", &cube.index.present))?;
    let via = cube.encoding.via.iter().enumerate();
    put(
        out,
        VIA,
        lists_columns(
            &["dim"],
            via.map(|(d, v)| (vec![d], v.as_deref())).collect(),
        ),
    )?;
    let dimensions = write_dimensions(out, &cube.encoding)?;
    let cuboids = write_cuboids(out, cube)?;
    let bases = write_bases(out, cube)?;
    Ok(Manifest {
        format_version: FORMAT_VERSION,
        cube: cube.model.name.clone(),
        definition_sha256: String::new(),
        written_by: format!("lattice-engine {}", env!("CARGO_PKG_VERSION")),
        stats: Stats {
            cuboids: cube.cuboids.len(),
            cells: cube.cuboids.iter().map(|c| c.len() as u64).sum(),
            memory_bytes: cube.memory_bytes() as u64,
            file_bytes: 0,
        },
        levels: shape(&cube.levels),
        dicts: shape(&cube.encoding.dicts),
        finest_time: cube.index.finest_time.map(manifest::level_pair),
        scales: cube.index.scales.clone(),
        time: cube.encoding.time.as_ref().map(|t| Axis {
            grain: manifest::grain_name(t.grain),
            first: t.first,
            len: t.len,
        }),
        dimensions,
        cuboids,
        bases,
        files: Default::default(),
    })
}

/// Reads the cube a checked folder holds, for `model`.
pub(super) fn read_cube(folder: &Folder, m: &Manifest, model: Model) -> Result<Cube> {
    check_shape(folder, m, &model)?;
    let index = CubeIndex {
        parents: read_parents(folder, PARENTS)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        finest_time: m.finest_time.map(manifest::level_ref),
        present: read_bitmaps(folder, PRESENT)?,
        scales: m.scales.clone(),
        ..CubeIndex::default()
    };
    // The base rows and the key encoding on one thread (their summaries and key maps are
    // built as they are read), the cuboids on every core (their member sets deserialized).
    let (cuboids, rest) = std::thread::scope(|scope| {
        let rest = scope.spawn(|| -> Result<_> {
            let bases = m
                .bases
                .iter()
                .map(|b| b.as_ref().map(|b| read_base(folder, b)).transpose())
                .collect::<Result<Vec<_>>>()?;
            let encoding = Encoding {
                time: read_axis(folder, m)?,
                codes: read_dimensions(folder, m)?,
                via: read_lists(folder, VIA, 1)?
                    .into_iter()
                    .map(|r| r.1)
                    .collect(),
                dicts: read_levels(folder, DICTS, &m.dicts)?,
                parents: read_parents(folder, ENCODING_PARENTS)?,
            };
            Ok((bases, encoding, read_levels(folder, LEVELS, &m.levels)?))
        });
        let cuboids = super::on_every_core(&m.cuboids, |c| read_cuboid(folder, c))
            .into_iter()
            .zip(&m.cuboids)
            .map(|(r, c)| {
                r.unwrap_or_else(|| Err(bad(&folder.path(&c.file), "could not be read".into())))
            })
            .collect::<Result<Vec<_>>>();
        (cuboids, rest.join())
    });
    let (bases, encoding, levels) = rest.unwrap_or_else(|_| {
        Err(bad(
            &folder.path(super::MANIFEST),
            "its base rows could not be read".into(),
        ))
    })?;
    let mut cube = Cube {
        levels,
        model,
        cuboids: cuboids?,
        index,
        encoding,
        bases,
    };
    cube.index_cuboids();
    Ok(cube)
}

/// The manifest's levels, cuboids, base tables and measures lie within the model (the
/// definition's hash matched, so a mismatch means a manifest edited by hand).
fn check_shape(folder: &Folder, m: &Manifest, model: &Model) -> Result<()> {
    let dims: Vec<usize> = model.dimensions.iter().map(|d| d.levels.len()).collect();
    let level_ok = |[d, l]: [usize; 2]| dims.get(d).is_some_and(|n| l < *n);
    // A base table has a code column per direct dimension of its fact, then the period.
    let part_ok = |f: usize, p: &BasePart| {
        let direct = model.facts[f].direct.len();
        p.keys == direct + 1
            && p.sorted_by.is_none_or(|k| k < direct)
            && p.measures.iter().all(|c| c.id < model.measures.len())
    };
    let ok = m.levels.iter().map(Vec::len).eq(dims.iter().copied())
        && m.finest_time.is_none_or(level_ok)
        && m.cuboids.iter().all(|c| {
            c.fact < model.facts.len()
                && c.levels.iter().all(|l| level_ok(*l))
                && c.measure_ids.iter().all(|id| *id < model.measures.len())
        })
        && (m.bases.is_empty() || m.bases.len() == model.facts.len())
        && m.bases.iter().enumerate().all(|(f, b)| {
            b.as_ref()
                .is_none_or(|b| b.parts.iter().all(|p| part_ok(f, p)))
        });
    match ok {
        true => Ok(()),
        false => Err(bad(
            &folder.path(super::MANIFEST),
            "does not match the definition's dimensions, levels, facts or measures".to_string(),
        )),
    }
}

/// The columns of one file, in order.
#[derive(Default)]
struct Columns {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
    rows: usize,
}

impl Columns {
    fn rows(rows: usize) -> Columns {
        Columns {
            rows,
            ..Columns::default()
        }
    }

    fn push(mut self, name: &str, array: ArrayRef, nullable: bool) -> Columns {
        self.fields
            .push(Field::new(name, array.data_type().clone(), nullable));
        self.arrays.push(array);
        self
    }

    fn batch(self) -> std::result::Result<RecordBatch, ArrowError> {
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(self.fields)), self.arrays, &options)
    }
}

/// Writes `columns` as the file `name`.
fn put(
    out: &mut FolderWriter,
    name: &str,
    columns: std::result::Result<Columns, ArrowError>,
) -> Result<()> {
    let path = out.dir.join(name);
    let batch = columns
        .and_then(Columns::batch)
        .map_err(|e| bad(&path, format!("arrow: {e}")))?;
    out.batch(name, &batch)
}

/// A column of `batch` as the array type `T`.
fn col<'a, T: Array + 'static>(batch: &'a RecordBatch, i: usize, path: &Path) -> Result<&'a T> {
    batch
        .columns()
        .get(i)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            let want = std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("?");
            bad(path, format!("column {i} is missing or not {want}"))
        })
}

fn u64s(values: impl IntoIterator<Item = usize>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(
        values.into_iter().map(|v| v as u64),
    ))
}

fn shape(levels: &[Vec<LevelDict>]) -> Vec<Vec<usize>> {
    levels
        .iter()
        .map(|d| d.iter().map(LevelDict::len).collect())
        .collect()
}

/// `levels.arrow` / `dicts.arrow`: `dim`, `level`, `name`, one row per member in code order.
fn levels_columns(levels: &[Vec<LevelDict>]) -> std::result::Result<Columns, ArrowError> {
    let members = || {
        levels.iter().enumerate().flat_map(|(d, ls)| {
            ls.iter()
                .enumerate()
                .flat_map(move |(l, dict)| dict.names.iter().map(move |n| (d, l, n.as_str())))
        })
    };
    let names: LargeStringArray = members().map(|m| Some(m.2)).collect();
    Ok(Columns::rows(names.len())
        .push("dim", u64s(members().map(|m| m.0)), false)
        .push("level", u64s(members().map(|m| m.1)), false)
        .push("name", Arc::new(names), false))
}

fn read_levels(folder: &Folder, name: &str, shape: &[Vec<usize>]) -> Result<Vec<Vec<LevelDict>>> {
    let path = folder.path(name);
    let batch = folder.batch(name)?;
    let (dims, levels) = (col(&batch, 0, &path)?, col(&batch, 1, &path)?);
    let names: &LargeStringArray = col(&batch, 2, &path)?;
    let mut row = 0;
    let mut out = Vec::new();
    for (d, counts) in shape.iter().enumerate() {
        let mut dicts = Vec::new();
        for (l, n) in counts.iter().enumerate() {
            let end = row + n;
            if end > batch.num_rows()
                || (row..end).any(|r| usizes_at(dims, r) != d || usizes_at(levels, r) != l)
            {
                return Err(bad(
                    &path,
                    format!("does not hold the members of level {d}.{l}"),
                ));
            }
            dicts.push(LevelDict::new(
                (row..end).map(|r| names.value(r).to_string()).collect(),
            ));
            row = end;
        }
        out.push(dicts);
    }
    match row == batch.num_rows() {
        true => Ok(out),
        false => Err(bad(
            &path,
            "holds more members than the manifest".to_string(),
        )),
    }
}

fn usizes_at(array: &UInt64Array, row: usize) -> usize {
    array.value(row) as usize
}

/// Rows of key columns (`u64`) and a nullable list of codes, as a file's columns.
fn lists_columns(
    keys: &[&str],
    mut rows: Vec<(Vec<usize>, Option<&[u32]>)>,
) -> std::result::Result<Columns, ArrowError> {
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut columns = Columns::rows(rows.len());
    for (k, key) in keys.iter().enumerate() {
        columns = columns.push(key, u64s(rows.iter().map(|r| r.0[k])), false);
    }
    let lists = rows.iter().map(|r| r.1.unwrap_or_default());
    let offsets = OffsetBuffer::<i64>::from_lengths(lists.clone().map(<[u32]>::len));
    let values = UInt32Array::from_iter_values(lists.flatten().copied());
    let nulls = NullBuffer::from(rows.iter().map(|r| r.1.is_some()).collect::<Vec<_>>());
    let item = Arc::new(Field::new_list_field(DataType::UInt32, false));
    let list = LargeListArray::try_new(item, offsets, Arc::new(values), Some(nulls))?;
    Ok(columns.push("codes", Arc::new(list), true))
}

/// The rows of a file written by [`lists_columns`] with `keys` key columns.
fn read_lists(folder: &Folder, name: &str, keys: usize) -> Result<Vec<ListRow>> {
    let path = folder.path(name);
    let batch = folder.batch(name)?;
    let key_columns = (0..keys)
        .map(|k| col::<UInt64Array>(&batch, k, &path))
        .collect::<Result<Vec<_>>>()?;
    let lists: &LargeListArray = col(&batch, keys, &path)?;
    let values: &UInt32Array = lists
        .values()
        .as_any()
        .downcast_ref()
        .ok_or_else(|| bad(&path, "holds lists of another type than u32".to_string()))?;
    let offsets = lists.value_offsets();
    Ok((0..batch.num_rows())
        .map(|r| {
            let key = key_columns.iter().map(|c| usizes_at(c, r)).collect();
            let (start, end) = (offsets[r] as usize, offsets[r + 1] as usize);
            let codes = lists
                .is_valid(r)
                .then(|| values.values()[start..end].to_vec());
            (key, codes)
        })
        .collect())
}

/// `parents.arrow` / `encoding-parents.arrow`: `dim`, `child`, `ancestor`, `codes`.
fn parents_columns<'a>(
    maps: impl Iterator<Item = ((usize, usize, usize), Option<&'a [u32]>)>,
) -> std::result::Result<Columns, ArrowError> {
    let rows = maps.map(|((d, c, a), v)| (vec![d, c, a], v)).collect();
    lists_columns(&["dim", "child", "ancestor"], rows)
}

fn read_parents(folder: &Folder, name: &str) -> Result<ParentRows> {
    Ok(read_lists(folder, name, 3)?
        .into_iter()
        .map(|(k, v)| ((k[0], k[1], k[2]), v))
        .collect())
}

/// `present.arrow`: a key column and a roaring bitmap (portable serialization) per row.
fn bitmap_columns(key: &str, sets: &[RoaringBitmap]) -> std::result::Result<Columns, ArrowError> {
    Ok(Columns::rows(sets.len())
        .push(key, u64s(0..sets.len()), false)
        .push("bitmap", Arc::new(serialize_sets(sets)), false))
}

fn serialize_sets(sets: &[RoaringBitmap]) -> LargeBinaryArray {
    LargeBinaryArray::from_iter_values(sets.iter().map(|b| {
        let mut bytes = Vec::with_capacity(b.serialized_size());
        b.serialize_into(&mut bytes)
            .expect("writing into a Vec cannot fail");
        bytes
    }))
}

fn deserialize_sets(array: &LargeBinaryArray, path: &Path) -> Result<Vec<RoaringBitmap>> {
    array
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            RoaringBitmap::deserialize_from(bytes.unwrap_or_default()).map_err(|e| {
                bad(
                    path,
                    format!("the member set of row {i} is not a bitmap: {e}"),
                )
            })
        })
        .collect()
}

fn read_bitmaps(folder: &Folder, name: &str) -> Result<Vec<RoaringBitmap>> {
    let path = folder.path(name);
    let batch = folder.batch(name)?;
    deserialize_sets(col(&batch, 1, &path)?, &path)
}

fn read_axis(folder: &Folder, m: &Manifest) -> Result<Option<TimeAxis>> {
    let path = folder.path(super::MANIFEST);
    m.time
        .as_ref()
        .map(|t| {
            Ok(TimeAxis {
                grain: manifest::grain(&path, &t.grain)?,
                first: t.first,
                len: t.len,
            })
        })
        .transpose()
}

fn dim_file(d: usize, what: &str) -> String {
    format!("dim-{d}-{what}.arrow")
}

/// The `dim-<d>-*.arrow` files of every table dimension, and their manifest entries.
fn write_dimensions(out: &mut FolderWriter, encoding: &Encoding) -> Result<Vec<Option<Dimension>>> {
    let mut entries = Vec::new();
    for (d, codes) in encoding.codes.iter().enumerate() {
        let entry = codes
            .as_ref()
            .map(|c| write_dimension(out, d, c))
            .transpose()?;
        entries.push(entry);
    }
    Ok(entries)
}

fn write_dimension(out: &mut FolderWriter, d: usize, codes: &DimCodes) -> Result<Dimension> {
    put(out, &dim_file(d, "keys"), keys_columns(&codes.key_map))?;
    if let Some((_, dense)) = &codes.dense {
        let column = Arc::new(UInt32Array::from(dense.clone()));
        put(
            out,
            &dim_file(d, "dense"),
            Ok(Columns::rows(dense.len()).push("code", column, false)),
        )?;
    }
    let by_key = codes.by_key.iter().enumerate();
    let rows = by_key.map(|(l, v)| (vec![l], v.as_deref())).collect();
    put(out, &dim_file(d, "levels"), lists_columns(&["level"], rows))?;
    let mut metric = Vec::new();
    for (l, m) in codes.metric.iter().enumerate() {
        metric.push(m.as_ref().map(|m| write_metric(out, d, l, m)).transpose()?);
    }
    Ok(Dimension {
        n_keys: codes.n_keys,
        integer_key: codes.integer_key,
        dense_first: codes.dense.as_ref().map(|(first, _)| *first),
        metric,
    })
}

fn write_metric(out: &mut FolderWriter, d: usize, l: usize, m: &MetricCodes) -> Result<Metric> {
    let column = Arc::new(UInt8Array::from(m.codes.clone()));
    let columns = Columns::rows(m.codes.len()).push("band", column, false);
    put(out, &dim_file(d, &format!("metric-{l}")), Ok(columns))?;
    Ok(Metric {
        grain: m.grain.map(manifest::grain_name),
        first: m.first,
        periods: m.periods,
        unknown: m.unknown,
    })
}

/// `dim-<d>-keys.arrow`: `int` (nullable), `text` (nullable), `code`, in code order.
fn keys_columns(keys: &HashMap<KeyValue, u32>) -> std::result::Result<Columns, ArrowError> {
    let mut rows: Vec<(&KeyValue, u32)> = keys.iter().map(|(k, c)| (k, *c)).collect();
    rows.sort_by_key(|(k, c)| (*c, format!("{k:?}")));
    let ints = Int64Array::from_iter(rows.iter().map(|(k, _)| match k {
        KeyValue::Int(i) => Some(*i),
        KeyValue::Text(_) => None,
    }));
    let texts = LargeStringArray::from_iter(rows.iter().map(|(k, _)| match k {
        KeyValue::Int(_) => None,
        KeyValue::Text(t) => Some(t.as_str()),
    }));
    let codes = UInt32Array::from_iter_values(rows.iter().map(|r| r.1));
    Ok(Columns::rows(rows.len())
        .push("int", Arc::new(ints), true)
        .push("text", Arc::new(texts), true)
        .push("code", Arc::new(codes), false))
}

fn read_keys(folder: &Folder, name: &str) -> Result<HashMap<KeyValue, u32>> {
    let path = folder.path(name);
    let batch = folder.batch(name)?;
    let ints: &Int64Array = col(&batch, 0, &path)?;
    let texts: &LargeStringArray = col(&batch, 1, &path)?;
    let codes: &UInt32Array = col(&batch, 2, &path)?;
    (0..batch.num_rows())
        .map(|r| {
            let key = match (ints.is_valid(r), texts.is_valid(r)) {
                (true, _) => KeyValue::Int(ints.value(r)),
                (false, true) => KeyValue::Text(texts.value(r).to_string()),
                (false, false) => return Err(bad(&path, format!("row {r} has no key"))),
            };
            Ok((key, codes.value(r)))
        })
        .collect()
}

fn read_dimensions(folder: &Folder, m: &Manifest) -> Result<Vec<Option<DimCodes>>> {
    m.dimensions
        .iter()
        .enumerate()
        .map(|(d, entry)| {
            entry
                .as_ref()
                .map(|e| read_dimension(folder, d, e))
                .transpose()
        })
        .collect()
}

fn read_dimension(folder: &Folder, d: usize, e: &Dimension) -> Result<DimCodes> {
    let dense = match e.dense_first {
        Some(first) => {
            let name = dim_file(d, "dense");
            let batch = folder.batch(&name)?;
            let codes: &UInt32Array = col(&batch, 0, &folder.path(&name))?;
            Some((first, codes.values().to_vec()))
        }
        None => None,
    };
    let by_key = read_lists(folder, &dim_file(d, "levels"), 1)?;
    let metric = e.metric.iter().enumerate();
    Ok(DimCodes {
        n_keys: e.n_keys,
        key_map: read_keys(folder, &dim_file(d, "keys"))?,
        integer_key: e.integer_key,
        dense,
        by_key: by_key.into_iter().map(|r| r.1).collect(),
        metric: metric
            .map(|(l, m)| m.as_ref().map(|m| read_metric(folder, d, l, m)).transpose())
            .collect::<Result<_>>()?,
    })
}

fn read_metric(folder: &Folder, d: usize, l: usize, m: &Metric) -> Result<MetricCodes> {
    let name = dim_file(d, &format!("metric-{l}"));
    let path = folder.path(&name);
    let batch = folder.batch(&name)?;
    let codes: &UInt8Array = col(&batch, 0, &path)?;
    Ok(MetricCodes {
        grain: m
            .grain
            .as_deref()
            .map(|g| manifest::grain(&path, g))
            .transpose()?,
        first: m.first,
        periods: m.periods,
        codes: codes.values().to_vec(),
        unknown: m.unknown,
    })
}

/// `cuboid-<i>.arrow` for every cuboid, and their manifest entries.
fn write_cuboids(out: &mut FolderWriter, cube: &Cube) -> Result<Vec<CuboidEntry>> {
    let mut entries = Vec::new();
    for (i, c) in cube.cuboids.iter().enumerate() {
        let file = format!("cuboid-{i:04}.arrow");
        let kinds = c
            .measures
            .iter()
            .map(|m| measure_kind(m).map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                let message = "holds a base-table measure column (Decimal64 or DistinctValues)";
                bad(&out.dir.join(&file), message.to_string())
            })?;
        put(out, &file, cuboid_columns(&cube.model, c))?;
        entries.push(CuboidEntry {
            file,
            fact: c.fact,
            levels: c.levels.iter().copied().map(manifest::level_pair).collect(),
            measure_ids: c.measure_ids.clone(),
            kinds,
            parent: c.parent,
            cells: c.len(),
        });
    }
    Ok(entries)
}

fn measure_kind(m: &MeasureColumn) -> Option<&'static str> {
    match m {
        MeasureColumn::Decimal { .. } => Some("decimal"),
        MeasureColumn::Count(_) => Some("count"),
        MeasureColumn::Distinct(_) => Some("distinct"),
        MeasureColumn::Decimal64 { .. } | MeasureColumn::DistinctValues(_) => None,
    }
}

/// A code column per level (named `dimension.level`), then a column per measure (named as
/// the measure): Decimal128 (null where not valid), UInt64, or LargeBinary member sets.
fn cuboid_columns(model: &Model, c: &Cuboid) -> std::result::Result<Columns, ArrowError> {
    let mut columns = Columns::rows(c.len());
    for (level, codes) in c.levels.iter().zip(&c.codes) {
        let name = model.level_name(*level);
        columns = columns.push(
            &name,
            Arc::new(UInt32Array::new(codes.to_buffer(), None)),
            false,
        );
    }
    for (id, m) in c.measure_ids.iter().zip(&c.measures) {
        let name = model
            .measures
            .get(*id)
            .map_or("measure", |m| m.name.as_str());
        columns = match m {
            MeasureColumn::Decimal {
                values,
                valid,
                scale,
            } => {
                let nulls = Some(NullBuffer::from(valid.clone()));
                let array = Decimal128Array::try_new(values.to_buffer(), nulls)?
                    .with_precision_and_scale(38, *scale)?;
                columns.push(name, Arc::new(array), true)
            }
            MeasureColumn::Count(v) => {
                columns.push(name, Arc::new(UInt64Array::new(v.to_buffer(), None)), false)
            }
            MeasureColumn::Distinct(sets) => {
                columns.push(name, Arc::new(serialize_sets(sets)), false)
            }
            // Refused by the caller.
            MeasureColumn::Decimal64 { .. } | MeasureColumn::DistinctValues(_) => columns,
        };
    }
    Ok(columns)
}

fn read_cuboid(folder: &Folder, c: &CuboidEntry) -> Result<Cuboid> {
    let path = folder.path(&c.file);
    let batch = folder.batch(&c.file)?;
    let n = c.levels.len();
    if batch.num_rows() != c.cells
        || batch.num_columns() != n + c.kinds.len()
        || c.kinds.len() != c.measure_ids.len()
    {
        return Err(bad(
            &path,
            format!(
                "does not hold the {} cells and columns of its manifest entry",
                c.cells
            ),
        ));
    }
    let codes = (0..n)
        .map(|k| col::<UInt32Array>(&batch, k, &path).map(|a| Column::from(a.values().clone())))
        .collect::<Result<Vec<_>>>()?;
    let measures = c
        .kinds
        .iter()
        .enumerate()
        .map(|(j, kind)| read_measure(&batch, n + j, kind, &path))
        .collect::<Result<Vec<_>>>()?;
    Ok(Cuboid {
        fact: c.fact,
        levels: c.levels.iter().copied().map(manifest::level_ref).collect(),
        codes,
        measure_ids: c.measure_ids.clone(),
        measures,
        parent: c.parent,
    })
}

/// Per row of `a`: whether it holds a value.
fn valid_flags(a: &dyn Array) -> Vec<bool> {
    match a.logical_nulls() {
        Some(nulls) => nulls.iter().collect(),
        None => vec![true; a.len()],
    }
}

fn read_measure(batch: &RecordBatch, i: usize, kind: &str, path: &Path) -> Result<MeasureColumn> {
    Ok(match kind {
        "decimal" => {
            let a: &Decimal128Array = col(batch, i, path)?;
            MeasureColumn::Decimal {
                values: Column::from(a.values().clone()),
                valid: valid_flags(a),
                scale: a.scale(),
            }
        }
        "count" => MeasureColumn::Count(Column::from(
            col::<UInt64Array>(batch, i, path)?.values().clone(),
        )),
        "distinct" => MeasureColumn::Distinct(deserialize_sets(col(batch, i, path)?, path)?),
        other => {
            return Err(bad(
                path,
                format!("measure column {i} has an unknown kind '{other}'"),
            ));
        }
    })
}

/// `base-<fact>-<part>.arrow` for every part of every kept base, and their manifest entries:
/// one per fact, or none when the cube keeps no base rows.
fn write_bases(out: &mut FolderWriter, cube: &Cube) -> Result<Vec<Option<BaseEntry>>> {
    if cube.bases.is_empty() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for f in 0..cube.model.facts.len() {
        let Some(base) = cube.bases.get(f).and_then(Option::as_ref) else {
            entries.push(None);
            continue;
        };
        let parts = base
            .parts
            .iter()
            .enumerate()
            .map(|(p, table)| write_base_part(out, &cube.model, f, p, table))
            .collect::<Result<Vec<_>>>()?;
        entries.push(Some(BaseEntry {
            periods: base.periods.iter().collect(),
            parts,
        }));
    }
    Ok(entries)
}

fn write_base_part(
    out: &mut FolderWriter,
    model: &Model,
    fact: usize,
    part: usize,
    t: &BaseTable,
) -> Result<BasePart> {
    let file = format!("base-{fact}-{part}.arrow");
    let path = out.dir.join(&file);
    if t.specs.len() != t.measures.len() || t.measure_ids.len() != t.measures.len() {
        return Err(bad(
            &path,
            format!(
                "would hold {} measure columns for {} measure ids and {} specs",
                t.measures.len(),
                t.measure_ids.len(),
                t.specs.len()
            ),
        ));
    }
    let measures = t
        .measure_ids
        .iter()
        .zip(&t.specs)
        .zip(&t.measures)
        .map(|((id, spec), column)| {
            let (kind, scale) = base_kind(column)?;
            Some(BaseMeasure {
                id: *id,
                agg: manifest::agg_name(spec.agg),
                semi: spec.semi,
                kind: kind.to_string(),
                scale,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            let message = "holds a cuboid measure column (member sets) in a base table";
            bad(&path, message.to_string())
        })?;
    put(out, &file, base_columns(model, fact, t))?;
    Ok(BasePart {
        file,
        rows: t.len(),
        keys: t.codes.len(),
        sorted_by: t.sorted_by,
        fact_rows: t.fact_rows,
        queries: t.queries,
        planned_rows: t.planned_rows,
        periods_present: t.periods_present.as_ref().map(|p| p.iter().collect()),
        measures,
    })
}

/// A base measure column's kind and decimal scale; `None` for member sets, which only
/// cuboids hold.
fn base_kind(m: &MeasureColumn) -> Option<(&'static str, Option<i8>)> {
    match m {
        MeasureColumn::Decimal64 { scale, .. } => Some(("decimal64", Some(*scale))),
        MeasureColumn::Decimal { scale, .. } => Some(("decimal", Some(*scale))),
        MeasureColumn::Count(_) => Some(("count", None)),
        MeasureColumn::DistinctValues(_) => Some(("values", None)),
        MeasureColumn::Distinct(_) => None,
    }
}

/// A `UInt32` code column per key (named as its dimension), then `period`; then a column per
/// measure (named as the measure): Int64 (null where not valid; the scale is in the
/// manifest), Decimal128 (null where not valid), UInt64, or UInt32 values ([`NO_VALUE`] for
/// none; format 3 wrote a null, which a reader still takes).
fn base_columns(
    model: &Model,
    fact: usize,
    t: &BaseTable,
) -> std::result::Result<Columns, ArrowError> {
    let mut columns = Columns::rows(t.len());
    let direct = &model.facts[fact].direct;
    for (k, codes) in t.codes.iter().enumerate() {
        let name = match direct.get(k) {
            _ if k + 1 == t.codes.len() => "period".to_string(),
            Some(d) => model.dimensions[*d].name.clone(),
            None => format!("key-{k}"),
        };
        columns = columns.push(
            &name,
            Arc::new(UInt32Array::new(codes.to_buffer(), None)),
            false,
        );
    }
    for (id, m) in t.measure_ids.iter().zip(&t.measures) {
        let name = model
            .measures
            .get(*id)
            .map_or("measure", |m| m.name.as_str());
        columns = match m {
            MeasureColumn::Decimal64 { values, valid, .. } => {
                let nulls = Some(NullBuffer::from(valid.clone()));
                let array = Int64Array::try_new(values.to_buffer(), nulls)?;
                columns.push(name, Arc::new(array), true)
            }
            MeasureColumn::Decimal {
                values,
                valid,
                scale,
            } => {
                let nulls = Some(NullBuffer::from(valid.clone()));
                let array = Decimal128Array::try_new(values.to_buffer(), nulls)?
                    .with_precision_and_scale(38, *scale)?;
                columns.push(name, Arc::new(array), true)
            }
            MeasureColumn::Count(v) => {
                columns.push(name, Arc::new(UInt64Array::new(v.to_buffer(), None)), false)
            }
            // As kept, NO_VALUE and all, so that a reader takes the column as it is.
            MeasureColumn::DistinctValues(v) => {
                columns.push(name, Arc::new(UInt32Array::new(v.to_buffer(), None)), false)
            }
            // Refused by the caller.
            MeasureColumn::Distinct(_) => columns,
        };
    }
    Ok(columns)
}

/// A fact's base: its parts, and the periods the manifest records.
fn read_base(folder: &Folder, e: &BaseEntry) -> Result<FactBase> {
    let parts = e
        .parts
        .iter()
        .map(|p| read_base_part(folder, p))
        .collect::<Result<Vec<_>>>()?;
    Ok(FactBase::new(parts, e.periods.iter().copied().collect()))
}

fn read_base_part(folder: &Folder, p: &BasePart) -> Result<BaseTable> {
    let path = folder.path(&p.file);
    let batch = folder.batch(&p.file)?;
    if batch.num_rows() != p.rows || batch.num_columns() != p.keys + p.measures.len() {
        return Err(bad(
            &path,
            format!(
                "does not hold the {} rows and {} columns of its manifest entry",
                p.rows,
                p.keys + p.measures.len()
            ),
        ));
    }
    let codes = (0..p.keys)
        .map(|k| col::<UInt32Array>(&batch, k, &path).map(|a| Column::from(a.values().clone())))
        .collect::<Result<Vec<_>>>()?;
    let mut specs = Vec::new();
    let mut measures = Vec::new();
    for (j, m) in p.measures.iter().enumerate() {
        specs.push(MeasureSpec {
            agg: manifest::agg(&path, &m.agg)?,
            semi: m.semi,
        });
        measures.push(read_base_measure(&batch, p.keys + j, m, &path)?);
    }
    Ok(BaseTable {
        codes,
        measure_ids: p.measures.iter().map(|m| m.id).collect(),
        specs,
        measures,
        fact_rows: p.fact_rows,
        queries: p.queries,
        sorted_by: p.sorted_by,
        planned_rows: p.planned_rows,
        periods_present: p
            .periods_present
            .as_ref()
            .map(|v| v.iter().copied().collect()),
    })
}

fn read_base_measure(
    batch: &RecordBatch,
    i: usize,
    m: &BaseMeasure,
    path: &Path,
) -> Result<MeasureColumn> {
    let no_scale = || bad(path, format!("measure column {i} has no scale"));
    Ok(match m.kind.as_str() {
        "decimal64" => {
            let a: &Int64Array = col(batch, i, path)?;
            MeasureColumn::Decimal64 {
                values: Column::from(a.values().clone()),
                valid: valid_flags(a),
                scale: m.scale.ok_or_else(no_scale)?,
            }
        }
        "decimal" => {
            let a: &Decimal128Array = col(batch, i, path)?;
            if m.scale != Some(a.scale()) {
                return Err(bad(
                    path,
                    format!(
                        "measure column {i} has scale {} where the manifest says {:?}",
                        a.scale(),
                        m.scale
                    ),
                ));
            }
            MeasureColumn::Decimal {
                values: Column::from(a.values().clone()),
                valid: valid_flags(a),
                scale: a.scale(),
            }
        }
        "count" => MeasureColumn::Count(Column::from(
            col::<UInt64Array>(batch, i, path)?.values().clone(),
        )),
        "values" => {
            let a: &UInt32Array = col(batch, i, path)?;
            if a.null_count() == 0 {
                MeasureColumn::DistinctValues(Column::from(a.values().clone()))
            } else {
                MeasureColumn::DistinctValues(a.iter().map(|v| v.unwrap_or(NO_VALUE)).collect())
            }
        }
        other => {
            return Err(bad(
                path,
                format!("measure column {i} has an unknown kind '{other}'"),
            ));
        }
    })
}
