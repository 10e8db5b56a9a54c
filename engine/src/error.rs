//! The engine's one error type. User errors (bad data, a definition that does not match its data)
//! are kept apart from `Internal`, which is only for broken invariants.

use std::path::PathBuf;

use lattice_defs::Diagnostics;

use crate::build::budget::{Bytes, EstimateItem};

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
        Bytes(*estimate_bytes),
        Bytes(*budget_bytes),
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
