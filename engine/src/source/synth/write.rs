//! Writing tables batch by batch into Parquet or CSV files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, Date32Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{DataFormat, Layout, TableSummary};
use crate::{EngineError, Result};

/// Rows per Arrow batch and per Parquet row group.
pub(super) const BATCH_ROWS: usize = 65_536;
const ROW_GROUP_ROWS: usize = 262_144;

/// The monthly tables and their date column: with [`Layout::MonthlyFolders`] each is written
/// as a folder of one file per month, `transactions/2025-03.parquet`.
const MONTHLY: [(&str, &str); 3] = [
    ("transactions", "txn_date"),
    ("balances", "month"),
    ("branch_costs", "month"),
];

/// Where and how tables are written.
#[derive(Debug)]
pub(super) struct TableWriter<'a> {
    pub(super) out: &'a Path,
    pub(super) format: DataFormat,
    pub(super) layout: Layout,
}

/// Opens one file of a table.
fn open_file(path: &Path, format: DataFormat, schema: &SchemaRef) -> Result<FileWriter> {
    let file = File::create(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match format {
        DataFormat::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .build();
            let writer =
                ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
                    EngineError::Parquet {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
            FileWriter::Parquet(writer)
        }
        DataFormat::Csv => FileWriter::Csv(
            arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(BufWriter::new(file)),
        ),
    })
}

/// Closes one file of a table (a CSV file with no rows still gets its header line).
fn close_file(writer: FileWriter, path: &Path, schema: &SchemaRef, rows: usize) -> Result<()> {
    match writer {
        FileWriter::Parquet(w) => {
            w.close().map_err(|source| EngineError::Parquet {
                path: path.to_path_buf(),
                source,
            })?;
        }
        FileWriter::Csv(mut w) => {
            if rows == 0 {
                w.write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(|e| csv_error(path, e))?;
            }
            w.into_inner().flush().map_err(|source| EngineError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(())
}

fn write_file(writer: &mut FileWriter, path: &Path, batch: &RecordBatch) -> Result<()> {
    match writer {
        FileWriter::Parquet(w) => w.write(batch).map_err(|source| EngineError::Parquet {
            path: path.to_path_buf(),
            source,
        }),
        FileWriter::Csv(w) => w.write(batch).map_err(|e| csv_error(path, e)),
    }
}

/// Where a table's rows go.
#[derive(Debug)]
enum Target {
    One(Box<FileWriter>),
    /// One file per month of the date column `column`, by `YYYY-MM`: its path, writer, rows.
    Months {
        column: usize,
        format: DataFormat,
        parts: BTreeMap<String, (PathBuf, FileWriter, usize)>,
    },
}

impl TableWriter<'_> {
    pub(super) fn create(&self, name: &'static str, schema: SchemaRef) -> Result<TableSink> {
        let monthly = match self.layout {
            Layout::Files => None,
            Layout::MonthlyFolders => MONTHLY
                .iter()
                .find(|(table, _)| *table == name)
                .and_then(|(_, column)| schema.index_of(column).ok()),
        };
        if let Some(column) = monthly {
            // The single file of an earlier run would be read instead of the folder.
            let single = self.out.join(format!("{name}.{}", self.format.extension()));
            match std::fs::remove_file(&single) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EngineError::Io {
                        path: single,
                        source: e,
                    });
                }
                _ => {}
            }
            let dir = self.out.join(name);
            // A folder written before holds months this one may not: start it afresh.
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EngineError::Io {
                        path: dir,
                        source: e,
                    });
                }
                _ => {}
            }
            std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
                path: dir.clone(),
                source,
            })?;
            return Ok(TableSink {
                name,
                path: dir,
                schema,
                rows: 0,
                target: Target::Months {
                    column,
                    format: self.format,
                    parts: BTreeMap::new(),
                },
            });
        }
        let path = self.out.join(format!("{name}.{}", self.format.extension()));
        let writer = open_file(&path, self.format, &schema)?;
        Ok(TableSink {
            name,
            path,
            schema,
            rows: 0,
            target: Target::One(Box::new(writer)),
        })
    }

    pub(super) fn write_one(&self, name: &'static str, batch: RecordBatch) -> Result<TableSummary> {
        let mut sink = self.create(name, batch.schema())?;
        sink.write(&batch)?;
        sink.finish()
    }
}

enum FileWriter {
    Parquet(ArrowWriter<File>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileWriter::Parquet(_) => "FileWriter::Parquet",
            FileWriter::Csv(_) => "FileWriter::Csv",
        })
    }
}

/// One table being written, batch by batch: a file, or a folder of monthly files.
#[derive(Debug)]
pub(super) struct TableSink {
    name: &'static str,
    path: PathBuf,
    schema: SchemaRef,
    rows: usize,
    target: Target,
}

impl TableSink {
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        match &mut self.target {
            Target::One(w) => write_file(w, &self.path, batch),
            Target::Months {
                column,
                format,
                parts,
            } => {
                let dates = batch
                    .column(*column)
                    .as_any()
                    .downcast_ref::<Date32Array>()
                    .ok_or_else(|| {
                        EngineError::Internal(format!(
                            "{}: the month column is not a date",
                            self.name
                        ))
                    })?;
                let mut months: BTreeMap<String, Vec<bool>> = BTreeMap::new();
                for (row, days) in dates.iter().enumerate() {
                    let month = days
                        .and_then(|d| {
                            chrono::NaiveDate::from_num_days_from_ce_opt(d + UNIX_EPOCH_DAYS)
                        })
                        .map_or_else(|| "none".to_string(), |d| d.format("%Y-%m").to_string());
                    months
                        .entry(month)
                        .or_insert_with(|| vec![false; batch.num_rows()])[row] = true;
                }
                for (month, mask) in months {
                    let rows = filter_record_batch(batch, &BooleanArray::from(mask))?;
                    let part = match parts.entry(month) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            let path =
                                self.path
                                    .join(format!("{}.{}", e.key(), format.extension()));
                            let writer = open_file(&path, *format, &self.schema)?;
                            e.insert((path, writer, 0))
                        }
                    };
                    part.2 += rows.num_rows();
                    write_file(&mut part.1, &part.0, &rows)?;
                }
                Ok(())
            }
        }
    }

    pub(super) fn finish(self) -> Result<TableSummary> {
        let TableSink {
            name,
            path,
            schema,
            rows,
            target,
        } = self;
        match target {
            Target::One(writer) => close_file(*writer, &path, &schema, rows)?,
            Target::Months { parts, .. } => {
                for (_, (file, writer, n)) in parts {
                    close_file(writer, &file, &schema, n)?;
                }
            }
        }
        Ok(TableSummary { name, rows, path })
    }
}

/// chrono's day number (from 0001-01-01, day 1) of 1970-01-01, Arrow's day 0.
const UNIX_EPOCH_DAYS: i32 = 719_163;

/// CSV errors are Arrow errors; keep the file's path when it is an I/O failure.
fn csv_error(path: &Path, error: ArrowError) -> EngineError {
    match error {
        ArrowError::IoError(_, source) => EngineError::Io {
            path: path.into(),
            source,
        },
        other => EngineError::Arrow(other),
    }
}
