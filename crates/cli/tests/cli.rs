//! The `charter` binary as a user runs it: exit codes, output, files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn charter(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charter")).args(args).current_dir(dir).output().expect("charter runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/taskboard/app.md")
}

const TYPO_SPEC: &str = "# Shop

## Entities

### Order
| field  | type    | rules    |
|--------|---------|----------|
| total  | decimal | required |
| buyer  | Usr     | required |

Permissions:
- read: buyer = me
";

#[test]
fn check_accepts_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let out = charter(&["check", example().to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("ok: `Taskboard`, 2 entities, 2 roles"), "{}", text(&out.stderr));
}

#[test]
fn check_points_at_a_typo_and_suggests_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.md"), TYPO_SPEC).unwrap();
    let out = charter(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error[E0203]: unknown type `Usr`"), "{err}");
    assert!(err.contains(" --> app.md:9:12"), "{err}");
    assert!(err.contains("9 | | buyer  | Usr     | required |\n  |            ^^^ "), "{err}");
    assert!(err.contains("= help: did you mean `User`?"), "{err}");
}

#[test]
fn check_json_prints_one_object_per_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.md"), TYPO_SPEC.replace("required |\n| buyer", "requird  |\n| buyer")).unwrap();
    let out = charter(&["check", "app.md", "--format", "json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON object per line")).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let first = &lines[0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["code"], "E0206");
    assert_eq!(first["file"], "app.md");
    assert_eq!((first["line"].as_u64(), first["column"].as_u64()), (Some(8), Some(22)));
    assert_eq!((first["end_line"].as_u64(), first["end_column"].as_u64()), (Some(8), Some(29)));
    assert_eq!(first["help"], "did you mean `required`?");
    assert_eq!(lines[1]["code"], "E0203");
}

#[test]
fn warnings_do_not_fail_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "# A\n\n## Entities\n\n### Note\n| field | type | rules |\n|---|---|---|\n| body | text | |\n";
    std::fs::write(dir.path().join("app.md"), spec).unwrap();
    let out = charter(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("warning[W0001]"), "{}", text(&out.stderr));
}

#[test]
fn usage_and_missing_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = charter(&["check", "nope.md"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read nope.md: no such file"));
    let out = charter(&["check", "--format", "xml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let out = charter(&["frobnicate"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn new_writes_a_starter_that_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out = charter(&["new", "my-notes"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("charter check app.md"));
    let app = dir.path().join("my-notes");
    for f in ["app.md", "README.md", ".env.example", ".gitignore"] {
        assert!(app.join(f).is_file(), "{f} missing");
    }
    let spec = std::fs::read_to_string(app.join("app.md")).unwrap();
    assert!(spec.starts_with("# My Notes\n"));
    let out = charter(&["check"], &app);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stderr).contains("warning"), "{}", text(&out.stderr));
    let out = charter(&["fmt", "--check"], &app);
    assert_eq!(out.status.code(), Some(0), "the starter is formatted: {}", text(&out.stderr));

    // A second `new` into the same folder refuses and changes nothing.
    std::fs::write(app.join("app.md"), "# Mine\n").unwrap();
    let out = charter(&["new", "my-notes"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(app.join("app.md")).unwrap(), "# Mine\n");
}

#[test]
fn fmt_aligns_tables_keeps_prose_and_refuses_broken_specs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "# A\n\nProse   *kept*  exactly.\n\n## Entities\n\n### Note\n|field|type|rules|\n|-|-|-|\n|body|text|required|\n\nPermissions:\n- read: signed in\n";
    let path = dir.path().join("app.md");
    std::fs::write(&path, spec).unwrap();
    assert_eq!(charter(&["fmt", "--check"], dir.path()).status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), spec, "--check writes nothing");
    assert_eq!(charter(&["fmt"], dir.path()).status.code(), Some(0));
    let formatted = std::fs::read_to_string(&path).unwrap();
    assert!(formatted.contains("| field | type | rules    |\n|-------|------|----------|\n| body  | text | required |\n"), "{formatted}");
    assert!(formatted.contains("Prose   *kept*  exactly."));
    assert_eq!(charter(&["fmt", "--check"], dir.path()).status.code(), Some(0));

    let broken = "# A\n\n## Entities\n\n### Note\n|field|type|rules|\n|-|-|-|\n|body|txt|required|\n";
    std::fs::write(&path, broken).unwrap();
    let out = charter(&["fmt"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
}

#[test]
fn plan_previews_and_migrate_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(example(), dir.path().join("app.md")).unwrap();
    let out = charter(&["plan"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1. [safe] create table `users`"), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("3 steps: 3 safe, 0 destructive, 0 refused"));

    let out = charter(&["migrate"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("migrated in"));
    let db = dir.path().join("data/app.db");
    assert!(db.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let out = charter(&["migrate"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Nothing to do"), "{}", text(&out.stdout));
}

#[test]
fn migrate_refuses_destructive_steps_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(example()).unwrap();
    std::fs::write(dir.path().join("app.md"), &spec).unwrap();
    assert_eq!(charter(&["migrate"], dir.path()).status.code(), Some(0));
    std::fs::write(dir.path().join("app.md"), spec.replace("| archived | bool | default false                   |\n", "")).unwrap();

    let out = charter(&["plan", "--format", "json"], dir.path());
    assert_eq!(out.status.code(), Some(0), "a preview with a destructive step is not a failure");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcomes"][0]["verdict"]["verdict"], "destructive");
    assert_eq!(report["applied"], false);

    let out = charter(&["migrate"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("rerun with --allow-destructive"), "{}", text(&out.stderr));
    let out = charter(&["migrate", "--allow-destructive"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("backup taken: data/backups/pre-migrate-"), "{}", text(&out.stderr));
}

#[test]
fn database_url_comes_from_the_env_file_and_bad_urls_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(example(), dir.path().join("app.md")).unwrap();
    std::fs::write(dir.path().join(".env"), "# comment\nCHARTER_DATABASE_URL=\"sqlite://elsewhere/x.db\"\n").unwrap();
    assert_eq!(charter(&["migrate"], dir.path()).status.code(), Some(0));
    assert!(dir.path().join("elsewhere/x.db").is_file());
    std::fs::write(dir.path().join(".env"), "CHARTER_DATABASE_URL=mysql://u:pw@h/db\n").unwrap();
    let out = charter(&["migrate"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unsupported database URL scheme `mysql`"));
    assert!(!text(&out.stderr).contains("pw"), "credentials never printed");
}
