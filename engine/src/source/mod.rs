//! Reading facts and dimension tables, and making the synthetic bank data set.
//!
//! - [`synth`] writes the default data set of docs/architecture.md (Parquet or CSV), deterministically.
//! - [`files`] finds a source's files: one file, a folder of files or a glob.
//! - [`load`] registers the sources a definition names with DataFusion, checks their schemas
//!   against the definition, and checks what only data can show (hierarchies that are functional).
//! - [`allocate`] computes the fact tables of a definition's `allocations:` (a cost pool split
//!   exactly over a driver fact's cells) and registers them beside the sources.

pub mod allocate;
pub(crate) mod arrays;
pub mod files;
pub mod load;
pub mod synth;
