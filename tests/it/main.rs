//! Integration tests, compiled as one binary so the suite links once.

mod cli;
mod load;
mod reference;
mod synth;
mod util;
