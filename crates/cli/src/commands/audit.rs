//! `charter audit`: the permission matrix of a spec (caller x entity x
//! action, row conditions in plain words) and, with `--probe`, proof of
//! every cell by real HTTP requests against a scratch instance.
//!
//! The probe seeds rows for every entity as users of every role, then asks
//! the server, as each kind of caller, about each row: `GET` (200 or 404),
//! the list filtered to that id, `PATCH` and `DELETE` with a stale
//! `If-Match` (412 means allowed, 403 visible but refused, 404 invisible,
//! and nothing changes), and a `POST` modelled on the row. What the server
//! answers is compared with what an independent in-memory reading of the
//! rules expects; any difference is a mismatch and exits 1.

use super::{compile_or_report, read_spec};
use crate::{exit, Format};
use charter_app::permissions::{residual, verdict, words, Verdict, Who};
use charter_app::records::cmp_decimal;
use charter_app::{App, AppConfig, SystemClock};
use charter_model::{Action, AppModel, CompareOp, EntityId, Expr, Field, FieldType, Value, USER};
use charter_schema::DbValue;
use charter_store::{sqlite::SqliteDb, Caller, Database, MigrateOptions, Record};
use serde_json::{json, Value as J};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

pub fn run(spec: &Path, format: Format, probe: bool) -> u8 {
    let source = match read_spec(spec) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(model) = compile_or_report(spec, &source) else { return exit::PROBLEM };
    let matrix = matrix(&model);
    let report = if probe {
        // With a PostgreSQL URL the scratch database is made on that server.
        let postgres = match crate::config::Env::load(&crate::config::spec_dir(spec)) {
            Ok(env) => env
                .get("CHARTER_DATABASE_URL")
                .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
                .map(str::to_string),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
        match runtime.block_on(run_probe(Arc::new(model.clone()), postgres)) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: the probe could not run: {e}");
                return exit::USAGE;
            }
        }
    } else {
        None
    };
    match format {
        Format::Json => {
            let mut out = matrix.clone();
            if let Some(r) = &report {
                out["probe"] = r.to_json();
            }
            println!("{}", serde_json::to_string_pretty(&out).expect("serialises"));
        }
        Format::Human => {
            print!("{}", render(&model, &matrix));
            if let Some(r) = &report {
                print!("{}", r.render());
            }
        }
    }
    match report {
        Some(r) if !r.mismatches.is_empty() => exit::PROBLEM,
        _ => exit::OK,
    }
}

/// The kinds of caller a matrix has columns for.
fn callers(model: &AppModel) -> Vec<(String, Who)> {
    let mut out = vec![("anonymous".to_string(), Who::Anonymous)];
    for (i, r) in model.roles.iter().enumerate() {
        out.push((r.name.clone(), Who::Role(charter_model::RoleId(i))));
    }
    out
}

fn cell(model: &AppModel, rule: Option<&Expr>, who: Who) -> J {
    match verdict(rule, who) {
        Verdict::Allowed => json!({"verdict": "allowed"}),
        Verdict::Denied | Verdict::Unknown => json!({"verdict": "denied"}),
        Verdict::Depends => {
            let r = residual(rule.expect("depends on a rule"), who).expect("depends");
            json!({"verdict": "conditional", "condition": words(model, &r)})
        }
    }
}

/// The matrix as JSON: `entities[].actions.<action>.<caller>`.
pub fn matrix(model: &AppModel) -> J {
    let mut entities = Vec::new();
    for e in &model.entities {
        let mut actions = serde_json::Map::new();
        for action in Action::ALL {
            let rule = e.permissions.get(action);
            let mut cells = serde_json::Map::new();
            for (name, who) in callers(model) {
                cells.insert(name, cell(model, rule, who));
            }
            actions.insert(action.as_str().into(), json!({"rule": rule.map(|r| words(model, r)), "callers": cells}));
        }
        let mut fields = Vec::new();
        for fr in &e.permissions.fields {
            let mut cells = serde_json::Map::new();
            for (name, who) in callers(model) {
                cells.insert(name, cell(model, Some(&fr.condition), who));
            }
            fields.push(json!({"action": fr.action.as_str(), "field": e.field(fr.field).name, "rule": words(model, &fr.condition), "callers": cells}));
        }
        entities.push(json!({"entity": e.name, "path": format!("/api/{}", e.plural), "actions": actions, "field_rules": fields}));
    }
    json!({"app": model.name, "callers": callers(model).into_iter().map(|(n, _)| n).collect::<Vec<_>>(), "entities": entities})
}

