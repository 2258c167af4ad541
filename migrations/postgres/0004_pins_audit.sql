-- Tool and prompt pins, and the audit trail.
--
-- gk_tool_pins: the pin of each tool or prompt definition of each server, learned the first
-- time the server listed it or approved by an administrator. A pin is "sha256:" and 64 hex
-- digits; parts (optional) are the short digests of each pinned field, to tell which changed.
CREATE TABLE gk_tool_pins (
    server text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('tool', 'prompt')),
    name text NOT NULL,
    digest text NOT NULL CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
    parts text[],
    pinned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server, kind, name)
);

-- gk_audit: one row per decision. `body` is the event as the JSONL sink writes it (never a
-- key, a token, a credential or an argument value unless the server opted in, redacted).
CREATE TABLE gk_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    event text NOT NULL,
    outcome text NOT NULL,
    key_id text,
    server text,
    name text,
    body jsonb NOT NULL
);
CREATE INDEX gk_audit_at ON gk_audit (at);
CREATE INDEX gk_audit_key_at ON gk_audit (key_id, at);
