use super::{display_name, read_spec};
use crate::{exit, Format};
use charter_spec::diagnostic::{render_human, render_json_lines};
use std::path::Path;

pub fn run(path: &Path, format: Format) -> u8 {
    let source = match read_spec(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let file = display_name(path);
    let compiled = charter_model::compile(&source);
    let errors = compiled.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = compiled.diagnostics.len() - errors;
    match format {
        Format::Json => print!("{}", render_json_lines(&file, &source, &compiled.diagnostics)),
        Format::Human => {
            eprint!("{}", render_human(&file, &source, &compiled.diagnostics));
            match &compiled.model {
                Some(model) => {
                    let entities = model.entities.iter().filter(|e| e.declared && !e.builtin).count();
                    let extra = if warnings > 0 { format!(", {}", plural(warnings, "warning")) } else { String::new() };
                    eprintln!("{file}: ok: `{}`, {}, {}{extra}", model.name, plural(entities, "entity"), plural(model.roles.len(), "role"));
                }
                None => {
                    let extra = if warnings > 0 { format!(", {}", plural(warnings, "warning")) } else { String::new() };
                    eprintln!("{file}: {}{extra}; nothing was compiled", plural(errors, "error"));
                }
            }
        }
    }
    if errors > 0 {
        exit::PROBLEM
    } else {
        exit::OK
    }
}

pub fn plural(n: usize, word: &str) -> String {
    match (n, word) {
        (1, w) => format!("1 {w}"),
        (n, "entity") => format!("{n} entities"),
        (n, w) => format!("{n} {w}s"),
    }
}
