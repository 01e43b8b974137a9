//! The `nta` subcommands: the command line, `run`, `capture` and
//! `analyze`. Thin layers over the library; no library module imports
//! these.

pub mod analyze;
pub mod capture;
pub mod cli;
pub mod run;
