use crate::exit;
use std::path::Path;

const APP_MD: &str = include_str!("../../templates/app.md");
const README_MD: &str = include_str!("../../templates/README.md");
const ENV_EXAMPLE: &str = include_str!("../../templates/env.example");
const GITIGNORE: &str = include_str!("../../templates/gitignore");

pub fn run(dir: &Path) -> u8 {
    let Some(base) = dir.file_name().and_then(|n| n.to_str()) else {
        eprintln!("error: `{}` does not end in a folder name", dir.display());
        return exit::USAGE;
    };
    let title = title_of(base);
    if title.is_empty() {
        eprintln!("error: `{base}` has no letters or digits to name the app after");
        return exit::USAGE;
    }
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        eprintln!("error: {} already exists and is not empty; nothing was written", dir.display());
        eprintln!("help: pick a new folder name, e.g. `charter new my-app`");
        return exit::USAGE;
    }
    let files = [
        ("app.md", APP_MD.replace("{{title}}", &title)),
        ("README.md", README_MD.replace("{{title}}", &title).replace("{{dir}}", &dir.display().to_string())),
        (".env.example", ENV_EXAMPLE.to_string()),
        (".gitignore", GITIGNORE.to_string()),
    ];
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return exit::USAGE;
    }
    for (name, content) in files {
        if let Err(e) = std::fs::write(dir.join(name), content) {
            eprintln!("error: cannot write {}: {e}", dir.join(name).display());
            return exit::USAGE;
        }
    }
    let d = dir.display();
    println!("Created {d}/ with app.md, README.md, .env.example and .gitignore.");
    println!();
    println!("Next:");
    println!("  cd {d}");
    println!("  charter check app.md     # compile the spec and report problems");
    println!("  charter dev              # serve it, reloading on every save of app.md");
    exit::OK
}

/// `my-shop_2` -> `My Shop 2`.
fn title_of(base: &str) -> String {
    base.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(title_of("my-shop_2"), "My Shop 2");
        assert_eq!(title_of("---"), "");
    }

    #[test]
    fn starter_spec_compiles_clean() {
        let compiled = charter_model::compile(&APP_MD.replace("{{title}}", "Test"));
        assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.diagnostics);
    }
}
