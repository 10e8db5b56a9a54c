//! # lattice-engine
//!
//! Everything between a validated [`lattice_defs::Model`] and an answer. Data flows one way:
//!
//! ```text
//! Model --source--> registered tables (DataFusion) --build--> cuboids --store--> query
//! ```
//!
//! - [`source`]: the synthetic bank data set ([`source::synth`]) and loading the sources a
//!   definition names, with their schemas checked ([`source::load`]).
//! - [`build`]: dimension encoding, one DataFusion plan per fact down to the cube grain, cuboid
//!   selection and roll-up ([`build::build_cube`]).
//! - [`store`]: the built [`store::Cube`] — member dictionaries and [`store::Cuboid`]s, the API
//!   the query layer uses (find a cuboid by level set, iterate its cells, read a cell's values
//!   and member sets).
//! - [`query`]: the query document, its resolution against a cube, planning (cuboid or
//!   fallback), execution and the answer; drill-through and the result cache.
//! - [`access`]: a principal's row-level scope and small-cell suppression, applied to every
//!   answer given to that principal.
//! - [`analytics`]: abnormal change and band migration, built from the query engine's
//!   aggregation and the cuboids' member sets, under the same access.
//! - [`search`]: target-customer searches — conditions on attributes, bands and per-period
//!   measures evaluated to roaring member sets — listed, counted and used as query segments.
//! - [`entity`]: the single entity view (a customer's attributes, holdings, measures and bands
//!   per period, breakdowns and matching searches), every number a query under the same access.
//!
//! Nothing here knows about HTTP; the server crate is a thin shell over this one.

pub mod access;
pub mod analytics;
pub mod build;
pub mod entity;
pub mod error;
pub mod query;
pub mod search;
pub mod source;
pub mod store;

pub use error::{EngineError, Result};

/// Arrow's Date32 day numbers as chrono dates (the calendar helpers of `build::time`).
pub mod calendar {
    pub use crate::build::time::{date_of_day, day_of_date};
}
