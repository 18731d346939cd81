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
pub struct RecommendationList {
    /// Most urgent first.
    pub recommendations: Vec<Recommendation>,
    /// For each source: `ok`, `not configured`, or what failed.
    #[schema(value_type = BTreeMap<String, String>)]
    pub sources: BTreeMap<&'static str, String>,
}

/// Gathers the advice; `target_rps` and `headroom` size the capacity advice.
pub async fn gather(state: &AppState, target_rps: f64, headroom: f64) -> RecommendationList {
    let mut all = Vec::new();
    let mut sources = BTreeMap::new();

    let memory = state.monitor.memory();
    all.extend(perf_memory::budget_advice(&memory.budget()));
    let leak = memory.leak();
    all.extend(perf_memory::leak_advice(&leak));
    match (
        state.monitor.latest_now().and_then(|s| s.allocator),
        memory.tuning(),
    ) {
        (Some(stats), Some(tuning)) => {
            all.extend(perf_memory::allocator_advice(&stats, &tuning));
            sources.insert("memory", "ok".to_owned());
        }
        _ => {
            sources.insert(
                "memory",
                "ok (no jemalloc figures: allocator advice skipped)".to_owned(),
            );
        }
    }
    let caches = memory.caches();
    for cache in &caches {
        all.extend(perf_memory::cache_advice(cache));
        all.extend(perf_memory::leaking_cache_advice(cache, &leak));
    }
    sources.insert("caches", format!("ok ({} watched)", caches.len()));

    match state.store.connection_pool() {
        Some(pool) => {
            all.extend(perf_db::pool_recommendation(
                &pool.observation,
                pool.server_max_connections,
                perf_db::RESERVED_CONNECTIONS,
            ));
            sources.insert("store_pool", "ok".to_owned());
        }
        None => {
            sources.insert(
                "store_pool",
                format!("the {} store has no connection pool", state.store.backend()),
            );
        }
    }

    match &state.database {
        Some(db) => {
            let (advice, errors) = db.advice().await;
            all.extend(advice);
            sources.insert(
                "database",
                if errors.is_empty() {
                    "ok".to_owned()
                } else {
                    errors.join("; ")
                },
            );
        }
        None => {
            sources.insert(
                "database",
                "not configured (--analyze-database-url)".to_owned(),
            );
        }
    }

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
    match policy {
        Some(policy) => match state
            .store
            .list_scaling_events(PageRequest {
                limit: 200,
                before: None,
            })
            .await
        {
            Ok(page) => {
                let events: Vec<perf_scaling::ScalingEvent> =
                    page.items.into_iter().map(|r| r.event).collect();
                all.extend(perf_scaling::policy_advice(&policy, &events));
                sources.insert("scaling", "ok".to_owned());
            }
            Err(e) => {
                sources.insert("scaling", format!("history unreadable: {e}"));
            }
        },
        None => {
            sources.insert("scaling", "no policy configured".to_owned());
        }
    }

    let latest = state
        .store
        .list_load_tests(
            &TestFilter {
                status: Some(TestStatus::Completed),
                ..TestFilter::default()
            },
            PageRequest {
                limit: 1,
                before: None,
            },
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
            Some(Ok(plan)) => {
                all.push(plan.recommendation(target_rps, headroom));
                sources.insert("capacity", format!("from load test {}", test.id));
            }
            Some(Err(e)) => {
                sources.insert("capacity", format!("load test {}: {e}", test.id));
            }
            None => {
                sources.insert("capacity", "the latest test has no report".to_owned());
            }
        },
        Ok(None) => {
            sources.insert(
                "capacity",
                "no completed load test yet: run a step test".to_owned(),
            );
        }
        Err(e) => {
            sources.insert("capacity", format!("tests unreadable: {e}"));
        }
    }

    all.sort_by_key(|r| std::cmp::Reverse(r.severity));
    RecommendationList {
        recommendations: all,
        sources,
    }
}