fn render(model: &AppModel, m: &J) -> String {
    let names: Vec<String> = callers(model).into_iter().map(|(n, _)| n).collect();
    let mut out = format!("Permissions of `{}` (deny by default; conditions are about the row)\n", model.name);
    let short = |c: &J| match c["verdict"].as_str() {
        Some("allowed") => "yes".to_string(),
        Some("denied") => "no".to_string(),
        _ => format!("if {}", c["condition"].as_str().unwrap_or("?")),
    };
    for e in m["entities"].as_array().expect("entities") {
        out.push_str(&format!("\n{} ({})\n", e["entity"].as_str().unwrap_or(""), e["path"].as_str().unwrap_or("")));
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        for action in Action::ALL {
            let a = &e["actions"][action.as_str()];
            rows.push((action.as_str().to_string(), names.iter().map(|n| short(&a["callers"][n])).collect()));
        }
        for fr in e["field_rules"].as_array().into_iter().flatten() {
            let label = format!("{} {}", fr["action"].as_str().unwrap_or(""), fr["field"].as_str().unwrap_or(""));
            rows.push((label, names.iter().map(|n| short(&fr["callers"][n])).collect()));
        }
        let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
        let widths: Vec<usize> =
            names.iter().enumerate().map(|(i, n)| rows.iter().map(|r| r.1[i].chars().count()).max().unwrap_or(0).max(n.len())).collect();
        out.push_str(&format!("  {:w0$}", "action"));
        for (n, w) in names.iter().zip(&widths) {
            out.push_str(&format!(" | {n:w$}"));
        }
        out.push('\n');
        out.push_str(&format!("  {}", "-".repeat(w0)));
        for w in &widths {
            out.push_str(&format!("-|-{}", "-".repeat(*w)));
        }
        out.push('\n');
        for (label, cells) in rows {
            out.push_str(&format!("  {label:w0$}"));
            for (c, w) in cells.iter().zip(&widths) {
                out.push_str(&format!(" | {c:w$}"));
            }
            out.push('\n');
        }
    }
    out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
}

/// One caller of the probe: a kind of caller and, when signed in, its user.
struct ProbeCaller {
    label: String,
    who: Who,
    user: Option<String>,
    token: Option<String>,
}

#[derive(Default)]
pub struct Report {
    /// (caller label, entity, action) -> requests that agreed.
    proven: BTreeMap<(String, String, String), usize>,
    pub mismatches: Vec<String>,
    notes: Vec<String>,
}

impl Report {
    fn check(&mut self, who: &str, entity: &str, action: &str, expected: u16, got: u16, what: &str) {
        if expected == got {
            *self.proven.entry((who.into(), entity.into(), action.into())).or_default() += 1;
        } else {
            self.mismatches.push(format!("{who} {action} {entity}: expected {expected}, got {got} ({what})"));
        }
    }

    fn to_json(&self) -> J {
        let proven: Vec<J> =
            self.proven.iter().map(|((w, e, a), n)| json!({"caller": w, "entity": e, "action": a, "requests": n})).collect();
        json!({"ok": self.mismatches.is_empty(), "proven": proven, "mismatches": self.mismatches, "notes": self.notes})
    }

