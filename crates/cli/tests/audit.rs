//! `charter audit` and `charter openapi` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn charter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charter")).args(args).output().expect("charter runs")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(root().join("examples")).unwrap().map(|e| e.unwrap().path().join("app.md")).filter(|p| p.exists()).collect();
    out.sort();
    assert!(!out.is_empty());
    out
}

/// Roles, enum and bool conditions, anonymous reads, a three-step path and
/// the two field-scoped User lines: rules the examples do not all use.
const NEWSROOM: &str = r#"# Newsroom

## Roles
- reader (default)
- writer
- editor

## Entities

### User
| field | type | rules |
|-------|------|-------|
| desk  | text | max 40 |

Permissions:
- read: signed in
- update: id = me or editor
- update role: editor
- read email: editor

### Section
| field | type | rules |
|-------|------|-------|
| title | text | required, 1..40 |
| lead  | User | default me, read only |

Permissions:
- read: anyone
- create, update, delete: editor

### Story
| field     | type                        | rules                          |
|-----------|-----------------------------|--------------------------------|
| headline  | text                        | required, 1..120               |
| section   | Section                     | required, on delete cascade    |
| author    | User                        | required, default me, read only |
| status    | enum(draft, review, public) | default draft                  |
| pinned    | bool                        | default false                  |

Permissions:
- read: status = public or author = me or editor
- create: writer or editor
- update: (author = me and status != public) or editor
- delete: author = me and not pinned = true

### Note
| field | type  | rules                       |
|-------|-------|-----------------------------|
| story | Story | required, on delete cascade |
| body  | text  | required                    |

Permissions:
- read, create: story.section.lead = me or story.author = me
- delete: story.author = me
"#;

fn postgres_url() -> String {
    std::env::var("CHARTER_TEST_POSTGRES_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| {
        panic!("CHARTER_TEST_POSTGRES_URL is not set: the PostgreSQL probe needs a server; run ./scripts/test, which starts one")
    })
}

#[test]
fn the_probe_proves_every_cell_of_every_example() {
    for spec in examples() {
        let out = charter(&["audit", spec.to_str().unwrap(), "--probe"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}{}", spec.display(), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("; 0 mismatches"), "{stdout}");
    }
}

/// The test server's URL through `localhost` over verified TLS: the name
/// its certificate carries, and the CA `./scripts/test` made for it.
fn postgres_verified_tls_url() -> String {
    let ca = std::env::var("CHARTER_TEST_POSTGRES_TLS_CA")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| panic!("CHARTER_TEST_POSTGRES_TLS_CA is not set: run ./scripts/test, which starts PostgreSQL with TLS"));
    let url = postgres_url().replacen("@127.0.0.1:", "@localhost:", 1);
    assert!(url.contains("@localhost:") && !url.contains('?'), "expected the URL ./scripts/test sets, got {url}");
    format!("{url}?sslmode=verify-full&sslrootcert={ca}")
}

#[test]
fn the_probe_proves_every_cell_of_every_example_on_postgres() {
    for spec in examples() {
        let out = Command::new(env!("CARGO_BIN_EXE_charter"))
            .args(["audit", spec.to_str().unwrap(), "--probe"])
            .env("CHARTER_DATABASE_URL", postgres_verified_tls_url())
            .output()
            .expect("charter runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}{}", spec.display(), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("; 0 mismatches"), "{stdout}");
    }
}

#[test]
fn the_probe_proves_roles_literals_paths_and_user_rules() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("app.md");
    std::fs::write(&spec, NEWSROOM).unwrap();
    let out = charter(&["audit", spec.to_str().unwrap(), "--probe", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["probe"]["ok"], true, "{}", report["probe"]);
    let proven = report["probe"]["proven"].as_array().unwrap();
    // Every entity and action was exercised for a writer, and the User
    // field lines for writers and editors.
    for entity in ["User", "Section", "Story", "Note"] {
        for action in ["read", "create", "update", "delete"] {
            assert!(
                proven.iter().any(|p| p["entity"] == entity && p["action"] == action && p["caller"] == "writer#1"),
                "{entity} {action} was not probed"
            );
        }
    }
    for caller in ["writer#1", "editor#1"] {
        for action in ["read email", "update role"] {
            assert!(proven.iter().any(|p| p["entity"] == "User" && p["action"] == action && p["caller"] == caller), "{caller} {action}");
        }
    }
}

