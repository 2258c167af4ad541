//! Replays the fuzz corpus (`fuzz/corpus/<target>/*`) through the fuzz harnesses, plus a bounded,
//! deterministic mutation run around each seed, so every `cargo test` fuzzes a little.

use std::path::Path;

use crate::fuzzing;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\u0000",
    b"\\",
    b"\n",
    b"\r",
    b"\r\n",
    b"data: ",
    b"%2e",
    b"%2F",
    b"..",
    b"/",
    b"\xff",
    b"name",
    b"\"name\":\"x\",",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let end = (at + rng.below(8)).min(v.len());
                v.drain(at.min(end)..end);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, piece.iter().copied());
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            _ => {
                // Duplicate a slice: makes repeated keys and nested structures.
                let start = rng.below(v.len() + 1);
                let end = (start + rng.below(24)).min(v.len());
                let copy = v[start..end].to_vec();
                v.splice(at..at, copy);
            }
        }
    }
    v
}

fn replay(target: &str, harness: fn(&[u8]), mutations: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no corpus for {target}");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for seed in seeds {
        let data = std::fs::read(&seed).unwrap();
        harness(&data);
        for _ in 0..mutations {
            harness(&mutate(&mut rng, &data));
        }
    }
}

#[test]
fn request_parser() {
    replay("request", fuzzing::request, 20_000);
}

#[test]
fn sse_framer() {
    replay("sse", fuzzing::sse, 20_000);
}

#[test]
fn namespace_parsers() {
    replay("namespace", fuzzing::namespace, 20_000);
}

#[test]
fn config_loader() {
    replay("config", fuzzing::config, 3_000);
}

#[test]
fn list_filter_paths_agree() {
    replay("list_filter", fuzzing::list_filter, 20_000);
}
