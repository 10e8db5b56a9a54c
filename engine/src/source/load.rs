//! Loading: register the sources a [`Model`] names with DataFusion, check their schemas against
//! the definition, and check what only the data can show: that dimension keys are unique and
//! that each hierarchy step is functional (a city lies under one province).
//!
//! CSV has no types; DataFusion infers them, and any column it infers as a float is read as an
//! exact `Decimal128(38, 6)` instead, so money from CSV stays exact to the cent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::options::ReadOptions;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use lattice_defs::model::{
    Bucket, BucketSource, ColumnRef, Cuts, Decimal, Dimension, DimensionKind, Level, LevelKind,
    SourceFormat,
};
use lattice_defs::{
    Catalog, ColumnType, DefError, Diagnostic, Diagnostics, Model, Pos, TableSchema,
    allocation_schema, check_catalog,
};
use tracing::{debug, instrument};

use super::allocate::{AllocationReport, allocate_all};
use super::files::{self, Layout, SourceFiles};

use crate::{EngineError, Result};

/// Scale CSV fractions are read at: exact for money (2) and for rates up to 6 places.
pub const CSV_DECIMAL_SCALE: i8 = 6;

/// The sources of a model, registered with a DataFusion session under their table names, and
/// the schemas that were checked against the definition.
pub struct Sources {
    pub ctx: SessionContext,
    pub catalog: Catalog,
    /// What each of the definition's allocations did (their tables are registered in `ctx`).
    pub allocations: Vec<AllocationReport>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

/// What a source's files were when they were looked at: its name in the definition, where
/// they are, their size and modification time. A snapshot records these (`store::snapshot`, as
/// the manifest's `sources`) so that a reader can tell a snapshot made from other data.
///
/// A source of one file: its path, size and modification time. A source of a folder or a glob
/// (`source::files`): its location, the total size, the newest modification time, and `files`,
/// each file with its own, so that a new month's file (or a rewritten one) changes it.
///
/// A source with no file at its path (or whose metadata cannot be read) is recorded, not
/// refused: `size` and both `modified_*` are `None` (`null` in JSON), so the fingerprint of a
/// missing file differs from that of any file that was there. `modified_*` are also `None`
/// where the system gives no modification time, or one before the epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceFingerprint {
    pub name: String,
    pub path: String,
    /// Bytes (of all its files).
    pub size: Option<u64>,
    /// Modification time (the newest of its files), whole seconds since the Unix epoch.
    pub modified_secs: Option<u64>,
    /// Modification time, the nanoseconds after `modified_secs`.
    pub modified_nanos: Option<u32>,
    /// A folder's or a glob's files, in path order; absent for a source of one file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileFingerprint>>,
}

/// One file of a folder or glob source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileFingerprint {
    pub path: String,
    pub size: Option<u64>,
    pub modified_secs: Option<u64>,
    pub modified_nanos: Option<u32>,
}

impl FileFingerprint {
    fn of(path: &std::path::Path) -> FileFingerprint {
        let meta = std::fs::metadata(path)
            .ok()
            .filter(std::fs::Metadata::is_file);
        let modified = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        FileFingerprint {
            path: files::canonical(path).display().to_string(),
            size: meta.as_ref().map(std::fs::Metadata::len),
            modified_secs: modified.map(|d| d.as_secs()),
            modified_nanos: modified.map(|d| d.subsec_nanos()),
        }
    }
}

