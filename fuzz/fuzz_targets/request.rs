//! Fuzz target: see `mcp_gatekeeper::fuzzing::request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_gatekeeper::fuzzing::request(data));
