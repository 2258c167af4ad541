//! The settings of a deployment with several replicas: the shared database, where spend goes,
//! the secret that binds sessions to callers on every replica.

use serde::Deserialize;

use super::{ConfigError, GeneralSettings, Secret, resolve_env};

/// `general_settings.spend_sink`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SpendSinkConfig {
    /// `{type: postgres, spool_dir: …, max_spool_mb: 256}`: rows in `gk_spend` of
    /// `database_url`, through a local spool (one directory per replica, kept across restarts).
    Postgres {
        /// The spool directory.
        spool_dir: String,
        /// The most the spool holds while the database is down, in MiB (default 256).
        max_spool_mb: Option<u64>,
    },
    /// `{type: jsonl, path: …}`: one JSON line per call, appended to a local file.
    Jsonl {
        /// The file.
        path: String,
    },
}

/// `general_settings.limit_store`: where limit and budget counters live.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LimitStoreConfig {
    /// `{type: in_process}` (the default): in this process only; each replica counts alone.
    InProcess,
    /// `{type: redis, url: …}`: in Redis, shared by every replica that uses it (needs the
    /// `redis` feature).
    Redis {
        /// `redis://[:password@]host:port[/db]` (`os.environ/REDIS_URL` works; a secret).
        url: Secret,
        /// Keys start with `{key_prefix}:` (default `mcp-gatekeeper`).
        key_prefix: Option<String>,
        /// How long one operation may take, in milliseconds (default 1000).
        timeout_ms: Option<u64>,
    },
}

/// Where limit counters live, resolved.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitStoreSettings {
    /// In this process.
    #[default]
    InProcess,
    /// In Redis.
    Redis {
        /// The URL (a secret: never print it).
        url: String,
        /// The key prefix.
        key_prefix: String,
        /// The timeout of one operation.
        timeout: std::time::Duration,
    },
}

impl std::fmt::Debug for LimitStoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InProcess => f.write_str("InProcess"),
            // The URL may hold a password.
            Self::Redis {
                key_prefix,
                timeout,
                ..
            } => f
                .debug_struct("Redis")
                .field("key_prefix", key_prefix)
                .field("timeout", timeout)
                .finish_non_exhaustive(),
        }
    }
}

/// `general_settings.database_schema`: whose tables the database holds.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseSchema {
    /// mcp-gatekeeper's own tables (`gk_*`), created by its migrations.
    #[default]
    Gatekeeper,
    /// The tables of a LiteLLM proxy, read as they are and never written.
    Litellm,
}

/// What the deployment settings say, resolved and checked.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Deployment {
    /// The database URL (a secret: never print it).
    pub database_url: Option<String>,
    /// Where spend goes.
    pub spend_sink: Option<SpendSinkConfig>,
    /// The session-binding secret.
    pub session_secret: Option<Vec<u8>>,
    /// Seconds between full reloads of the policy from the database.
    pub policy_resync_seconds: u64,
    /// Whose tables the database holds.
    pub database_schema: DatabaseSchema,
    /// The key LiteLLM's server credentials are encrypted with (a secret: never print it).
    pub litellm_salt_key: Option<String>,
    /// Seconds between two checks of a LiteLLM database for changes.
    pub policy_poll_seconds: u64,
    /// Where limit counters live.
    pub limit_store: LimitStoreSettings,
    /// What the limit layer does while its store cannot be reached.
    pub on_limit_store_error: crate::limit::OnStoreError,
    /// Where audit events go.
    pub audit: super::AuditSettings,
    /// Where pins are kept, if the configuration says (otherwise: a file next to the
    /// configuration, else Postgres when the database holds mcp-gatekeeper's tables, else
    /// memory).
    pub pin_store: Option<super::PinStoreConfig>,
}

impl GeneralSettings {
    fn pin_store_checked(
        &self,
        has_database: bool,
        schema: DatabaseSchema,
    ) -> Result<Option<super::PinStoreConfig>, ConfigError> {
        let at = "general_settings.pin_store";
        match &self.pin_store {
            Some(super::PinStoreConfig::Postgres)
                if !has_database || schema != DatabaseSchema::Gatekeeper =>
            {
                Err(ConfigError::at(
                    at,
                    "pins go to Postgres only in a database of mcp-gatekeeper's own tables                      (database_url with database_schema: gatekeeper)",
                ))
            }
            Some(super::PinStoreConfig::File { path }) if path.trim().is_empty() => Err(
                ConfigError::at(format!("{at}.path"), "name the file pins are kept in"),
            ),
            other => Ok(other.clone()),
        }
    }