/// The [`SourceFingerprint`] of every source of `model`, in definition order. Reads only file
/// metadata, never the data; never fails (see [`SourceFingerprint`] for a missing file).
pub fn fingerprint(model: &Model) -> Vec<SourceFingerprint> {
    model
        .sources
        .iter()
        .map(|source| match files::resolve(source) {
            Ok(found) if found.layout != Layout::File => {
                let files: Vec<FileFingerprint> =
                    found.files.iter().map(|f| FileFingerprint::of(f)).collect();
                let newest = files
                    .iter()
                    .filter_map(|f| Some((f.modified_secs?, f.modified_nanos?)))
                    .max();
                SourceFingerprint {
                    name: source.name.clone(),
                    path: files::canonical(&found.location).display().to_string(),
                    size: files.iter().map(|f| f.size).sum(),
                    modified_secs: newest.map(|(s, _)| s),
                    modified_nanos: newest.map(|(_, n)| n),
                    files: Some(files),
                }
            }
            found => {
                let path = found.map_or_else(|_| source.path.clone(), |f| f.location);
                let file = FileFingerprint::of(&path);
                SourceFingerprint {
                    name: source.name.clone(),
                    path: file.path,
                    size: file.size,
                    modified_secs: file.modified_secs,
                    modified_nanos: file.modified_nanos,
                    files: None,
                }
            }
        })
        .collect()
}

/// The files added to the sources of `model`'s facts and allocation pools since `before`
/// was taken (`now`: as they are), per source (every such source, with none where none was
/// added): what a refresh reads ([`load_delta`]). `Err` says why the change is not only
/// added files: a file changed or removed, a source of one file changed, any other source
/// (a dimension table) changed, a source added or removed.
pub fn added_files(
    model: &Model,
    before: &[SourceFingerprint],
    now: &[SourceFingerprint],
) -> std::result::Result<HashMap<String, Vec<PathBuf>>, String> {
    let growing = |name: &str| {
        model.facts.iter().any(|f| f.name == name)
            || model.allocations.iter().any(|a| a.pool.table == name)
    };
    let mut added = HashMap::new();
    for source in now {
        let Some(old) = before.iter().find(|b| b.name == source.name) else {
            return Err(format!("the source '{}' is new", source.name));
        };
        if old == source {
            if growing(&source.name) {
                added.insert(source.name.clone(), Vec::new());
            }
            continue;
        }
        if !growing(&source.name) {
            return Err(format!("the source '{}' changed", source.name));
        }
        let (Some(was), Some(is)) = (&old.files, &source.files) else {
            return Err(format!("the file of '{}' changed", source.name));
        };
        if old.path != source.path {
            return Err(format!("the source '{}' moved", source.name));
        }
        for file in was {
            match is.iter().find(|f| f.path == file.path) {
                None => {
                    return Err(format!(
                        "the file {} of '{}' is gone",
                        file.path, source.name
                    ));
                }
                Some(f) if f != file => {
                    return Err(format!(
                        "the file {} of '{}' changed",
                        file.path, source.name
                    ));
                }
                Some(_) => {}
            }
        }
        let new = is
            .iter()
            .filter(|f| !was.iter().any(|w| w.path == f.path))
            .map(|f| PathBuf::from(&f.path))
            .collect();
        added.insert(source.name.clone(), new);
    }
    if let Some(gone) = before
        .iter()
        .find(|b| !now.iter().any(|n| n.name == b.name))
    {
        return Err(format!("the source '{}' is no longer defined", gone.name));
    }
    Ok(added)
}

/// [`added_files`] since the fingerprints `recorded` (as a snapshot's manifest records them)
/// when some were added and nothing else changed: what a refresh of that snapshot reads. `Err`
/// says why it cannot be refreshed.
pub fn added_since(
    model: &Model,
    recorded: &serde_json::Value,
    now: &[SourceFingerprint],
) -> std::result::Result<HashMap<String, Vec<PathBuf>>, String> {
    let before: Vec<SourceFingerprint> = serde_json::from_value(recorded.clone())
        .map_err(|e| format!("its recorded sources cannot be read ({e})"))?;
    let added = added_files(model, &before, now)?;
    if added.values().all(Vec::is_empty) {
        return Err("no file was added to its sources".into());
    }
    Ok(added)
}

/// Registers and checks every source of `model`. Problems in the definition-versus-data come
/// back as [`EngineError::Definition`], all of them at once.
pub async fn load(model: &Model) -> Result<Sources> {
    load_checked(model, |_| Ok(())).await
}

