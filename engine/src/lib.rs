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
//!
//! Nothing here knows about HTTP; the server crate is a thin shell over this one.

pub mod build;
pub mod error;
pub mod source;
pub mod store;

pub use error::{EngineError, Result};
