//! PostgreSQL over TLS, with libpq's `sslmode` meanings, against the server
//! `./scripts/test` starts with TLS on. Its certificate is signed by a
//! throwaway CA (the PEM file in `CHARTER_TEST_POSTGRES_TLS_CA`) and names
//! `localhost` only, so connecting to 127.0.0.1 is a name mismatch.

mod common;

use charter_store::{Database, DatabaseUrl, MigrateOptions, StoreConfig, StoreError};

fn ca() -> String {
    match std::env::var("CHARTER_TEST_POSTGRES_TLS_CA") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => panic!("CHARTER_TEST_POSTGRES_TLS_CA is not set: the TLS tests need the server ./scripts/test starts with TLS on"),
    }
}

/// A URL to `db` on the test server's port through `host`, with `query`.
fn url(host: &str, db: &str, query: &str) -> String {
    let admin: tokio_postgres::Config = common::postgres_admin_url().parse().expect("the admin URL parses");
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    let user = admin.get_user().unwrap_or("postgres");
    let query = if query.is_empty() { String::new() } else { format!("?{query}") };
    format!("postgres://{user}@{host}:{port}/{db}{query}")
}

async fn open(url: &str) -> Result<Database, StoreError> {
    Database::open(&StoreConfig { url: DatabaseUrl::parse(url)?, synchronous_full: false }).await
}

/// Whether the store's connection is encrypted, as the server sees it.
async fn encrypted(url: &str) -> bool {
    let db = open(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let Database::Postgres(pg) = &db else { unreachable!() };
    let client = pg.client().await.unwrap();
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

async fn refused(url: &str) -> String {
    match open(url).await {
        Err(StoreError::Unavailable(m)) => m,
        Err(other) => panic!("{url}: {other:?}"),
        Ok(_) => panic!("{url}: connected, but the server's certificate should have been refused"),
    }
}

#[tokio::test]
async fn sslmodes_encrypt_and_check_the_server_as_libpq_does() {
    let ca = ca();
    let ip = "127.0.0.1";
    assert!(encrypted(&url(ip, "postgres", "")).await, "prefer (the default) encrypts when the server offers TLS");
    assert!(!encrypted(&url(ip, "postgres", "sslmode=disable")).await);
    assert!(encrypted(&url(ip, "postgres", "sslmode=require")).await, "require encrypts without checking the certificate");
    assert!(encrypted(&url("localhost", "postgres", &format!("sslmode=verify-full&sslrootcert={ca}"))).await);
    assert!(encrypted(&url(ip, "postgres", &format!("sslmode=verify-ca&sslrootcert={ca}"))).await, "verify-ca ignores the name");
    assert!(encrypted(&url(ip, "postgres", &format!("sslmode=require&sslrootcert={ca}"))).await);

    let wrong_name = refused(&url(ip, "postgres", &format!("sslmode=verify-full&sslrootcert={ca}"))).await;
    assert!(wrong_name.contains("certificate") && wrong_name.contains("name"), "{wrong_name}");
    let untrusted = refused(&url("localhost", "postgres", "sslmode=verify-full&sslrootcert=system")).await;
    assert!(untrusted.contains("certificate"), "{untrusted}");
    let untrusted = refused(&url(ip, "postgres", "sslmode=verify-ca")).await;
    assert!(untrusted.contains("certificate") && untrusted.contains("sslrootcert"), "the system's CAs by default: {untrusted}");
    assert!(!untrusted.contains("postgres@"), "no user in messages: {untrusted}");
}

#[tokio::test]
async fn a_destructive_migration_backs_up_over_verified_tls() {
    let ca = ca();
    let name = format!("charter_tls_{}", std::process::id());
    let (admin, conn) = tokio_postgres::connect(&common::postgres_admin_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\"")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();

    let db = open(&url("localhost", &name, &format!("sslmode=verify-full&sslrootcert={ca}"))).await.unwrap();
    let model = |src: &str| charter_model::compile(src).model.expect("the spec compiles");
    let v1 = "# A\n\n## Entities\n\n### Task\n| field | type | rules |\n|---|---|---|\n| title | text | required |\n| level | enum(low, high) | |\n\nPermissions:\n- read: signed in\n";
    let v2 = v1.replace("| level | enum(low, high) | |\n", "");
    let dir = tempfile::tempdir().unwrap();
    let opts = || MigrateOptions { spec_hash: "h".into(), backup_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    assert!(db.migrate(&model(v1), opts()).await.unwrap().applied);
    let r = db.migrate(&model(&v2), MigrateOptions { allow_destructive: true, ..opts() }).await.unwrap();
    assert!(r.applied, "{r:#?}");
    // pg_dump connected with the same sslmode and CA file.
    let backup = std::fs::read_to_string(r.backup.expect("a backup was taken")).unwrap();
    assert!(backup.contains("CREATE TABLE public.tasks") && backup.contains("level"), "{backup}");

    drop(db);
    admin.batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).await.unwrap();
}