/// [`load`], with `before_reading` run once the sources are registered and their schemas
/// checked, before any data is read: an error from it is returned as is (the build's memory
/// budget refuses a cube too large this way, `build::load_within`).
pub async fn load_checked(
    model: &Model,
    before_reading: impl FnOnce(&Catalog) -> Result<()>,
) -> Result<Sources> {
    load_files(model, &HashMap::new(), true, before_reading).await
}

/// The sources of a cube that was built from these very files (a snapshot whose recorded
/// fingerprints match, or a refreshed cube), for the questions that go to DataFusion: every
/// source registered and its schema checked, but no data read now. The data checks passed
/// when the cube was built, and each allocation is computed the first time a query reads its
/// table ([`super::allocate::register_lazy`]), so no report of it comes back.
pub async fn load_registered(model: &Model) -> Result<Sources> {
    load_files(model, &HashMap::new(), false, |_| Ok(())).await
}

/// The sources of `model` for refreshing its cube ([`crate::build::refresh`]): each source
/// named in `only` registered with just those files (none: an empty table of its columns),
/// the others whole; allocations are computed over them.
pub async fn load_delta(model: &Model, only: &HashMap<String, Vec<PathBuf>>) -> Result<Sources> {
    load_files(model, only, true, |_| Ok(())).await
}

#[instrument(skip_all, fields(cube = %model.name))]
/// Registers the sources (`only`: see [`load_delta`]); with `read`, checks their data and
/// computes the allocations, else leaves both (see [`load_registered`]).
async fn load_files(
    model: &Model,
    only: &HashMap<String, Vec<PathBuf>>,
    read: bool,
    before_reading: impl FnOnce(&Catalog) -> Result<()>,
) -> Result<Sources> {
    let ctx = SessionContext::new();
    let mut catalog = Catalog::default();
    let mut diags = Vec::new();
    for source in &model.sources {
        let path = source.path.display().to_string();
        let unreadable = |message: String| Diagnostic {
            file: model.file.clone(),
            pos: source.pos,
            path: format!("sources.{}.path", source.name),
            error: DefError::SourceUnreadable {
                table: source.name.clone(),
                message,
            },
        };
        let found = match files::resolve(source) {
            Ok(found) => found,
            Err(message) => {
                diags.push(unreadable(message));
                continue;
            }
        };
        let registered = match (only.get(&source.name), found.layout) {
            (Some(subset), _) => register_files(&ctx, &source.name, &found, Some(subset)).await,
            (None, Layout::File) => register(&ctx, &source.name, &path, found.format)
                .await
                .map_err(|e| e.to_string()),
            (None, Layout::Folder | Layout::Glob) => {
                register_files(&ctx, &source.name, &found, None).await
            }
        };
        match registered {
            Ok(schema) => catalog.tables.push(TableSchema {
                name: source.name.clone(),
                file: found.location.display().to_string(),
                columns: schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), column_type(f.data_type())))
                    .collect(),
            }),
            Err(message) => diags.push(unreadable(message)),
        }
    }
    // Allocated facts are checked like sources, against the schema their tables will have.
    for a in &model.allocations {
        if let Some(schema) = allocation_schema(model, &catalog, a) {
            catalog.tables.push(schema);
        }
    }
    diags.extend(check_catalog(model, &catalog).0);
    if diags.is_empty() && read {
        before_reading(&catalog)?;
        diags.extend(check_data(model, &ctx).await?.0);
    }
    if !diags.is_empty() {
        return Err(EngineError::Definition(Diagnostics(diags)));
    }
    if !read {
        super::allocate::register_lazy(model, &ctx, &catalog).await?;
        return Ok(Sources {
            ctx,
            catalog,
            allocations: Vec::new(),
        });
    }
    let allocations = allocate_all(model, &ctx, &catalog).await?;
    Ok(Sources {
        ctx,
        catalog,
        allocations,
    })
}

