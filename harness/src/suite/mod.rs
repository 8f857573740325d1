//! Suite files: the typed model ([`ast`]), the located YAML reader
//! ([`tree`]), the parser and its checks ([`parse`]) and their errors
//! ([`error`]). Nothing here does I/O.

pub mod ast;
pub mod error;
pub mod parse;
pub mod tree;

pub use ast::*;
pub use error::{SuiteError, SuiteErrors};
pub use parse::{Context, parse};