    /// The deployment settings with `os.environ/NAME` read, checked.
    ///
    /// # Errors
    ///
    /// An unset variable, a database URL that is not Postgres', a Postgres spend sink without
    /// a database, an empty path, a session secret shorter than 32 bytes, a resync of zero.
    pub fn deployment(&self) -> Result<Deployment, ConfigError> {
        let database_url = self
            .database_url
            .as_ref()
            .map(|u| {
                let at = "general_settings.database_url";
                let url = u.resolve(at)?;
                let t = url.trim();
                let uri = t.starts_with("postgres://") || t.starts_with("postgresql://");
                let key_value = t.contains('=') && !t.contains("://");
                if uri || key_value {
                    Ok(url)
                } else {
                    Err(ConfigError::at(
                        at,
                        "write a Postgres URL (postgres://user:password@host:5432/db) or \
                         key=value pairs (host=/run/postgresql dbname=gatekeeper)",
                    ))
                }
            })
            .transpose()?;
        match &self.spend_sink {
            Some(SpendSinkConfig::Postgres {
                spool_dir,
                max_spool_mb,
            }) => {
                let at = "general_settings.spend_sink";
                if database_url.is_none() {
                    return Err(ConfigError::at(
                        at,
                        "a postgres spend sink writes to general_settings.database_url; set it",
                    ));
                }
                if resolve_env(spool_dir, &format!("{at}.spool_dir"))?.is_empty() {
                    return Err(ConfigError::at(
                        format!("{at}.spool_dir"),
                        "name a directory for the spool (one per replica)",
                    ));
                }
                if *max_spool_mb == Some(0) {
                    return Err(ConfigError::at(
                        format!("{at}.max_spool_mb"),
                        "the spool needs room: give at least 1 (MiB)",
                    ));
                }
            }
            Some(SpendSinkConfig::Jsonl { path }) => {
                let at = "general_settings.spend_sink.path";
                if resolve_env(path, at)?.is_empty() {
                    return Err(ConfigError::at(at, "name the file spend lines go to"));
                }
            }
            None => {}
        }
        let session_secret = self
            .session_secret
            .as_ref()
            .map(|s| {
                let at = "general_settings.session_secret";
                let secret = s.resolve(at)?;
                if secret.len() < 32 {
                    return Err(ConfigError::at(
                        at,
                        "the session secret must be at least 32 bytes (for example the output \
                         of `openssl rand -hex 32`), the same on every replica",
                    ));
                }
                Ok(secret.into_bytes())
            })
            .transpose()?;
        let database_schema = self.database_schema.unwrap_or_default();
        let litellm_salt_key = self
            .litellm_salt_key
            .as_ref()
            .map(|s| s.resolve("general_settings.litellm_salt_key"))
            .transpose()?;
        if database_schema == DatabaseSchema::Litellm {
            if database_url.is_none() {
                return Err(ConfigError::at(
                    "general_settings.database_schema",
                    "`litellm` reads the LiteLLM proxy's database: set general_settings.database_url",
                ));
            }
            if matches!(self.spend_sink, Some(SpendSinkConfig::Postgres { .. })) {
                return Err(ConfigError::at(
                    "general_settings.spend_sink",
                    "a LiteLLM database is only read, so spend cannot go there: use \
                     {type: jsonl, path: …}",
                ));
            }
            if self.policy_poll_seconds == Some(0) {
                return Err(ConfigError::at(
                    "general_settings.policy_poll_seconds",
                    "the poll period must be at least 1 second",
                ));
            }
        } else {
            for (set, name) in [
                (self.litellm_salt_key.is_some(), "litellm_salt_key"),
                (self.policy_poll_seconds.is_some(), "policy_poll_seconds"),
            ] {
                if set {
                    return Err(ConfigError::at(
                        format!("general_settings.{name}"),
                        "only used with database_schema: litellm",
                    ));
                }
            }
        }
        let limit_store = match &self.limit_store {
            None | Some(LimitStoreConfig::InProcess) => LimitStoreSettings::InProcess,
            Some(LimitStoreConfig::Redis {
                url,
                key_prefix,
                timeout_ms,
            }) => {
                let at = "general_settings.limit_store";
                let url = url.resolve(&format!("{at}.url"))?;
                let t = url.trim();
                if !(t.starts_with("redis://") || t.starts_with("rediss://")) {
                    return Err(ConfigError::at(
                        format!("{at}.url"),
                        "write a Redis URL: redis://[:password@]host:6379[/db]",
                    ));
                }
                let key_prefix = key_prefix
                    .clone()
                    .unwrap_or_else(|| "mcp-gatekeeper".into());
                if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
                    return Err(ConfigError::at(
                        format!("{at}.key_prefix"),
                        "name a prefix without braces (it becomes the keys' hash tag)",
                    ));
                }
                if *timeout_ms == Some(0) {
                    return Err(ConfigError::at(
                        format!("{at}.timeout_ms"),
                        "the timeout must be at least 1 ms",
                    ));
                }
                LimitStoreSettings::Redis {
                    url,
                    key_prefix,
                    timeout: std::time::Duration::from_millis(timeout_ms.unwrap_or(1_000)),
                }
            }
        };
        if self.policy_resync_seconds == Some(0) {
            return Err(ConfigError::at(
                "general_settings.policy_resync_seconds",
                "the resync period must be at least 1 second",
            ));
        }
        let audit = super::AuditConfig::settings(self.audit.as_ref(), database_url.is_some())?;
        let pin_store = self.pin_store_checked(database_url.is_some(), database_schema)?;
        Ok(Deployment {
            database_url,
            spend_sink: self.spend_sink.clone(),
            session_secret,
            policy_resync_seconds: self.policy_resync_seconds.unwrap_or(30),
            database_schema,
            litellm_salt_key,
            policy_poll_seconds: self.policy_poll_seconds.unwrap_or(2),
            limit_store,
            on_limit_store_error: self.on_limit_store_error.unwrap_or_default(),
            audit,
            pin_store,
        })
    }
}
