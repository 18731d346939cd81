//! Bounded fuzzing of SQL through fingerprint, normalize and analysis: the
//! statements of the libpg_query fixture, mutated. Invariant: no panic
//! (sqlparser cannot parse everything PostgreSQL can; then the token
//! fallback answers). `scripts/fuzz.sh DURATION` runs it longer.
#![allow(clippy::unwrap_used)]

use testkit::fuzz::{Budget, mutate_text};

#[test]
fn fuzz_sql_through_fingerprint_and_analysis() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fingerprint-groups.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut corpus: Vec<String> = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["sql"].as_str().map(str::to_owned))
        .collect();
    corpus.extend(
        [
            "WITH a AS MATERIALIZED (SELECT * FROM t WHERE x = 1) SELECT * FROM a JOIN b ON a.id = b.a_id ORDER BY 1 DESC NULLS LAST",
            "SELECT * FROM blogs JOIN posts ON blogs.id = posts.blog_id WHERE blogs.id = $1",
            "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO UPDATE SET b = excluded.b",
            "DO $$ BEGIN RAISE NOTICE 'x'; END $$",
            "SELECT '\\'' || E'\\x00' FROM \"weird\"\"name\"",
        ]
        .map(str::to_owned),
    );
    let mut budget = Budget::from_env("sql", 5.0);
    let (mut parsed, mut refused) = (0u64, 0u64);
    while let Some(mut rng) = budget.next_input() {
        let base = &corpus[rng.usize(..corpus.len())];
        let sql = if rng.u8(..10) == 0 {
            // Deep nesting and long inputs.
            format!(
                "SELECT {}1{}",
                "(".repeat(rng.usize(1..3000)),
                ")".repeat(rng.usize(1..3000))
            )
        } else {
            mutate_text(base, &mut rng, 4)
        };
        let _ = perf_db::fingerprint(&sql);
        let _ = perf_db::normalize(&sql);
        match perf_db::analyze(&sql) {
            Ok(_) => parsed += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
    }
    budget.report();
    eprintln!("  {parsed} analyzed, {refused} refused");
}
