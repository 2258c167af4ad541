-- mcp-gatekeeper spend: one row per tool call a gateway answered. `event_id` makes a replay
-- from a replica's spool idempotent.

CREATE TABLE gk_spend (
    event_id        uuid PRIMARY KEY,
    server          text,
    tool            text NOT NULL,
    qualified_tool  text NOT NULL,
    -- ["argument name", ...] (names only, never values)
    argument_keys   jsonb NOT NULL,
    key_id          text,
    key_alias       text,
    team_id         text,
    organization_id text,
    end_user_id     text,
    agent_id        text,
    session_id      text,
    started_at      timestamptz NOT NULL,
    duration_ms     double precision NOT NULL,
    outcome         text NOT NULL,
    error_code      bigint,
    http_status     integer,
    cost            double precision NOT NULL,
    inserted_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX gk_spend_started_at ON gk_spend (started_at);
CREATE INDEX gk_spend_key_started_at ON gk_spend (key_id, started_at);
CREATE INDEX gk_spend_team_started_at ON gk_spend (team_id, started_at);
