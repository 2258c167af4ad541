//! Fuzz target: see `mcp_gatekeeper::fuzzing::list_filter`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_gatekeeper::fuzzing::list_filter(data));