async fn register(
    ctx: &SessionContext,
    name: &str,
    path: &str,
    format: SourceFormat,
) -> Result<Arc<Schema>> {
    match format {
        SourceFormat::Parquet => {
            ctx.register_parquet(name, path, ParquetReadOptions::default())
                .await?;
        }
        SourceFormat::Csv => {
            ctx.register_csv(name, path, CsvReadOptions::new().has_header(true))
                .await?;
            let inferred = ctx.table_provider(name).await?.schema();
            let exact = Schema::new(
                inferred
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        DataType::Float64 | DataType::Float32 => {
                            Field::new(f.name(), DataType::Decimal128(38, CSV_DECIMAL_SCALE), true)
                        }
                        _ => f.as_ref().clone(),
                    })
                    .collect::<Vec<_>>(),
            );
            ctx.deregister_table(name)?;
            ctx.register_csv(
                name,
                path,
                CsvReadOptions::new().has_header(true).schema(&exact),
            )
            .await?;
        }
    }
    let schema = ctx.table_provider(name).await?.schema();
    debug!(
        table = name,
        columns = schema.fields().len(),
        "registered source"
    );
    Ok(schema)
}

/// Registers the files of a folder or glob source as one table (only those in `only`, when
/// given: an empty table where it is empty). Each file's schema is read first, so a file that
/// is not of the format, or whose columns differ from the first file's, is named in the error;
/// the table has the columns of all the files, those read or not.
async fn register_files(
    ctx: &SessionContext,
    name: &str,
    found: &SourceFiles,
    only: Option<&[PathBuf]>,
) -> std::result::Result<Arc<Schema>, String> {
    let state = ctx.state();
    let options = match found.format {
        SourceFormat::Parquet => ParquetReadOptions::default()
            .to_listing_options(&ctx.copied_config(), ctx.copied_table_options()),
        SourceFormat::Csv => CsvReadOptions::new()
            .has_header(true)
            .to_listing_options(&ctx.copied_config(), ctx.copied_table_options()),
    };
    let mut urls = Vec::with_capacity(found.files.len());
    let mut schema: Option<(Arc<Schema>, &std::path::PathBuf)> = None;
    for file in &found.files {
        let url = ListingTableUrl::parse(file.display().to_string())
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let this = options.infer_schema(&state, &url).await.map_err(|e| {
            format!(
                "{} is not a readable {} file: {e}",
                file.display(),
                files::extension(found.format)
            )
        })?;
        schema = Some(match schema {
            None => (this, file),
            Some((first, first_file)) => {
                let merged = merge_schema(&first, &this, found.format).map_err(|column| {
                    format!(
                        "the columns of {} differ from those of {} ({column})",
                        file.display(),
                        first_file.display()
                    )
                })?;
                (merged, first_file)
            }
        });
        if only.is_none_or(|only| only.contains(&files::canonical(file))) {
            urls.push(url);
        }
    }
    let Some((schema, _)) = schema else {
        return Err(format!("no file in {}", found.location.display()));
    };
    let schema = match found.format {
        SourceFormat::Parquet => schema,
        SourceFormat::Csv => exact_csv_schema(&schema),
    };
    if urls.is_empty() {
        let empty = MemTable::try_new(schema.clone(), vec![vec![]]).map_err(|e| e.to_string())?;
        ctx.register_table(name, Arc::new(empty))
            .map_err(|e| e.to_string())?;
        return Ok(schema);
    }
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema.clone());
    let table = ListingTable::try_new(config).map_err(|e| e.to_string())?;
    ctx.register_table(name, Arc::new(table))
        .map_err(|e| e.to_string())?;
    debug!(
        table = name,
        files = found.files.len(),
        columns = schema.fields().len(),
        "registered source"
    );
    Ok(schema)
}

