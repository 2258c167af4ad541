-- Limits and budgets of keys, teams, organisations, end users and agents.
--
-- `limits` holds the same fields as the configuration file's entries:
--   {"rpm_limit": 100, "max_parallel_requests": 4,
--    "mcp_rpm_limit": {"server": 60},
--    "mcp_tool_limits": {"server": {"tool": {"rpm": 10, "max_parallel": 2}}},
--    "max_budget": 25.0, "budget_duration": "30d"}
-- NULL limits nothing. A value that cannot be used refuses that row's callers until it is fixed.

ALTER TABLE gk_keys ADD COLUMN limits jsonb
    CHECK (limits IS NULL OR jsonb_typeof(limits) = 'object');
ALTER TABLE gk_teams ADD COLUMN limits jsonb
    CHECK (limits IS NULL OR jsonb_typeof(limits) = 'object');
ALTER TABLE gk_organizations ADD COLUMN limits jsonb
    CHECK (limits IS NULL OR jsonb_typeof(limits) = 'object');
ALTER TABLE gk_end_users ADD COLUMN limits jsonb
    CHECK (limits IS NULL OR jsonb_typeof(limits) = 'object');
ALTER TABLE gk_agents ADD COLUMN limits jsonb
    CHECK (limits IS NULL OR jsonb_typeof(limits) = 'object');
