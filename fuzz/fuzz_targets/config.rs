//! Fuzz target: see `mcp_gatekeeper::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_gatekeeper::fuzzing::config(data));
