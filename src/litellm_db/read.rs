//! Reading the LiteLLM tables mcp-gatekeeper uses, whole, in one consistent snapshot, and a
//! fingerprint of exactly those columns to notice a change cheaply.

use std::time::SystemTime;

use serde_json::Value;
use tokio_postgres::Row;

use crate::postgres::{Database, DbError};

/// `LiteLLM_MCPServerTable`: a server LiteLLM's admin UI or API registered.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServerRow {
    pub(crate) server_id: String,
    pub(crate) server_name: Option<String>,
    pub(crate) alias: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) transport: String,
    pub(crate) auth_type: Option<String>,
    pub(crate) credentials: Option<Value>,
    pub(crate) mcp_info: Option<Value>,
    pub(crate) access_groups: Vec<String>,
    pub(crate) allowed_tools: Vec<String>,
    pub(crate) extra_headers: Vec<String>,
    pub(crate) static_headers: Option<Value>,
    pub(crate) allow_all_keys: bool,
    pub(crate) timeout: Option<f64>,
}

/// `LiteLLM_ObjectPermissionTable`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PermissionRow {
    pub(crate) id: String,
    pub(crate) mcp_servers: Vec<String>,
    pub(crate) mcp_access_groups: Vec<String>,
    pub(crate) mcp_tool_permissions: Option<Value>,
    pub(crate) blocked_tools: Vec<String>,
    pub(crate) mcp_toolsets: Vec<String>,
}

/// `LiteLLM_VerificationToken`: a virtual key, by the SHA-256 hex digest LiteLLM keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct KeyRow {
    pub(crate) token: String,
    pub(crate) key_alias: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) team_id: Option<String>,
    pub(crate) organization_id: Option<String>,
    pub(crate) agent_id: Option<String>,
    pub(crate) object_permission_id: Option<String>,
    pub(crate) expires: Option<SystemTime>,
    pub(crate) blocked: bool,
    pub(crate) spend: f64,
    pub(crate) max_budget: Option<f64>,
    pub(crate) access_group_ids: Vec<String>,
    pub(crate) limits: LimitRow,
}

/// LiteLLM's request limits of a key, team, organisation or end user.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LimitRow {
    pub(crate) rpm_limit: Option<i64>,
    pub(crate) max_parallel_requests: Option<i32>,
    /// `metadata -> 'mcp_rpm_limit'` of a key or team: `{server: calls per minute}`.
    pub(crate) mcp_rpm_limit: Option<serde_json::Value>,
}

/// A team, organisation, end user, agent or internal user: its id, object permission and
/// what else decides whether it may be used.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MemberRow {
    pub(crate) id: String,
    pub(crate) object_permission_id: Option<String>,
    /// A team's organisation.
    pub(crate) organization_id: Option<String>,
    pub(crate) blocked: bool,
    pub(crate) spend: f64,
    /// The row's own `max_budget`, else that of its `LiteLLM_BudgetTable` row.
    pub(crate) max_budget: Option<f64>,
    /// Unified access groups (`LiteLLM_AccessGroupTable`) of a team or agent.
    pub(crate) access_group_ids: Vec<String>,
    /// Request limits (a team's own; an organisation's or end user's budget row's).
    pub(crate) limits: LimitRow,
}

/// `LiteLLM_AccessGroupTable`: only which MCP servers a group grants.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct AccessGroupRow {
    pub(crate) id: String,
    pub(crate) mcp_server_ids: Vec<String>,
}

/// Everything read, as of one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Rows {
    pub(crate) servers: Vec<ServerRow>,
    pub(crate) permissions: Vec<PermissionRow>,
    pub(crate) keys: Vec<KeyRow>,
    pub(crate) teams: Vec<MemberRow>,
    pub(crate) organizations: Vec<MemberRow>,
    pub(crate) end_users: Vec<MemberRow>,
    pub(crate) agents: Vec<MemberRow>,
    pub(crate) users: Vec<MemberRow>,
    pub(crate) access_groups: Vec<AccessGroupRow>,
}

