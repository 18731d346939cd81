//! perf-db hot paths: fingerprinting and analyzing statements (statements
//! per second is 4 / the time per iteration).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const STATEMENTS: [&str; 4] = [
    "SELECT * FROM users WHERE id = $1",
    "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > $1 AND c.region IN ('eu', 'us') ORDER BY o.created_at DESC LIMIT 50",
    "INSERT INTO events (kind, payload, at) VALUES ('click', '{\"x\": 1}', now()), ('view', '{}', now())",
    "UPDATE accounts SET balance = balance - 10 WHERE id = 42 AND balance >= 10",
];

fn fingerprint(c: &mut Criterion) {
    let mut group = c.benchmark_group("fingerprint");
    group.throughput(Throughput::Elements(STATEMENTS.len() as u64));
    group.bench_function("mixed_4", |b| {
        b.iter(|| {
            for s in STATEMENTS {
                let _ = black_box(perf_db::fingerprint(black_box(s)));
            }
        })
    });
    group.finish();
}

fn analyze(c: &mut Criterion) {
    let mut group = c.benchmark_group("analyze");
    group.throughput(Throughput::Elements(STATEMENTS.len() as u64));
    group.bench_function("mixed_4", |b| {
        b.iter(|| {
            for s in STATEMENTS {
                let _ = black_box(perf_db::analyze(black_box(s)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, fingerprint, analyze);
criterion_main!(benches);
