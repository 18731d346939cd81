//! `GET /performance/recommendations` gathers the advice every crate gives
//! on what this server measures: memory and allocator (perf-memory), its
//! caches, the analyzed database (perf-db), the scaling policy's decisions
//! (perf-scaling) and the capacity found by the latest load test
//! (perf-loadgen). The crates decide; this only collects.

use std::collections::BTreeMap;

use perf_core::Recommendation;
use serde::Serialize;

use crate::app::AppState;
use crate::store::{PageRequest, TestFilter, TestStatus};

/// The gathered list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RecommendationList {
    /// Most urgent first.
    pub recommendations: Vec<Recommendation>,
    /// For each source: `ok`, `not configured`, or what failed.
    #[schema(value_type = BTreeMap<String, String>)]
    pub sources: BTreeMap<&'static str, String>,
}

/// One source's advice and how reading it went (`ok`, `not configured`,
/// or what failed).
type Gathered = (Vec<Recommendation>, String);

/// Gathers the advice; `target_rps` and `headroom` size the capacity advice.
pub(crate) async fn gather(state: &AppState, target_rps: f64, headroom: f64) -> RecommendationList {
    let mut all = Vec::new();
    let mut sources = BTreeMap::new();
    let (memory, caches) = memory(state);
    for (name, (advice, status)) in [
        ("memory", memory),
        ("caches", caches),
        ("store_pool", store_pool(state)),
        ("database", database(state).await),
        ("scaling", scaling(state).await),
        ("capacity", capacity(state, target_rps, headroom).await),
    ] {
        all.extend(advice);
        sources.insert(name, status);
    }
    all.sort_by_key(|r| std::cmp::Reverse(r.severity));
    RecommendationList {
        recommendations: all,
        sources,
    }
}

/// perf-memory's advice on this process (budget, leak verdict, allocator),
/// and on its watched caches.
fn memory(state: &AppState) -> (Gathered, Gathered) {
    let memory = state.monitor.memory();
    let leak = memory.leak();
    let allocator = state.monitor.latest_now().and_then(|s| s.allocator);
    let tuning = memory.tuning();
    let process = perf_memory::memory_advice(
        &memory.budget(),
        &leak,
        allocator.as_ref().zip(tuning.as_ref()),
        &[],
    );
    let status = if allocator.is_some() && tuning.is_some() {
        "ok".to_owned()
    } else {
        "ok (no jemalloc figures: allocator advice skipped)".to_owned()
    };
    let caches = memory.caches();
    let cache_status = format!("ok ({} watched)", caches.len());
    let cache_advice: Vec<Recommendation> = caches
        .iter()
        .flat_map(|c| {
            perf_memory::cache_advice(c)
                .into_iter()
                .chain(perf_memory::leaking_cache_advice(c, &leak))
        })
        .collect();
    ((process, status), (cache_advice, cache_status))
}

/// perf-db's pool size advice for the store's own pool.
fn store_pool(state: &AppState) -> Gathered {
    match state.store.connection_pool() {
        Some(pool) => (
            perf_db::pool_recommendation(
                &pool.observation,
                pool.server_max_connections,
                perf_db::RESERVED_CONNECTIONS,
            )
            .into_iter()
            .collect(),
            "ok".to_owned(),
        ),
        None => (
            Vec::new(),
            format!("the {} store has no connection pool", state.store.backend()),
        ),
    }
}

/// perf-db's [`database_advice`](perf_db::database_advice) on the analyzed database.
async fn database(state: &AppState) -> Gathered {
    match &state.database {
        Some(db) => {
            let (advice, errors) = db.advice().await;
            let status = if errors.is_empty() {
                "ok".to_owned()
            } else {
                errors.join("; ")
            };
            (advice, status)
        }
        None => (
            Vec::new(),
            "not configured (--analyze-database-url)".to_owned(),
        ),
    }
}

/// perf-scaling's [`policy_advice`](perf_scaling::policy_advice) on the
/// policy in force and its last 200 decisions.
async fn scaling(state: &AppState) -> Gathered {
    let policy = match &state.scaling {
        Some(s) => s.controller.policy().ok(),
        None => state
            .store
            .get_scaling_state("policy")
            .await
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str::<perf_scaling::ScalingPolicy>(&t).ok()),
    };
    let Some(policy) = policy else {
        return (Vec::new(), "no policy configured".to_owned());
    };
    let recent = PageRequest::first(200);
    match state.store.list_scaling_events(recent).await {
        Ok(page) => {
            let events: Vec<perf_scaling::ScalingEvent> =
                page.items.into_iter().map(|r| r.event).collect();
            (
                perf_scaling::policy_advice(&policy, &events),
                "ok".to_owned(),
            )
        }
        Err(e) => (Vec::new(), format!("history unreadable: {e}")),
    }
}

/// perf-loadgen's [`capacity_plan`](perf_loadgen::capacity_plan) from the
/// latest completed load test.
async fn capacity(state: &AppState, target_rps: f64, headroom: f64) -> Gathered {
    let latest = state
        .store
        .list_load_tests(
            &TestFilter {
                status: Some(TestStatus::Completed),
                ..TestFilter::default()
            },
            PageRequest::first(1),
        )
        .await;
    // Listings leave the report out: read the test itself.
    let latest = match latest.map(|p| p.items.into_iter().next()) {
        Ok(Some(summary)) => state
            .store
            .get_load_test(summary.id)
            .await
            .map(|t| t.or(Some(summary))),
        other => other,
    };
    match latest {
        Ok(Some(test)) => match test
            .report
            .as_ref()
            .map(|r| perf_loadgen::capacity_plan(r, &perf_loadgen::Slo::default()))
        {
            Some(Ok(plan)) => (
                vec![plan.recommendation(target_rps, headroom)],
                format!("from load test {}", test.id),
            ),
            Some(Err(e)) => (Vec::new(), format!("load test {}: {e}", test.id)),
            None => (Vec::new(), "the latest test has no report".to_owned()),
        },
        Ok(None) => (
            Vec::new(),
            "no completed load test yet: run a step test".to_owned(),
        ),
        Err(e) => (Vec::new(), format!("tests unreadable: {e}")),
    }
}
