use super::{display_name, read_spec};
use crate::exit;
use charter_spec::diagnostic::render_human;
use std::path::Path;

pub fn run(path: &Path, check: bool) -> u8 {
    let source = match read_spec(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let file = display_name(path);
    let compiled = charter_model::compile(&source);
    if compiled.has_errors() {
        // Formatting a malformed table could turn it into a valid one; fix
        // the errors first so nothing changes meaning silently.
        let errors: Vec<_> = compiled.diagnostics.into_iter().filter(|d| d.is_error()).collect();
        eprint!("{}", render_human(&file, &source, &errors));
        eprintln!("{file}: not formatted: fix the errors above first");
        return exit::PROBLEM;
    }
    let formatted = charter_spec::fmt::format(&source);
    if formatted == source {
        if !check {
            eprintln!("{file}: already formatted");
        }
        return exit::OK;
    }
    if check {
        eprintln!("{file}: not formatted (run `charter fmt {file}`)");
        return exit::PROBLEM;
    }
    // Write beside, then rename: an interrupted write never truncates the spec.
    let tmp = path.with_extension("md.charter-fmt.tmp");
    if let Err(e) = std::fs::write(&tmp, &formatted).and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("error: cannot write {file}: {e}");
        return exit::USAGE;
    }
    eprintln!("{file}: formatted");
    exit::OK
}
