//! Queries over a built cube. So far: the query document (the same JSON over HTTP, the CLI
//! and the Rust API) and its resolution against a [`crate::store::Cube`] — every name checked,
//! every filter value turned into member codes — with errors that carry a stable code and say
//! what would be valid. The planner and executor build on [`Resolved`].
//!
//! ```text
//! Query (serde) --resolve(&Cube)--> Resolved (levels, measures, member-code filters)
//!                           \-----> QueryError { code(), message with suggestions }
//! ```

mod error;
mod resolve;
mod spec;

pub use error::QueryError;
pub use resolve::{Resolved, ResolvedFilter, resolve};
pub use spec::{Compare, Direction, Filter, FilterOp, Having, HavingOp, Order, Query};