/// The queries, in a fixed order; the fingerprint wraps the same ones, so it covers exactly
/// the columns a load uses. Servers waiting for approval (or drafts) are left out, as LiteLLM
/// leaves them out.
const QUERIES: [&str; 9] = [
    r#"SELECT server_id, server_name, alias, description, url, transport, auth_type,
              credentials, mcp_info, mcp_access_groups, allowed_tools, extra_headers,
              static_headers, allow_all_keys, timeout
       FROM "LiteLLM_MCPServerTable"
       WHERE approval_status IS NULL OR approval_status IN ('active', 'approved')"#,
    r#"SELECT object_permission_id, mcp_servers, mcp_access_groups, mcp_tool_permissions,
              blocked_tools, mcp_toolsets
       FROM "LiteLLM_ObjectPermissionTable""#,
    r#"SELECT token, key_alias, user_id, team_id, organization_id, agent_id,
              object_permission_id, expires, blocked, spend, max_budget, access_group_ids,
              rpm_limit, max_parallel_requests, metadata -> 'mcp_rpm_limit'
       FROM "LiteLLM_VerificationToken""#,
    r#"SELECT team_id, object_permission_id, organization_id, blocked, spend, max_budget,
              access_group_ids, rpm_limit, max_parallel_requests, metadata -> 'mcp_rpm_limit'
       FROM "LiteLLM_TeamTable""#,
    r#"SELECT o.organization_id, o.object_permission_id, o.spend, b.max_budget,
              b.rpm_limit, b.max_parallel_requests
       FROM "LiteLLM_OrganizationTable" o
       LEFT JOIN "LiteLLM_BudgetTable" b ON b.budget_id = o.budget_id"#,
    r#"SELECT e.user_id, e.object_permission_id, e.blocked, e.spend, b.max_budget,
              b.rpm_limit, b.max_parallel_requests
       FROM "LiteLLM_EndUserTable" e
       LEFT JOIN "LiteLLM_BudgetTable" b ON b.budget_id = e.budget_id"#,
    r#"SELECT agent_id, object_permission_id, access_group_ids
       FROM "LiteLLM_AgentsTable""#,
    r#"SELECT user_id, object_permission_id FROM "LiteLLM_UserTable"
       WHERE object_permission_id IS NOT NULL"#,
    r#"SELECT access_group_id, access_mcp_server_ids FROM "LiteLLM_AccessGroupTable""#,
];

/// `rpm_limit` and `max_parallel_requests` from column `at` on, and `metadata -> 'mcp_rpm_limit'`
/// after them when the row has one (keys and teams).
fn limits(row: &Row, at: usize, mcp: bool) -> Result<LimitRow, DbError> {
    Ok(LimitRow {
        rpm_limit: get(row, at)?,
        max_parallel_requests: get(row, at + 1)?,
        mcp_rpm_limit: if mcp { get(row, at + 2)? } else { None },
    })
}

/// One column, or an error naming it when its type is not the one the pinned schema has.
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, DbError> {
    row.try_get(i).map_err(|e| {
        let column = row.columns().get(i).map_or("?", |c| c.name());
        DbError::new(
            "reading the LiteLLM database (is it the schema this build supports?)",
            format!("column {column:?}: {e}"),
        )
    })
}

/// A text array column; NULL reads as empty, as LiteLLM reads it.
fn list(row: &Row, i: usize) -> Result<Vec<String>, DbError> {
    Ok(get::<Option<Vec<Option<String>>>>(row, i)?
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect())
}

fn member(row: &Row) -> Result<MemberRow, DbError> {
    Ok(MemberRow {
        id: get(row, 0)?,
        object_permission_id: get(row, 1)?,
        ..MemberRow::default()
    })
}