    fn render(&self) -> String {
        let total: usize = self.proven.values().sum();
        let mut out = format!("\nProbe: {total} requests agreed with the rules over {} cells", self.proven.len());
        out.push_str(&format!("; {} mismatches\n", self.mismatches.len()));
        for m in &self.mismatches {
            out.push_str(&format!("  MISMATCH {m}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        if self.mismatches.is_empty() {
            out.push_str("Every probed cell behaves as the matrix says.\n");
        }
        out
    }
}

/// The rows the probe knows, by entity and id, as the server returned them.
type Rows = HashMap<EntityId, Vec<Record>>;

/// A scratch database: a SQLite file in a temporary folder, or a new
/// database on the PostgreSQL server at `postgres` (dropped afterwards).
struct Scratch {
    _dir: tempfile::TempDir,
    postgres: Option<charter_store::postgres::ScratchDatabase>,
}

impl Scratch {
    async fn open(model: &AppModel, postgres: Option<String>) -> Result<(Scratch, Database), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let Some(server_url) = postgres else {
            let db = SqliteDb::open(&dir.path().join("app.db"), false).map_err(|e| e.to_string())?;
            db.migrate(model, MigrateOptions::default()).map_err(|e| e.to_string())?;
            return Ok((Scratch { _dir: dir, postgres: None }, Database::Sqlite(db)));
        };
        let scratch_db = charter_store::postgres::ScratchDatabase::create(&server_url).await.map_err(|e| e.to_string())?;
        let url = charter_store::DatabaseUrl::parse(&scratch_db.url).map_err(|e| e.to_string())?;
        let scratch = Scratch { _dir: dir, postgres: Some(scratch_db) };
        let db = match Database::open(&charter_store::StoreConfig { url, synchronous_full: false }).await {
            Ok(db) => db,
            Err(e) => {
                scratch.close().await;
                return Err(e.to_string());
            }
        };
        if let Err(e) = db.migrate(model, MigrateOptions::default()).await {
            drop(db);
            scratch.close().await;
            return Err(e.to_string());
        }
        Ok((scratch, db))
    }

    async fn close(self) {
        if let Some(db) = self.postgres {
            if let Err(e) = db.drop_now().await {
                eprintln!("warning: {e}");
            }
        }
    }
}

async fn run_probe(model: Arc<AppModel>, postgres: Option<String>) -> Result<Report, String> {
    let (scratch, db) = Scratch::open(&model, postgres).await?;
    let result = probe_on(model, db).await;
    scratch.close().await;
    result
}

async fn probe_on(model: Arc<AppModel>, db: Database) -> Result<Report, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let app = Arc::new(App::new(model.clone(), AppConfig::dev(url.clone()), db, Arc::new(SystemClock)).map_err(|e| format!("{e:?}"))?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = app.clone();
    tokio::spawn(async move {
        let _ = charter_web::serve(served, listener, async {
            let _ = stopped.await;
        })
        .await;
    });
    let client = reqwest::Client::new();
    let mut report = Report::default();

    // Two users per role, so "mine" and "someone else's" both exist for each.
    let mut probe_callers = vec![ProbeCaller { label: "anonymous".into(), who: Who::Anonymous, user: None, token: None }];
    let mut rows: Rows = HashMap::new();
    let mut counter = 0u64;
    const PASSWORD: &str = "audit-probe-password-7d1x";
    for (i, role) in model.roles.iter().enumerate() {
        for n in 1..=2 {
            let email = format!("{}{n}@probe.invalid", role.name.replace('_', "-"));
            let rec = app
                .create_user(&email, Some(&role.name), Some(PASSWORD.into()), None)
                .await
                .map_err(|e| format!("creating {email}: {e:?}"))?;
            let id = rec["id"].as_str().unwrap_or_default().to_string();
            let role_id = charter_model::RoleId(i);
            // The User's own fields, as for other entities: the first user of
            // each role takes the literals the rules name, the second other
            // values (as themselves; left empty when they may not).
            let mut rec = rec;
            counter += 1;
            let caller = Caller::user(id.clone(), role_id);
            if let Some(values) = seed_values(&model, USER, &caller, &rows, n - 1, counter).filter(|v| !v.is_empty()) {
                if let Ok(updated) = app.records.update_with_rule(USER, &caller, &id, values, None, Some(Expr::Anyone)).await {
                    rec = updated;
                }
            }
            let r = client
                .post(format!("{url}/api/auth/login"))
                .json(&json!({"email": email, "password": PASSWORD}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let body: J = r.json().await.map_err(|e| e.to_string())?;
            let token = body["token"].as_str().ok_or_else(|| format!("login as {email} gave no token: {body}"))?.to_string();
            rows.entry(USER).or_default().push(rec);
            probe_callers.push(ProbeCaller {
                label: format!("{}#{n}", role.name),
                who: Who::Role(role_id),
                user: Some(id),
                token: Some(token),
            });
        }
    }

    // Seed rows of every entity as every user (rules bypassed with a rule
    // that always holds), entities referred to before those that refer.
    for entity in seed_order(&model) {
        if entity == USER {
            continue;
        }
        for pc in probe_callers.iter().filter(|c| c.user.is_some()) {
            let caller = Caller::user(
                pc.user.clone().expect("signed in"),
                match pc.who {
                    Who::Role(r) => r,
                    Who::Anonymous => unreachable!(),
                },
            );
            for variant in 0..2 {
                counter += 1;
                let Some(values) = seed_values(&model, entity, &caller, &rows, variant, counter) else { continue };
                // A reference this user cannot see fails; other users seed those rows.
                if let Ok(rec) = app.records.create_with_rule(entity, &caller, values, Some(Expr::Anyone)).await {
                    rows.entry(entity).or_default().push(rec);
                }
            }
        }
        if rows.get(&entity).is_none_or(Vec::is_empty) {
            report.notes.push(format!(
                "no {} rows could be seeded; its read, update and delete cells were probed on lists only",
                model.entity(entity).name
            ));
        }
    }

    for pc in &probe_callers {
        for e in &model.entities {
            let list_url = format!("{url}/api/{}", e.plural);
            // Lists: exactly the visible seeded rows (checked one id at a time
            // through the filter, so later creates do not disturb it).
            for rec in rows.get(&e.id).cloned().unwrap_or_default() {
                let id = rec["id"].as_str().unwrap_or_default().to_string();
                let readable = holds(&model, e.permissions.read.as_ref(), &rec, pc, &rows);
                let expected_get = if readable { 200 } else { 404 };
                let got = send(&client, pc, reqwest::Method::GET, &format!("{list_url}/{id}"), None, None).await?;
                report.check(&pc.label, &e.name, "read", expected_get, got.0, &format!("GET {id}"));
                let listed = send(&client, pc, reqwest::Method::GET, &format!("{list_url}?id={id}&count=true"), None, None).await?;
                let count = listed.1["count"].as_u64().unwrap_or(u64::MAX);
                report.check(
                    &pc.label,
                    &e.name,
                    "read",
                    u16::from(readable),
                    u16::try_from(count).unwrap_or(u16::MAX),
                    &format!("list ?id={id}"),
                );
                if e.id == USER {
                    probe_user_fields(&mut report, &client, &model, pc, &list_url, &rec, readable, &got.1, &rows).await?;
                }
                for (action, method) in [(Action::Update, reqwest::Method::PATCH), (Action::Delete, reqwest::Method::DELETE)] {
                    let allowed = holds(&model, e.permissions.get(action), &rec, pc, &rows);
                    let expected = if !readable {
                        404
                    } else if allowed {
                        412
                    } else {
                        403
                    };
                    let body = (action == Action::Update).then(|| json!({}));
                    let got = send(&client, pc, method, &format!("{list_url}/{id}"), body, Some("\"0\"")).await?;
                    report.check(
                        &pc.label,
                        &e.name,
                        action.as_str(),
                        expected,
                        got.0,
                        &format!("{} {id} with a stale If-Match", action.as_str()),
                    );
                }
            }
            // Creates modelled on each seeded row (and on nothing, for
            // entities without rows).
            if e.id == USER {
                counter += 1;
                let body = json!({"email": format!("made{counter}@probe.invalid")});
                let expected = create_expectation(&model, e.id, Some(&body), pc, &rows);
                let got = send(&client, pc, reqwest::Method::POST, &list_url, Some(body), None).await?;
                report.check(&pc.label, &e.name, "create", expected, got.0, "POST a user");
                continue;
            }
            let templates = rows.get(&e.id).cloned().unwrap_or_default();
            for rec in templates {
                counter += 1;
                let body = create_body(&model, e.id, &rec, counter);
                let expected = create_expectation(&model, e.id, Some(&body), pc, &rows);
                let got = send(&client, pc, reqwest::Method::POST, &list_url, Some(body.clone()), None).await?;
                report.check(&pc.label, &e.name, "create", expected, got.0, &format!("POST {body}"));
            }
        }
    }
    // Updates hold after the change too: move references of rows the
    // caller may update to each candidate target, and compare.
    for pc in probe_callers.iter().filter(|c| c.user.is_some()) {
        for e in &model.entities {
            let refs: Vec<(String, EntityId)> = e
                .declared_fields()
                .filter(|f| !f.read_only)
                .filter_map(|f| match f.ty {
                    FieldType::Ref(t) => Some((f.name.clone(), t)),
                    _ => None,
                })
                .collect();
            if refs.is_empty() {
                continue;
            }
            let count = rows.get(&e.id).map_or(0, Vec::len);
            for i in 0..count.min(4) {
                for (field, target) in &refs {
                    let targets: Vec<String> =
                        rows.get(target).into_iter().flatten().take(4).filter_map(|r| r["id"].as_str().map(str::to_string)).collect();
                    for target_id in targets {
                        let rec = rows[&e.id][i].clone();
                        let readable = holds(&model, e.permissions.read.as_ref(), &rec, pc, &rows);
                        if !readable || !holds(&model, e.permissions.update.as_ref(), &rec, pc, &rows) {
                            continue;
                        }
                        let visible = rows
                            .get(target)
                            .and_then(|rs| rs.iter().find(|r| r["id"].as_str() == Some(target_id.as_str())))
                            .is_some_and(|t| holds(&model, model.entity(*target).permissions.read.as_ref(), t, pc, &rows));
                        let mut moved = rec.clone();
                        moved.insert(field.clone(), J::String(target_id.clone()));
                        let after = holds(&model, e.permissions.update.as_ref(), &moved, pc, &rows);
                        let expected = if !visible {
                            422
                        } else if after {
                            200
                        } else {
                            403
                        };
                        let id = rec["id"].as_str().unwrap_or_default();
                        let path = format!("{url}/api/{}/{id}", e.plural);
                        let got =
                            send(&client, pc, reqwest::Method::PATCH, &path, Some(json!({ field.as_str(): target_id })), None).await?;
                        report.check(&pc.label, &e.name, "update", expected, got.0, &format!("PATCH {id} {field} -> {target_id}"));
                        if got.0 == 200 {
                            if let Some(r) = rows.get_mut(&e.id).and_then(|rs| rs.get_mut(i)) {
                                *r = got.1.as_object().cloned().unwrap_or_default();
                            }
                        }
                    }
                }
            }
        }
    }
    probe_role_changes(&mut report, &client, &app, &model, &url, &probe_callers, &mut rows).await?;
    let _ = stop.send(());
    Ok(report)
}

/// `User.email`'s `read email` rule and `User.role`'s `update role` rule.
fn email_rule(model: &AppModel) -> Option<&Expr> {
    let user = model.user();
    user.permissions.field_rule(Action::Read, user.field_by_name("email").expect("User has email").0)
}

fn role_rule(model: &AppModel) -> Option<&Expr> {
    let user = model.user();
    user.permissions.field_rule(Action::Update, user.field_by_name("role").expect("User has role").0)
}

/// A role other than the one `user` has, if the spec has one.
fn other_role(model: &AppModel, user: &Record) -> Option<String> {
    model.roles.iter().map(|r| r.name.clone()).find(|r| user["role"].as_str() != Some(r.as_str()))
}

/// The field-scoped User cells for one user row, by real requests:
/// `read email` (the address is in the row exactly when the caller may read
/// it; a filter on `email` is accepted only from callers who may read every
/// address, and then finds exactly the visible row), and `update role` (a
/// role change with a stale `If-Match`: 412 when allowed, 403 when the rule
/// fails, 404 for an invisible row, 422 for everyone without the line).
#[allow(clippy::too_many_arguments)]
async fn probe_user_fields(
    report: &mut Report,
    client: &reqwest::Client,
    model: &AppModel,
    pc: &ProbeCaller,
    list_url: &str,
    rec: &Record,
    readable: bool,
    got: &J,
    rows: &Rows,
) -> Result<(), String> {
    let id = rec["id"].as_str().unwrap_or_default();
    let own = pc.user.as_deref() == Some(id);
    let email_rule = email_rule(model);
    if readable {
        let visible = own || holds(model, email_rule, rec, pc, rows);
        let shown = got.get("email").is_some_and(|v| v.as_str() == rec["email"].as_str());
        report.check(&pc.label, "User", "read email", u16::from(visible), u16::from(shown), &format!("email in GET {id}"));
    }
    let address = rec["email"].as_str().unwrap_or_default();
    let may_filter = verdict(email_rule, pc.who) == Verdict::Allowed;
    let listed = send(client, pc, reqwest::Method::GET, &format!("{list_url}?email={address}&count=true"), None, None).await?;
    report.check(&pc.label, "User", "read email", if may_filter { 200 } else { 400 }, listed.0, &format!("list ?email={address}"));
    if may_filter && listed.0 == 200 {
        let count = listed.1["count"].as_u64().unwrap_or(u64::MAX);
        report.check(
            &pc.label,
            "User",
            "read email",
            u16::from(readable),
            u16::try_from(count).unwrap_or(u16::MAX),
            &format!("count of list ?email={address}"),
        );
    }
    if let Some(other) = other_role(model, rec) {
        let expected = match role_rule(model) {
            None => 422,
            Some(_) if !readable => 404,
            Some(rule) if holds(model, Some(rule), rec, pc, rows) => 412,
            Some(_) => 403,
        };
        let got =
            send(client, pc, reqwest::Method::PATCH, &format!("{list_url}/{id}"), Some(json!({ "role": other })), Some("\"0\"")).await?;
        report.check(&pc.label, "User", "update role", expected, got.0, &format!("PATCH {id} role -> {other} with a stale If-Match"));
    }
    Ok(())
}

/// Role changes that take effect, last of all because they end sessions:
/// each caller changes the role of a user made for it alone (200 when
/// `update role` holds before and after, then the new role is read back),
/// and then its own role, after which its session is over (401).
async fn probe_role_changes(
    report: &mut Report,
    client: &reqwest::Client,
    app: &App,
    model: &AppModel,
    url: &str,
    probe_callers: &[ProbeCaller],
    rows: &mut Rows,
) -> Result<(), String> {
    let rule = role_rule(model);
    let read = model.user().permissions.read.as_ref();
    let mut targets = Vec::new();
    for (n, _) in probe_callers.iter().enumerate() {
        let email = format!("role-target{n}@probe.invalid");
        let rec = app.create_user(&email, None, None, None).await.map_err(|e| format!("creating {email}: {e:?}"))?;
        rows.entry(USER).or_default().push(rec.clone());
        targets.push(rec);
    }
    // One pass over fresh targets, then one over the callers themselves.
    for own in [false, true] {
        for (n, pc) in probe_callers.iter().enumerate() {
            let rec = if own {
                let Some(me) = &pc.user else { continue };
                match rows.get(&USER).and_then(|rs| rs.iter().find(|r| r["id"].as_str() == Some(me.as_str()))) {
                    Some(r) => r.clone(),
                    None => continue,
                }
            } else {
                targets[n].clone()
            };
            let Some(other) = other_role(model, &rec) else { continue };
            let id = rec["id"].as_str().unwrap_or_default().to_string();
            let mut moved = rec.clone();
            moved.insert("role".into(), J::String(other.clone()));
            let expected = match rule {
                None => 422,
                Some(_) if !holds(model, read, &rec, pc, rows) => 404,
                Some(r) if holds(model, Some(r), &rec, pc, rows) && holds(model, Some(r), &moved, pc, rows) => 200,
                Some(_) => 403,
            };
            let version = format!("\"{}\"", rec["version"].as_i64().unwrap_or(1));
            let path = format!("{url}/api/users/{id}");
            let got = send(client, pc, reqwest::Method::PATCH, &path, Some(json!({ "role": other })), Some(&version)).await?;
            let whose = if own { "their own" } else { "a new user's" };
            report.check(&pc.label, "User", "update role", expected, got.0, &format!("PATCH {whose} role {id} -> {other}"));
            if got.0 != 200 {
                continue;
            }
            let changed = got.1["role"].as_str() == Some(other.as_str());
            report.check(&pc.label, "User", "update role", 1, u16::from(changed), &format!("role of {id} after the change"));
            if let Some(r) = rows.get_mut(&USER).and_then(|rs| rs.iter_mut().find(|r| r["id"].as_str() == Some(id.as_str()))) {
                *r = got.1.as_object().cloned().unwrap_or_default();
            }
            if own {
                // A role change ends the user's sessions, this one included.
                let me = send(client, pc, reqwest::Method::GET, &format!("{url}/api/users/me"), None, None).await?;
                report.check(&pc.label, "User", "update role", 401, me.0, "GET /api/users/me after changing their own role");
            }
        }
    }
    Ok(())
}

async fn send(
    client: &reqwest::Client,
    pc: &ProbeCaller,
    method: reqwest::Method,
    url: &str,
    body: Option<J>,
    if_match: Option<&str>,
) -> Result<(u16, J), String> {
    let mut req = client.request(method, url);
    if let Some(t) = &pc.token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(m) = if_match {
        req = req.header("if-match", m);
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(J::Null)))
}

/// Entities in an order where every required reference is seeded first.
fn seed_order(model: &AppModel) -> Vec<EntityId> {
    let mut done: Vec<EntityId> = vec![USER];
    while done.len() < model.entities.len() {
        let before = done.len();
        for e in &model.entities {
            if done.contains(&e.id) {
                continue;
            }
            let ready = e.fields.iter().all(|f| match f.ty {
                FieldType::Ref(t) => t == e.id || done.contains(&t) || !f.required,
                _ => true,
            });
            if ready {
                done.push(e.id);
            }
        }
        if done.len() == before {
            // A cycle of required references: seed the rest as they come.
            for e in &model.entities {
                if !done.contains(&e.id) {
                    done.push(e.id);
                }
            }
        }
    }
    done
}

/// Literals the rules compare a field with: seeding them makes conditions
/// such as `status = open` true for some rows and false for others.
fn rule_literals(model: &AppModel, entity: EntityId, field: &str) -> Vec<Value> {
    fn walk(e: &Expr, field: &str, out: &mut Vec<Value>) {
        match e {
            Expr::Compare { path, value, .. } if path.steps.len() == 1 && path.steps[0].name == field && *value != Value::Me => {
                out.push(value.clone())
            }
            Expr::Not { expr } => walk(expr, field, out),
            Expr::And { items } | Expr::Or { items } => items.iter().for_each(|i| walk(i, field, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let p = &model.entity(entity).permissions;
    for a in Action::ALL {
        if let Some(r) = p.get(a) {
            walk(r, field, &mut out);
        }
    }
    // `update role` and `read email` on User.
    for fr in &p.fields {
        walk(&fr.condition, field, &mut out);
    }
    // Once each: a literal named by two rules must not crowd out the
    // second variant's other value.
    let mut unique = Vec::new();
    for v in out {
        if !unique.contains(&v) {
            unique.push(v);
        }
    }
    unique
}

fn seed_values(
    model: &AppModel,
    entity: EntityId,
    caller: &Caller,
    rows: &Rows,
    variant: usize,
    n: u64,
) -> Option<Vec<(charter_model::FieldId, DbValue)>> {
    let e = model.entity(entity);
    let mut values = Vec::new();
    for (i, f) in e.fields.iter().enumerate() {
        if f.builtin.is_some() {
            continue;
        }
        let literals = rule_literals(model, entity, &f.name);
        // The first variant takes the literal a rule names, the second a
        // sample value that (most likely) differs from it.
        let v = match literals.get(variant).and_then(|l| literal_db(model, l)) {
            Some(v) => Some(v),
            None => sample(model, f, caller, rows, variant, n),
        };
        match v {
            Some(v) => values.push((charter_model::FieldId(i), v)),
            None if f.required => return None,
            None => {}
        }
    }
    Some(values)
}

fn literal_db(model: &AppModel, v: &Value) -> Option<DbValue> {
    Some(match v {
        Value::Me => return None,
        Value::Bool(b) => DbValue::Boolean(*b),
        Value::Int(n) => DbValue::Integer(*n),
        Value::Decimal(d) => DbValue::Decimal(d.clone()),
        Value::Text(t) => DbValue::Text(t.clone()),
        Value::Date(d) => DbValue::Date(d.clone()),
        Value::Enum(m) => DbValue::Text(m.clone()),
        Value::Role(r) => DbValue::Text(model.role(*r).name.clone()),
    })
}

/// A valid value for `f`, varied by `variant` so rows differ.
fn sample(model: &AppModel, f: &Field, caller: &Caller, rows: &Rows, variant: usize, n: u64) -> Option<DbValue> {
    use charter_model::Bound;
    Some(match &f.ty {
        FieldType::Text | FieldType::Email | FieldType::Url => {
            if f.pattern.is_some() {
                return default_db(f);
            }
            let min = match &f.min {
                Some(Bound::Length(m)) => *m as usize,
                _ => 0,
            };
            let max = match &f.max {
                Some(Bound::Length(m)) => *m as usize,
                _ => 200,
            };
            let base = match f.ty {
                FieldType::Email => format!("p{n}@probe.invalid"),
                FieldType::Url => format!("https://probe.invalid/{n}"),
                _ => format!("probe {n} v{variant}"),
            };
            let mut s = base;
            while s.chars().count() < min {
                s.push('x');
            }
            if s.chars().count() > max {
                if f.ty != FieldType::Text {
                    return None;
                }
                s = format!("{n:0>width$}", width = min.max(1)).chars().rev().take(max).collect();
            }
            DbValue::Text(s)
        }
        FieldType::Int => {
            let lo = match &f.min {
                Some(Bound::Int(m)) => *m,
                _ => 0,
            };
            let hi = match &f.max {
                Some(Bound::Int(m)) => *m,
                _ => i64::MAX,
            };
            DbValue::Integer((lo.saturating_add(variant as i64)).min(hi))
        }
        FieldType::Decimal => match &f.min {
            Some(Bound::Decimal(d)) => DbValue::Decimal(d.clone()),
            Some(Bound::Int(d)) => DbValue::Decimal(d.to_string()),
            _ => match &f.max {
                Some(Bound::Decimal(d)) => DbValue::Decimal(d.clone()),
                Some(Bound::Int(d)) => DbValue::Decimal(d.to_string()),
                _ => DbValue::Decimal(format!("{variant}.5")),
            },
        },
        FieldType::Bool => DbValue::Boolean(variant == 0),
        FieldType::Date => match (&f.min, &f.max) {
            (Some(Bound::Date(d)), _) | (None, Some(Bound::Date(d))) => DbValue::Date(d.clone()),
            _ => DbValue::Date("2025-06-30".into()),
        },
        FieldType::DateTime => DbValue::DateTime("2025-06-30T12:00:00.000Z".into()),
        FieldType::Json => DbValue::Json("{}".into()),
        FieldType::Enum(members) => DbValue::Text(members[variant % members.len()].clone()),
        FieldType::Role => DbValue::Text(model.role(model.default_role).name.clone()),
        FieldType::Id => return None,
        FieldType::Ref(target) => {
            let mut candidates = rows.get(target).cloned().unwrap_or_default();
            if *target == USER {
                // The seeding user for the first variant, another for the second.
                let me = caller.user.clone().unwrap_or_default();
                candidates.sort_by_key(|r| r["id"].as_str() != Some(me.as_str()));
                if variant == 1 {
                    candidates.reverse();
                }
            } else {
                let mine: Vec<Record> = candidates.iter().filter(|r| owned_by(r, caller)).cloned().collect();
                if !mine.is_empty() {
                    candidates = mine;
                }
                if variant == 1 {
                    candidates.reverse();
                }
            }
            DbValue::Text(candidates.first()?["id"].as_str()?.to_string())
        }
    })
}

/// Whether a seeded row points at the caller through a `User` field: the
/// rows a user made point at them.
fn owned_by(r: &Record, caller: &Caller) -> bool {
    let me = caller.user.as_deref().unwrap_or("");
    r.values().any(|v| v.as_str() == Some(me))
}

fn default_db(f: &Field) -> Option<DbValue> {
    use charter_model::DefaultValue as D;
    Some(match f.default.as_ref()? {
        D::Text(s) | D::Enum(s) => DbValue::Text(s.clone()),
        _ => return None,
    })
}

/// The body of a create modelled on a seeded row: its declared fields,
/// minus those a default fills from the caller, with fresh unique values.
fn create_body(model: &AppModel, entity: EntityId, rec: &Record, n: u64) -> J {
    let e = model.entity(entity);
    let mut body = serde_json::Map::new();
    for f in e.declared_fields() {
        if f.default == Some(charter_model::DefaultValue::Me) {
            continue;
        }
        let Some(v) = rec.get(&f.name) else { continue };
        if v.is_null() {
            continue;
        }
        let v = if f.unique {
            match (&f.ty, v) {
                (FieldType::Text, J::String(s)) => J::String(
                    format!("{n}{s}")
                        .chars()
                        .take(match &f.max {
                            Some(charter_model::Bound::Length(m)) => *m as usize,
                            _ => 10_000,
                        })
                        .collect(),
                ),
                (FieldType::Email, _) => J::String(format!("u{n}@probe.invalid")),
                (FieldType::Url, _) => J::String(format!("https://probe.invalid/u{n}")),
                (FieldType::Int, _) => J::from(n as i64 + 1_000_000),
                _ => v.clone(),
            }
        } else {
            v.clone()
        };
        body.insert(f.name.clone(), v);
    }
    J::Object(body)
}

/// What a create should answer for this caller: 401/403 when the rule can
/// never hold for them, 422 when a reference names a row they cannot read,
/// else 201 or 403 as the rule says about the new row.
fn create_expectation(model: &AppModel, entity: EntityId, body: Option<&J>, pc: &ProbeCaller, rows: &Rows) -> u16 {
    let e = model.entity(entity);
    if verdict(e.permissions.create.as_ref(), pc.who).never() {
        return if pc.user.is_none() { 401 } else { 403 };
    }
    let Some(body) = body else { return 403 };
    let mut new = body.as_object().cloned().unwrap_or_default();
    for f in e.declared_fields() {
        if f.default == Some(charter_model::DefaultValue::Me) {
            new.insert(f.name.clone(), pc.user.clone().map_or(J::Null, J::String));
        }
    }
    for f in e.declared_fields() {
        if let (FieldType::Ref(t), Some(J::String(id))) = (&f.ty, new.get(&f.name)) {
            let target = rows.get(t).and_then(|rs| rs.iter().find(|r| r["id"].as_str() == Some(id.as_str())));
            let visible = target.is_some_and(|r| holds(model, model.entity(*t).permissions.read.as_ref(), r, pc, rows));
            if !visible {
                return 422;
            }
        }
    }
    if f_required_missing(model, entity, &new) {
        return 422;
    }
    if holds(model, e.permissions.create.as_ref(), &new, pc, rows) {
        201
    } else {
        403
    }
}

fn f_required_missing(model: &AppModel, entity: EntityId, new: &Record) -> bool {
    model.entity(entity).declared_fields().any(|f| f.required && f.default.is_none() && new.get(&f.name).is_none_or(J::is_null))
}

/// SQL's three values, as the store evaluates rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum T {
    True,
    False,
    Unknown,
}

fn holds(model: &AppModel, rule: Option<&Expr>, rec: &Record, pc: &ProbeCaller, rows: &Rows) -> bool {
    rule.is_some_and(|r| eval(model, r, rec, pc, rows) == T::True)
}

fn eval(model: &AppModel, e: &Expr, rec: &Record, pc: &ProbeCaller, rows: &Rows) -> T {
    let b = |x: bool| if x { T::True } else { T::False };
    match e {
        Expr::Anyone => T::True,
        Expr::SignedIn => b(pc.user.is_some()),
        Expr::Role { role } => b(pc.who == Who::Role(*role)),
        Expr::Not { expr } => match eval(model, expr, rec, pc, rows) {
            T::True => T::False,
            T::False => T::True,
            T::Unknown => T::Unknown,
        },
        Expr::And { items } => {
            let v: Vec<T> = items.iter().map(|i| eval(model, i, rec, pc, rows)).collect();
            if v.contains(&T::False) {
                T::False
            } else if v.contains(&T::Unknown) {
                T::Unknown
            } else {
                T::True
            }
        }
        Expr::Or { items } => {
            let v: Vec<T> = items.iter().map(|i| eval(model, i, rec, pc, rows)).collect();
            if v.contains(&T::True) {
                T::True
            } else if v.contains(&T::Unknown) {
                T::Unknown
            } else {
                T::False
            }
        }
        Expr::Compare { path, op, value } => {
            let mut cur: Option<Record> = Some(rec.clone());
            let mut v = J::Null;
            for (i, step) in path.steps.iter().enumerate() {
                let Some(r) = &cur else { return T::Unknown };
                v = r.get(&step.name).cloned().unwrap_or(J::Null);
                if i + 1 < path.steps.len() {
                    let f = model.entity(step.entity).field(step.field);
                    let FieldType::Ref(t) = f.ty else { return T::Unknown };
                    cur = v.as_str().and_then(|id| rows.get(&t).and_then(|rs| rs.iter().find(|r| r["id"].as_str() == Some(id)).cloned()));
                }
            }
            if v.is_null() {
                return T::Unknown;
            }
            let last = path.last();
            let field = model.entity(last.entity).field(last.field);
            let eq = match value {
                Value::Me => match &pc.user {
                    None => return T::Unknown,
                    Some(u) => v.as_str() == Some(u.as_str()),
                },
                Value::Bool(x) => v.as_bool() == Some(*x),
                Value::Int(n) => v.as_i64() == Some(*n),
                Value::Decimal(d) => v.as_str().is_some_and(|s| cmp_decimal(s, d).is_eq()),
                Value::Text(t) if field.ty == FieldType::DateTime => {
                    v.as_str().map(charter_app::records::normalize_datetime) == Some(charter_app::records::normalize_datetime(t))
                }
                Value::Text(t) | Value::Date(t) | Value::Enum(t) => v.as_str() == Some(t.as_str()),
                Value::Role(r) => v.as_str() == Some(model.role(*r).name.as_str()),
            };
            b(if *op == CompareOp::Eq { eq } else { !eq })
        }
    }
}