#[test]
fn the_matrix_says_each_cell_in_words_and_as_json() {
    let taskboard = root().join("examples/taskboard/app.md");
    let out = charter(&["audit", taskboard.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = m["entities"].as_array().unwrap().iter().find(|e| e["entity"] == "Task").unwrap();
    let read = &task["actions"]["read"]["callers"];
    assert_eq!(read["anonymous"]["verdict"], "denied");
    assert_eq!(read["admin"]["verdict"], "allowed");
    assert_eq!(read["member"]["verdict"], "conditional");
    assert_eq!(read["member"]["condition"], "its project's owner is you");
    let human = charter(&["audit", taskboard.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("if its project's owner is you"), "{text}");
}

/// A real OpenAPI 3.1 validator (PyPI `openapi-spec-validator`) checks the
/// documents. `scripts/test` prepares the virtualenv; run alone, the test
/// makes it. It fails, never skips, when the validator cannot run.
#[test]
fn openapi_documents_pass_an_openapi_3_1_validator() {
    let venv = std::env::var_os("CHARTER_TEST_VENV").map(PathBuf::from).unwrap_or_else(|| root().join("target/test-venv"));
    let python = venv.join("bin/python");
    let ready = |p: &Path| Command::new(p).args(["-c", "import openapi_spec_validator"]).output().is_ok_and(|o| o.status.success());
    if !ready(&python) {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().is_ok_and(|s| s.success())
            && Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "openapi-spec-validator"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            made && ready(&python),
            "cannot set up openapi-spec-validator in {}; run ./scripts/test, which installs it",
            venv.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let newsroom = dir.path().join("app.md");
    std::fs::write(&newsroom, NEWSROOM).unwrap();
    let mut specs = examples();
    specs.push(newsroom);
    for spec in specs {
        let out = charter(&["openapi", spec.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let file = dir.path().join("openapi.json");
        std::fs::write(&file, &out.stdout).unwrap();
        let check = Command::new(&python)
            .args(["-c", "import json, sys\nfrom openapi_spec_validator import validate\nfrom openapi_spec_validator.validation import OpenAPIV31SpecValidator\nvalidate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\nprint('valid')"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}: {}{}",
            spec.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

/// `read email` and `update role` that depend on the row and the role.
const DESKS: &str = r#"# Desks

## Roles
- member (default)
- lead

## Entities

### User
| field | type | rules  |
|-------|------|--------|
| desk  | text | max 20 |

Permissions:
- read: signed in
- update: id = me
- update role: lead and desk = "ops"
- read email: desk = "ops"
"#;

/// The User field cells are proven by requests on both backends: addresses
/// shown exactly where `read email` holds (and `email` filters refused,
/// since the rule depends on the row), role changes allowed exactly where
/// `update role` holds, before and after, for other users and oneself.
#[test]
fn the_probe_proves_the_user_field_rules_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("app.md");
    std::fs::write(&spec, DESKS).unwrap();
    for postgres in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_charter"));
        cmd.args(["audit", spec.to_str().unwrap(), "--probe", "--format", "json"]);
        if postgres {
            cmd.env("CHARTER_DATABASE_URL", postgres_url());
        }
        let out = cmd.output().expect("charter runs");
        assert_eq!(out.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["probe"]["ok"], true, "{}", report["probe"]);
        let proven = report["probe"]["proven"].as_array().unwrap();
        for caller in ["anonymous", "member#1", "member#2", "lead#1", "lead#2"] {
            for action in ["read email", "update role"] {
                assert!(
                    proven.iter().any(|p| p["entity"] == "User" && p["action"] == action && p["caller"] == caller),
                    "{caller} {action} was not probed (postgres: {postgres})"
                );
            }
        }
    }
}
