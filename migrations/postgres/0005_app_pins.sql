-- Pins of MCP Apps' UI resources: gk_tool_pins keeps them beside tools and prompts, with kind
-- 'app' and the resource's URI (as its server knows it) for a name.
ALTER TABLE gk_tool_pins DROP CONSTRAINT gk_tool_pins_kind_check;
ALTER TABLE gk_tool_pins ADD CONSTRAINT gk_tool_pins_kind_check
    CHECK (kind IN ('tool', 'prompt', 'app'));
