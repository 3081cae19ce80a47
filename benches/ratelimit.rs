//! Cost of one rate-limit check in memory: the GCRA step, the store (one hot key, and keys
//! spread over a large population), and a route's whole check from a request.
//!
//! `cargo bench --bench ratelimit`

use std::hint::black_box;

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use proxyfn::{
    Config, Plan,
    context::{Arrival, Entry},
    ratelimit::{
        RateLimiter,
        gcra::{self, Quota},
        memory::{Clock, MemoryStore},
    },
    runtime::ClientInfo,
};

const QUOTA: Quota = Quota {
    limit: 1_000_000,
    period_us: 1_000_000,
    burst: 1_000_000,
};

fn memory_checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit_memory");
    let clock = Clock::default();

    group.bench_function("gcra_step", |b| {
        let mut tat = 0;
        b.iter(|| {
            let outcome = gcra::check(black_box(tat), clock.now(), QUOTA);
            tat = outcome.tat;
            outcome.allowed
        })
    });

    let store = MemoryStore::new(100_000);
    group.bench_function("one_hot_key", |b| {
        b.iter(|| {
            store
                .check(black_box("203.0.113.7"), QUOTA, clock.now())
                .allowed
        })
    });

    let keys: Vec<String> = (0..50_000)
        .map(|i| format!("ip:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let spread = MemoryStore::new(100_000);
    group.bench_function("50k_keys_round_robin", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % keys.len();
            spread.check(&keys[i], QUOTA, clock.now()).allowed
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plan = Plan::new(
        &Config::from_toml(
            "[rate_limits.per_ip]\nkey = \"ip\"\nlimit = 1000000\nper = \"1s\"\n\
             [rate_limits.total]\nkey = \"global\"\nlimit = 1000000\nper = \"1s\"\n\
             [[routes]]\npath = \"/x\"\nresponse = {}\nrate_limit = [\"per_ip\", \"total\"]\n",
        )
        .unwrap(),
    )
    .unwrap();
    let limiter = runtime.block_on(async { RateLimiter::new(&plan.rate_limit, 1).unwrap() });
    // ip and global policies are both checked before authentication.
    let one = limiter.route(&["per_ip".to_owned()]).before_auth.unwrap();
    let two = limiter
        .route(&plan.routes[0].rate_limits)
        .before_auth
        .unwrap();
    let mut request = http::Request::get("/x").body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(Entry::new(&plan.server).context(Arrival {
            client: ClientInfo::direct("203.0.113.7".parse().unwrap()),
            ..Arrival::default()
        }));
    group.bench_function("route_check_one_policy", |b| {
        b.iter(|| runtime.block_on(one.check(&request, None)).is_ok())
    });
    group.bench_function("route_check_two_policies", |b| {
        b.iter(|| runtime.block_on(two.check(&request, None)).is_ok())
    });
    group.finish();
}

criterion_group!(benches, memory_checks);
criterion_main!(benches);