fn each<T>(rows: &[Row], f: impl Fn(&Row) -> Result<T, DbError>) -> Result<Vec<T>, DbError> {
    rows.iter().map(f).collect()
}

fn parse(all: [Vec<Row>; 9]) -> Result<Rows, DbError> {
    let [
        servers,
        permissions,
        keys,
        teams,
        organizations,
        end_users,
        agents,
        users,
        groups,
    ] = all;
    Ok(Rows {
        servers: each(&servers, |r| {
            Ok(ServerRow {
                server_id: get(r, 0)?,
                server_name: get(r, 1)?,
                alias: get(r, 2)?,
                description: get(r, 3)?,
                url: get(r, 4)?,
                transport: get(r, 5)?,
                auth_type: get(r, 6)?,
                credentials: get(r, 7)?,
                mcp_info: get(r, 8)?,
                access_groups: list(r, 9)?,
                allowed_tools: list(r, 10)?,
                extra_headers: list(r, 11)?,
                static_headers: get(r, 12)?,
                allow_all_keys: get(r, 13)?,
                timeout: get(r, 14)?,
            })
        })?,
        permissions: each(&permissions, |r| {
            Ok(PermissionRow {
                id: get(r, 0)?,
                mcp_servers: list(r, 1)?,
                mcp_access_groups: list(r, 2)?,
                mcp_tool_permissions: get(r, 3)?,
                blocked_tools: list(r, 4)?,
                mcp_toolsets: list(r, 5)?,
            })
        })?,
        keys: each(&keys, |r| {
            Ok(KeyRow {
                token: get(r, 0)?,
                key_alias: get(r, 1)?,
                user_id: get(r, 2)?,
                team_id: get(r, 3)?,
                organization_id: get(r, 4)?,
                agent_id: get(r, 5)?,
                object_permission_id: get(r, 6)?,
                expires: get(r, 7)?,
                blocked: get::<Option<bool>>(r, 8)?.unwrap_or(false),
                spend: get(r, 9)?,
                max_budget: get(r, 10)?,
                access_group_ids: list(r, 11)?,
                limits: limits(r, 12, true)?,
            })
        })?,
        teams: each(&teams, |r| {
            Ok(MemberRow {
                organization_id: get(r, 2)?,
                blocked: get(r, 3)?,
                spend: get(r, 4)?,
                max_budget: get(r, 5)?,
                access_group_ids: list(r, 6)?,
                limits: limits(r, 7, true)?,
                ..member(r)?
            })
        })?,
        organizations: each(&organizations, |r| {
            Ok(MemberRow {
                spend: get(r, 2)?,
                max_budget: get(r, 3)?,
                limits: limits(r, 4, false)?,
                ..member(r)?
            })
        })?,
        end_users: each(&end_users, |r| {
            Ok(MemberRow {
                blocked: get(r, 2)?,
                spend: get(r, 3)?,
                max_budget: get(r, 4)?,
                limits: limits(r, 5, false)?,
                ..member(r)?
            })
        })?,
        agents: each(&agents, |r| {
            Ok(MemberRow {
                access_group_ids: list(r, 2)?,
                ..member(r)?
            })
        })?,
        users: each(&users, member)?,
        access_groups: each(&groups, |r| {
            Ok(AccessGroupRow {
                id: get(r, 0)?,
                mcp_server_ids: list(r, 1)?,
            })
        })?,
    })
}

/// The tables whose rows carry no secret, so the role may read them whole: for them a change
/// is seen from the row versions (`count(*)` and the sum of `xmin`) without reading a column.
const VERSIONED: [&str; 7] = [
    "LiteLLM_VerificationToken",
    "LiteLLM_TeamTable",
    "LiteLLM_OrganizationTable",
    "LiteLLM_BudgetTable",
    "LiteLLM_EndUserTable",
    "LiteLLM_ObjectPermissionTable",
    "LiteLLM_AccessGroupTable",
];

