//! The crate's schema as ordered migrations, and applying the missing ones.

use super::{Database, DbError};

/// The migrations, in order: version, name, SQL.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "policy",
        include_str!("../../migrations/postgres/0001_policy.sql"),
    ),
    (
        2,
        "spend",
        include_str!("../../migrations/postgres/0002_spend.sql"),
    ),
    (
        3,
        "limits",
        include_str!("../../migrations/postgres/0003_limits.sql"),
    ),
    (
        4,
        "pins_audit",
        include_str!("../../migrations/postgres/0004_pins_audit.sql"),
    ),
    (
        5,
        "app_pins",
        include_str!("../../migrations/postgres/0005_app_pins.sql"),
    ),
];

/// Any constant: the advisory lock replicas take while migrating.
const LOCK: i64 = 0x6d63_705f_676b_0001;

/// The versions applied, checked for one this build does not know.
async fn applied(client: &impl deadpool_postgres::GenericClient) -> Result<Vec<i32>, DbError> {
    let applied: Vec<i32> = client
        .query("SELECT version FROM gk_schema_migrations", &[])
        .await
        .map_err(|e| DbError::new("reading gk_schema_migrations", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    newer(&applied)?;
    Ok(applied)
}

fn newer(applied: &[i32]) -> Result<(), DbError> {
    match applied
        .iter()
        .find(|v| !MIGRATIONS.iter().any(|(m, ..)| m == *v))
    {
        Some(newer) => Err(DbError::new(
            "checking the schema",
            format!(
                "the database has migration {newer}, which this build does not know; \
                 run a newer mcp-gatekeeper"
            ),
        )),
        None => Ok(()),
    }
}

pub(crate) async fn run(db: &Database) -> Result<(), DbError> {
    let mut client = db.client().await?;
    // Up to date: nothing to lock or create (a role without DDL rights gets this far).
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('gk_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| DbError::new("reading gk_schema_migrations", e))?
        .get(0);
    if exists {
        let applied = applied(&client).await?;
        if MIGRATIONS.iter().all(|(v, ..)| applied.contains(v)) {
            return Ok(());
        }
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| DbError::new("starting the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(|e| DbError::new("locking for the migration", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gk_schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(|e| DbError::new("creating gk_schema_migrations", e))?;
    let applied = applied(&tx).await?;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| DbError::new("applying a migration", e))?;
        tx.execute(
            "INSERT INTO gk_schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(|e| DbError::new("recording a migration", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::new("committing the migration", e))
}
