pub mod admin;
pub mod audit;
pub mod backup;
pub mod check;
pub mod dev;
pub mod doctor;
pub mod fmt;
pub mod migrate;
pub mod new;
pub mod openapi;
pub mod serve;

use crate::exit;
use std::path::Path;

/// Reads a spec file, or prints why it cannot and returns the exit code.
pub fn read_spec(path: &Path) -> Result<String, u8> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
            eprintln!("error: {} is not UTF-8 text", path.display());
            exit::USAGE
        }),
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            };
            eprintln!("error: cannot read {}: {why}", path.display());
            if e.kind() == std::io::ErrorKind::NotFound && path == Path::new("app.md") {
                eprintln!("help: run this in a folder with an app.md, pass the spec's path, or start one with `charter new NAME`");
            }
            Err(exit::USAGE)
        }
    }
}

/// The file name shown in diagnostics: the path as the user typed it.
pub fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Compiles the spec; on errors prints them and returns `None`.
pub fn compile_or_report(path: &Path, source: &str) -> Option<charter_model::AppModel> {
    let compiled = charter_model::compile(source);
    if compiled.has_errors() {
        let file = display_name(path);
        eprint!("{}", charter_spec::diagnostic::render_human(&file, source, &compiled.diagnostics));
        eprintln!("{file}: fix the errors above first (`charter check {file}`)");
    }
    compiled.model
}