/// The queries over tables that hold secrets in columns this crate does not read (server
/// environments, agent parameters, user passwords): small tables, fingerprinted by content.
const SMALL: [usize; 3] = [0, 6, 7];

/// How the tables stand, for noticing a change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// Row versions of the tables that may be read whole, and the content of the small ones:
    /// cheap, and moved by any write (to columns this crate does not read too).
    pub(crate) quick: String,
    /// The row count and a sum of 64-bit hashes of each row's text, over exactly the columns a
    /// load reads, table by table.
    pub(crate) full: Vec<String>,
}

fn content_sql(query: &str) -> String {
    format!(
        "SELECT count(*)::text || ':' || coalesce(sum(hashtextextended(q::text, 0)), 0)::text \
         FROM ({query}) q"
    )
}

fn quick_sql() -> String {
    let mut parts: Vec<String> = VERSIONED
        .iter()
        .map(|t| {
            format!(
                "(SELECT count(*)::text || ':' || coalesce(sum(xmin::text::bigint), 0)::text \
                 FROM \"{t}\")"
            )
        })
        .collect();
    parts.extend(
        SMALL
            .iter()
            .map(|i| format!("({})", content_sql(QUERIES[*i]))),
    );
    format!("SELECT concat_ws(',', {})", parts.join(", "))
}

async fn transaction(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, DbError> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| DbError::new("starting to read the LiteLLM database", e))
}

/// Reads every table, and the fingerprint of what was read, in one read-only,
/// repeatable-read transaction.
pub(crate) async fn rows(db: &Database) -> Result<(Rows, Fingerprint), DbError> {
    let mut client = db.client().await?;
    let tx = transaction(&mut client).await?;
    let mut all: [Vec<Row>; 9] = Default::default();
    for (slot, sql) in all.iter_mut().zip(QUERIES) {
        *slot = tx
            .query(sql, &[])
            .await
            .map_err(|e| DbError::new("reading the LiteLLM database", e))?;
    }
    let print = Fingerprint {
        quick: quick(&tx).await?,
        full: full(&tx).await?,
    };
    tx.commit()
        .await
        .map_err(|e| DbError::new("reading the LiteLLM database", e))?;
    Ok((parse(all)?, print))
}

async fn quick(tx: &deadpool_postgres::Transaction<'_>) -> Result<String, DbError> {
    let row = tx
        .query_one(quick_sql().as_str(), &[])
        .await
        .map_err(|e| DbError::new("checking the LiteLLM database for changes", e))?;
    Ok(row.get(0))
}

async fn full(tx: &deadpool_postgres::Transaction<'_>) -> Result<Vec<String>, DbError> {
    let mut out = Vec::with_capacity(QUERIES.len());
    for sql in QUERIES {
        let row = tx
            .query_one(content_sql(sql).as_str(), &[])
            .await
            .map_err(|e| DbError::new("checking the LiteLLM database for changes", e))?;
        out.push(row.get(0));
    }
    Ok(out)
}

/// Whether the tables moved since `seen`: the quick check first, and the full one only when
/// something was written (a write to columns this crate does not read changes nothing). Returns
/// the fingerprint to remember when nothing that is read changed.
pub(crate) async fn moved(
    db: &Database,
    seen: &Fingerprint,
) -> Result<Result<(), Fingerprint>, DbError> {
    let mut client = db.client().await?;
    let tx = transaction(&mut client).await?;
    let now_quick = quick(&tx).await?;
    let answer = if now_quick == seen.quick {
        Err(seen.clone())
    } else {
        let now_full = full(&tx).await?;
        if now_full == seen.full {
            Err(Fingerprint {
                quick: now_quick,
                full: now_full,
            })
        } else {
            Ok(())
        }
    };
    tx.commit()
        .await
        .map_err(|e| DbError::new("checking the LiteLLM database for changes", e))?;
    Ok(answer)
}
