-- mcp-gatekeeper policy store: who may use which MCP servers and tools.
--
-- A NULL list leaves a level unrestricted; an empty list ('{}') grants nothing at that level.
-- Keys are kept only as SHA-256 digests. Every change notifies the channel
-- `mcp_gatekeeper_policy`, on which running gateways reload.

CREATE TABLE gk_object_permissions (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mcp_servers          text[],
    mcp_access_groups    text[],
    -- {"server": ["tool", ...]}
    mcp_tool_permissions jsonb
        CHECK (mcp_tool_permissions IS NULL OR jsonb_typeof(mcp_tool_permissions) = 'object')
);

CREATE TABLE gk_organizations (
    organization_id      text PRIMARY KEY,
    object_permission_id bigint REFERENCES gk_object_permissions (id),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gk_teams (
    team_id              text PRIMARY KEY,
    organization_id      text REFERENCES gk_organizations (organization_id),
    object_permission_id bigint REFERENCES gk_object_permissions (id),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gk_end_users (
    user_id              text PRIMARY KEY,
    object_permission_id bigint REFERENCES gk_object_permissions (id),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gk_agents (
    agent_id             text PRIMARY KEY,
    object_permission_id bigint REFERENCES gk_object_permissions (id),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gk_keys (
    key_digest           bytea PRIMARY KEY CHECK (octet_length(key_digest) = 32),
    key_alias            text UNIQUE,
    team_id              text REFERENCES gk_teams (team_id),
    organization_id      text REFERENCES gk_organizations (organization_id),
    agent_id             text REFERENCES gk_agents (agent_id),
    object_permission_id bigint REFERENCES gk_object_permissions (id),
    expires_at           timestamptz,
    blocked              boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- Rules for servers the configuration defines; a NULL column keeps the configured value.
CREATE TABLE gk_server_rules (
    server_name            text PRIMARY KEY,
    access_groups          text[],
    allowed_tools          text[],
    disallowed_tools       text[],
    -- {"tool": ["argument", ...]}
    allowed_params         jsonb
        CHECK (allowed_params IS NULL OR jsonb_typeof(allowed_params) = 'object'),
    allow_all_keys         boolean,
    default_cost_per_query double precision
        CHECK (default_cost_per_query IS NULL OR default_cost_per_query >= 0),
    -- {"tool": 0.05}
    tool_costs             jsonb
        CHECK (tool_costs IS NULL OR jsonb_typeof(tool_costs) = 'object'),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION gk_notify_policy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mcp_gatekeeper_policy', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER gk_object_permissions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON gk_object_permissions FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_policy();
CREATE TRIGGER gk_organizations_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON gk_organizations FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_policy();
CREATE TRIGGER gk_teams_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON gk_teams FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_policy();
CREATE TRIGGER gk_end_users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON gk_end_users FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_policy();
CREATE TRIGGER gk_agents_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON gk_agents FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_policy();
CREATE TRIGGER gk_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON gk_keys FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_policy();
CREATE TRIGGER gk_server_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON gk_server_rules FOR EACH STATEMENT EXECUTE FUNCTION gk_notify_policy();
