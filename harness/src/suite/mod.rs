//! Suite files: the typed model (`ast`, with `value` for durations and
//! regular expressions), the parser and its checks (`parse`, on the
//! located YAML of `dmconf-yaml`) and their errors (`error`). Nothing
//! here does I/O; the model is public, for whoever reads a suite or a
//! verdict.

mod ast;
mod error;
pub(crate) mod parse;
mod value;

pub use ast::*;
pub use error::{SuiteError, SuiteErrors};
pub(crate) use parse::{Context, parse};
