//! Writing tables batch by batch into Parquet or CSV files.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{DataFormat, TableSummary};
use crate::{EngineError, Result};

/// Rows per Arrow batch and per Parquet row group.
pub(super) const BATCH_ROWS: usize = 65_536;
const ROW_GROUP_ROWS: usize = 262_144;

/// Where and how tables are written.
#[derive(Debug)]
pub(super) struct TableWriter<'a> {
    pub(super) out: &'a Path,
    pub(super) format: DataFormat,
}

impl TableWriter<'_> {
    pub(super) fn create(&self, name: &'static str, schema: SchemaRef) -> Result<TableSink> {
        let path = self.out.join(format!("{name}.{}", self.format.extension()));
        let file = File::create(&path).map_err(|source| EngineError::Io {
            path: path.clone(),
            source,
        })?;
        let writer = match self.format {
            DataFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let writer =
                    ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
                        EngineError::Parquet {
                            path: path.clone(),
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
        };
        Ok(TableSink {
            name,
            path,
            schema,
            rows: 0,
            writer,
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

/// One table being written, batch by batch.
#[derive(Debug)]
pub(super) struct TableSink {
    name: &'static str,
    path: PathBuf,
    schema: SchemaRef,
    rows: usize,
    writer: FileWriter,
}

impl TableSink {
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        match &mut self.writer {
            FileWriter::Parquet(w) => w.write(batch).map_err(|e| self.parquet_error(e)),
            FileWriter::Csv(w) => w.write(batch).map_err(|e| csv_error(&self.path, e)),
        }
    }

    pub(super) fn finish(self) -> Result<TableSummary> {
        let TableSink {
            name,
            path,
            schema,
            rows,
            writer,
        } = self;
        match writer {
            FileWriter::Parquet(w) => {
                w.close().map_err(|source| EngineError::Parquet {
                    path: path.clone(),
                    source,
                })?;
            }
            FileWriter::Csv(mut w) => {
                if rows == 0 {
                    // An empty batch still writes the header line.
                    w.write(&RecordBatch::new_empty(schema))
                        .map_err(|e| csv_error(&path, e))?;
                }
                w.into_inner().flush().map_err(|source| EngineError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(TableSummary { name, rows, path })
    }

    fn parquet_error(&self, source: parquet::errors::ParquetError) -> EngineError {
        EngineError::Parquet {
            path: self.path.clone(),
            source,
        }
    }
}

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
