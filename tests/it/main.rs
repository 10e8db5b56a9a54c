//! Integration tests, compiled as one binary so the suite links once.

mod access;
mod allocation;
mod analytics;
mod auth;
mod cli;
mod cube_build;
mod cubejs;
mod entities;
mod flight;
mod gate;
mod hostile;
mod load;
mod pareto;
mod performance;
mod pg;
mod query;
mod query_props;
mod query_suite;
mod random_cube;
mod reference;
mod refresh;
mod route_access;
mod scoped;
mod searches;
mod select;
mod server;
mod snapshots;
mod sources;
mod sql;
mod synth;
mod util;
mod value_class;
mod walkthrough;
mod web;
mod workbench;

/// The question suite with SQL twins, shared with the query benchmark.
#[path = "../questions.rs"]
mod questions;