/// The schema of two files of one source: the same column names in the same order; for
/// Parquet the same types, for CSV (types inferred per file) integers and fractions read as
/// fractions. The column that differs, otherwise.
fn merge_schema(
    first: &Schema,
    next: &Schema,
    format: SourceFormat,
) -> std::result::Result<Arc<Schema>, String> {
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    if names(first) != names(next) {
        return Err(format!(
            "columns {} here, {} there",
            names(next).join(", "),
            names(first).join(", ")
        ));
    }
    let mut fields = Vec::with_capacity(first.fields().len());
    for (a, b) in first.fields().iter().zip(next.fields()) {
        let (ta, tb) = (a.data_type(), b.data_type());
        let merged = if ta == tb {
            ta.clone()
        } else {
            match (format, ta, tb) {
                (SourceFormat::Csv, DataType::Int64, DataType::Float64)
                | (SourceFormat::Csv, DataType::Float64, DataType::Int64) => DataType::Float64,
                (SourceFormat::Csv, DataType::Null, t) | (SourceFormat::Csv, t, DataType::Null) => {
                    t.clone()
                }
                _ => return Err(format!("column {}: {tb} here, {ta} there", a.name())),
            }
        };
        fields.push(Field::new(a.name(), merged, true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// A CSV schema with every float column read as an exact decimal.
fn exact_csv_schema(inferred: &Schema) -> Arc<Schema> {
    Arc::new(Schema::new(
        inferred
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Float64 | DataType::Float32 => {
                    Field::new(f.name(), DataType::Decimal128(38, CSV_DECIMAL_SCALE), true)
                }
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

fn column_type(t: &DataType) -> ColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => ColumnType::Integer,
        DataType::Decimal32(_, s)
        | DataType::Decimal64(_, s)
        | DataType::Decimal128(_, s)
        | DataType::Decimal256(_, s) => ColumnType::Decimal { scale: *s },
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Text,
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Boolean => ColumnType::Boolean,
        other => ColumnType::Other(other.to_string()),
    }
}

/// Quotes an identifier for DataFusion SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL of a fact row's period on the axis (periods since the axis's first; 0 for a fact
/// without a date column), over the fact aliased `f`.
pub(crate) fn fact_period_sql(
    time: Option<&lattice_defs::model::ColumnRef>,
    axis: Option<&crate::store::time::TimeAxis>,
) -> String {
    match (time, axis) {
        (Some(t), Some(axis)) => format!(
            "{} - {}",
            crate::store::time::period_sql(&format!("f.{}", ident(&t.column)), axis.grain),
            axis.first
        ),
        _ => "CAST(0 AS BIGINT)".into(),
    }
}

/// Quotes a string literal for DataFusion SQL.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The `FROM` clause that gives one row per member of a table dimension, with its lookups
/// joined: `"customers" AS d LEFT JOIN "regions" ON d."region_id" = "regions"."region_id"`.
pub fn dimension_from(dim: &Dimension) -> Option<String> {
    let DimensionKind::Table { table, lookups, .. } = &dim.kind else {
        return None;
    };
    let mut sql = format!("{} AS d", ident(table));
    for l in lookups {
        let t = ident(&l.table);
        let k = ident(&l.key.column);
        sql.push_str(&format!(" LEFT JOIN {t} ON d.{k} = {t}.{k}"));
    }
    Some(sql)
}

fn column_sql(c: &ColumnRef, dim_table: &str) -> String {
    if c.table == dim_table {
        format!("d.{}", ident(&c.column))
    } else {
        format!("{}.{}", ident(&c.table), ident(&c.column))
    }
}

/// The SQL expression of a level's member name over [`dimension_from`], for column levels and
/// column buckets (`None` for time levels and metric buckets, which need facts).
pub fn level_member_sql(dim: &Dimension, level: &Level) -> Option<String> {
    let DimensionKind::Table { table, .. } = &dim.kind else {
        return None;
    };
    match &level.kind {
        LevelKind::Column(c) => Some(format!("CAST({} AS VARCHAR)", column_sql(c, table))),
        LevelKind::Bucket(Bucket {
            source: BucketSource::Column(c),
            cuts: Cuts::Edges(edges),
            labels,
        }) => Some(bucket_case_sql(&column_sql(c, table), edges, labels)),
        LevelKind::Bucket(_) | LevelKind::Time(_) => None,
    }
}

/// `CASE WHEN x IS NULL THEN 'unknown' WHEN x < e1 THEN 'l0' ... ELSE 'ln' END`.
pub fn bucket_case_sql(value: &str, edges: &[Decimal], labels: &[String]) -> String {
    let mut sql = format!(
        "CASE WHEN {value} IS NULL THEN {}",
        literal(lattice_defs::model::UNKNOWN_MEMBER)
    );
    for (edge, label) in edges.iter().zip(labels) {
        sql.push_str(&format!(
            " WHEN {value} < CAST({edge} AS DECIMAL(38, 6)) THEN {}",
            literal(label)
        ));
    }
    let last = labels.last().map_or(String::new(), |l| literal(l));
    sql.push_str(&format!(" ELSE {last} END"));
    sql
}

/// Keys unique in their table; each hierarchy step functional. Runs one small query per check.
async fn check_data(model: &Model, ctx: &SessionContext) -> Result<Diagnostics> {
    let mut diags = Vec::new();
    for dim in &model.dimensions {
        let DimensionKind::Table { table, key, .. } = &dim.kind else {
            continue;
        };
        let k = ident(&key.column);
        let sql = format!(
            "SELECT member, n FROM (SELECT CAST({k} AS VARCHAR) AS member, COUNT(*) AS n FROM {} GROUP BY {k}) \
             WHERE n > 1 ORDER BY member LIMIT 1",
            ident(table)
        );
        if let Some((member, count)) = first_pair(ctx, &sql).await? {
            diags.push(Diagnostic {
                file: model.file.clone(),
                pos: key.pos,
                path: key.path.clone(),
                error: DefError::Invalid {
                    message: format!(
                        "key '{}' is not unique in table '{table}': {member} appears {count} times",
                        key.column
                    ),
                },
            });
        }
        diags.extend(check_hierarchy(model, dim, ctx).await?);
    }
    Ok(Diagnostics(diags))
}

async fn check_hierarchy(
    model: &Model,
    dim: &Dimension,
    ctx: &SessionContext,
) -> Result<Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let Some(from) = dimension_from(dim) else {
        return Ok(diags);
    };
    for (step, pair) in dim.hierarchy.windows(2).enumerate() {
        let (parent, child) = (&dim.levels[pair[0]], &dim.levels[pair[1]]);
        let (Some(p), Some(c)) = (level_member_sql(dim, parent), level_member_sql(dim, child))
        else {
            continue;
        };
        let sql = format!(
            "SELECT child, COUNT(DISTINCT parent), MIN(parent), MAX(parent) \
             FROM (SELECT {p} AS parent, {c} AS child FROM {from}) \
             WHERE child IS NOT NULL GROUP BY child HAVING COUNT(DISTINCT parent) > 1 ORDER BY child LIMIT 1"
        );
        let batches = ctx.sql(&sql).await?.collect().await?;
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            continue;
        };
        let text = |col: usize| -> String {
            arrow::util::display::array_value_to_string(batch.column(col), 0).unwrap_or_default()
        };
        diags.push(Diagnostic {
            file: model.file.clone(),
            pos: dim
                .hierarchy_pos
                .get(step + 1)
                .copied()
                .unwrap_or(Pos::UNKNOWN),
            path: format!("dimensions.{}.hierarchy[{}]", dim.name, step + 1),
            error: DefError::NotFunctional {
                dimension: dim.name.clone(),
                parent: parent.name.clone(),
                child: child.name.clone(),
                member: text(0),
                count: text(1).parse().unwrap_or(2),
                examples: format!("'{}', '{}'", text(2), text(3)),
            },
        });
    }
    Ok(diags)
}

/// The first row of a two-column result, as text.
async fn first_pair(ctx: &SessionContext, sql: &str) -> Result<Option<(String, String)>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let cell = |col: usize| arrow::util::display::array_value_to_string(batch.column(col), 0);
    Ok(Some((cell(0)?, cell(1)?)))
}
