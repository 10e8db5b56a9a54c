//! The engine's one error type. User errors (bad data, a definition that does not match its data)
//! are kept apart from `Internal`, which is only for broken invariants.

use std::path::PathBuf;

use lattice_defs::Diagnostics;

/// Everything that can go wrong between a validated `Model` and an answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file could not be written or read.
    #[error("{}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A snapshot folder could not be written or read back: a missing or corrupt file, an
    /// unknown format version, a definition that changed ([`crate::store::snapshot`]).
    #[error("snapshot {}: {message}", path.display())]
    Snapshot { path: PathBuf, message: String },
    /// An Arrow operation failed (building or converting batches).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// DataFusion failed to plan or run a query over the sources.
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// The definition does not match its data (missing columns, wrong types, a hierarchy that is
    /// not functional). Each diagnostic points at the place in the YAML.
    #[error("{0}")]
    Definition(Diagnostics),
    /// A generator option is out of range.
    #[error("invalid generator option '{option}': {message}")]
    InvalidOption {
        option: &'static str,
        message: String,
    },
    /// The definition asks for something this build cannot do yet.
    #[error("not supported yet: {what}")]
    Unsupported { what: String },
    /// The build's estimated peak memory is over its budget: refused before the stage that
    /// would allocate it, with the estimate's parts ([`crate::build::budget`]).
    #[error(
        "the build would need about {} while {stage}, more than the memory budget of {} ({}); raise the budget (`--memory-budget-mb`), or ask for less: fewer or coarser cuboids (`aggregates`), smaller sources",
        ByteSize(*estimate_bytes),
        ByteSize(*budget_bytes),
        items.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    OverMemoryBudget {
        stage: &'static str,
        estimate_bytes: u64,
        budget_bytes: u64,
        items: Vec<EstimateItem>,
    },
    /// A broken invariant inside the engine: a bug, never the user's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// One part of an estimate: what, how many (rows, members or cells), and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstimateItem {
    pub what: String,
    pub count: u64,
    pub unit: &'static str,
    pub bytes: u64,
}

impl std::fmt::Display for EstimateItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {} = {}",
            self.what,
            self.count,
            self.unit,
            ByteSize(self.bytes)
        )
    }
}

/// Bytes, for a person: `1.5 GiB`, `640 KiB`.
#[derive(Debug, Clone, Copy)]
pub struct ByteSize(pub u64);

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0 as f64;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= size {
                return write!(f, "{:.1} {unit}", b / size as f64);
            }
        }
        write!(f, "{} B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_a_person_writes_them() {
        assert_eq!(ByteSize(512).to_string(), "512 B");
        assert_eq!(ByteSize(640 << 10).to_string(), "640.0 KiB");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.5 GiB");
    }
}
