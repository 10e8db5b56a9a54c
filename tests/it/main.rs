//! Integration tests, compiled as one binary so the suite links once.

mod cli;
mod cube_build;
mod load;
mod query;
mod random_cube;
mod reference;
mod select;
mod server;
mod synth;
mod util;
