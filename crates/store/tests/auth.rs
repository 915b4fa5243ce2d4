//! Auth's system tables on SQLite: they live beside the spec's tables,
//! survive migrations that rebuild `users`, and follow a user's deletion.

use charter_schema::DbValue;
use charter_store::auth::{AuditEntry, CreatedUser, NewSession, NewUser, TokenKind};
use charter_store::sqlite::SqliteDb;
use charter_store::{Database, MigrateOptions};
use std::sync::Arc;

const WITH_NICK: &str = "# App\n\n## Roles\n- member (default): people\n- admin: staff\n\n## Entities\n\n### User\n| field | type | rules |\n|---|---|---|\n| nick | text | |\n\n### Note\n| field | type | rules |\n|---|---|---|\n| text | text | |\n";
const WITHOUT_NICK: &str = "# App\n\n## Roles\n- member (default): people\n- admin: staff\n\n## Entities\n\n### Note\n| field | type | rules |\n|---|---|---|\n| text | text | |\n";

fn model(spec: &str) -> Arc<charter_model::AppModel> {
    Arc::new(charter_model::compile(spec).model.expect("spec compiles"))
}

fn audit() -> AuditEntry {
    AuditEntry { at: 1, event: "test".into(), user_id: None, email: None, ip: None, detail: None }
}

async fn user_with_session(db: &Database, m: &Arc<charter_model::AppModel>, email: &str, token_hash: Vec<u8>) -> String {
    let user = m.user();
    let field = |n: &str| user.field_by_name(n).unwrap().0;
    let values = vec![
        (field("email"), DbValue::Text(email.into())),
        (field("role"), DbValue::Text("member".into())),
        (field("verified"), DbValue::Boolean(true)),
    ];
    let session = NewSession {
        id: format!("s-{email}"),
        token_hash,
        created_at: 1_000,
        expires_at: i64::MAX,
        user_agent: Some("ua".into()),
        ip: None,
    };
    let new = NewUser {
        email: email.into(),
        values,
        password_hash: Some("$argon2id$x".into()),
        now: 1_000,
        token: None,
        session: Some(session),
        mail: None,
        audit: audit(),
    };
    match db.records(m.clone()).unwrap().auth().unwrap().create_user(new).await.unwrap() {
        CreatedUser::Created { id, record } => {
            assert_eq!(record["email"], email);
            id
        }
        CreatedUser::EmailTaken => panic!("fresh database"),
    }
}

#[tokio::test]
async fn sessions_survive_a_rebuild_of_users_and_die_with_their_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let db = Database::Sqlite(SqliteDb::open(&path, false).unwrap());
    let a = model(WITH_NICK);
    db.migrate(&a, MigrateOptions::default()).await.unwrap();
    let id = user_with_session(&db, &a, "a@example.com", vec![1; 32]).await;
    user_with_session(&db, &a, "b@example.com", vec![2; 32]).await;

    // Dropping a User field rebuilds `users` (create, copy, drop, rename).
    let b = model(WITHOUT_NICK);
    let report = db.migrate(&b, MigrateOptions { allow_destructive: true, ..Default::default() }).await.unwrap();
    assert!(report.applied);
    assert!(db.schema_differences(&b).await.unwrap().is_empty(), "system tables are not schema drift");
    let auth = db.records(b.clone()).unwrap().auth().unwrap();
    let found = auth.session_by_token_hash(&[1; 32]).await.unwrap().expect("the session survived the rebuild");
    assert_eq!((found.user_id.as_str(), found.role.as_str(), found.verified), (id.as_str(), "member", true));
    assert_eq!(auth.account_by_email("a@example.com").await.unwrap().unwrap().password_hash.as_deref(), Some("$argon2id$x"));
    assert!(matches!(
        auth.create_user(NewUser {
            email: "a@example.com".into(),
            values: vec![],
            password_hash: None,
            now: 1,
            token: None,
            session: None,
            mail: None,
            audit: audit()
        })
        .await
        .unwrap(),
        CreatedUser::EmailTaken
    ));

    // Changing a role ends that user's sessions, whoever changes it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let other: String =
        conn.query_row("SELECT user_id FROM _charter_sessions WHERE token_hash = ?1", [vec![2u8; 32]], |r| r.get(0)).unwrap();
    conn.execute("UPDATE users SET name = 'x' WHERE id = ?1", [&other]).unwrap();
    assert!(auth.session_by_token_hash(&[2; 32]).await.unwrap().is_some(), "other changes keep sessions");
    user_with_session(&db, &b, "c@example.com", vec![4; 32]).await;
    conn.execute("UPDATE users SET role = 'member' WHERE email = 'c@example.com'", []).unwrap();
    assert!(auth.session_by_token_hash(&[4; 32]).await.unwrap().is_some(), "the same role is no change");
    conn.execute("UPDATE users SET role = 'admin' WHERE email = 'c@example.com'", []).unwrap();
    assert!(auth.session_by_token_hash(&[4; 32]).await.unwrap().is_none(), "a new role ends the sessions");
    drop(conn);

    // Deleting the user ends its sessions and credentials in the same statement.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys=ON").unwrap();
    conn.execute("DELETE FROM users WHERE id = ?1", [&id]).unwrap();
    assert!(auth.session_by_token_hash(&[1; 32]).await.unwrap().is_none());
    assert!(auth.session_by_token_hash(&[2; 32]).await.unwrap().is_some(), "other users keep theirs");
    let n: i64 = conn.query_row("SELECT count(*) FROM _charter_credentials WHERE user_id = ?1", [&id], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
    assert!(auth.token_user(&[9; 32], TokenKind::Reset, 0).await.unwrap().is_none());

    // Reopening the file (a restart) finds the sessions there.
    let again = Database::Sqlite(SqliteDb::open(&path, false).unwrap());
    assert!(again.records(b).unwrap().auth().unwrap().session_by_token_hash(&[2; 32]).await.unwrap().is_some());
}

#[tokio::test]
async fn a_login_racing_a_password_change_makes_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::Sqlite(SqliteDb::open(&dir.path().join("app.db"), false).unwrap());
    let m = model(WITHOUT_NICK);
    db.migrate(&m, MigrateOptions::default()).await.unwrap();
    let id = user_with_session(&db, &m, "a@example.com", vec![1; 32]).await;
    let auth = db.records(m).unwrap().auth().unwrap();
    // The change lands after the login verified the old hash...
    assert!(auth.change_password(&id, "$argon2id$x".into(), "$argon2id$y".into(), None, 2, audit()).await.unwrap());
    assert!(auth.session_by_token_hash(&[1; 32]).await.unwrap().is_none(), "a change without a kept session ends them all");
    // ...so the login's session is refused.
    let s = NewSession { id: "late".into(), token_hash: vec![3; 32], created_at: 3, expires_at: i64::MAX, user_agent: None, ip: None };
    assert!(!auth.create_session(&id, Some("$argon2id$x".into()), s.clone(), None, audit()).await.unwrap());
    assert!(auth.session_by_token_hash(&[3; 32]).await.unwrap().is_none());
    assert!(auth.create_session(&id, Some("$argon2id$y".into()), s, None, audit()).await.unwrap());
}
