//! The charter spec language's syntax: Markdown in, a syntax tree with spans
//! and diagnostics out. Nothing here resolves names or knows what a type
//! means; that is `charter-model`'s job. No I/O: it parses the string it is
//! given.

pub mod diagnostic;
pub mod fmt;
pub mod inline;
pub mod lex;
pub mod parse;
pub mod span;
pub mod syntax;

pub use diagnostic::{Code, Diagnostic, Severity};
pub use parse::parse;
pub use span::{LineIndex, Position, Span, Spanned};
