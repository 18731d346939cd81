//! Retention: finished tests, profiles and snapshots are kept up to a count
//! and an age (configurable), so a server that runs for months does not grow
//! without bound. The sweep runs every minute.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Keep, Retention};
use crate::store::{Retained, Store};

/// Deletes what `retention` keeps no more; returns how many rows went.
pub(crate) async fn sweep(store: &dyn Store, retention: &Retention) -> crate::Result<u64> {
    let now = perf_core::unix_millis();
    let mut removed = 0;
    for (kind, keep) in [
        (Retained::LoadTests, retention.tests),
        (Retained::Profiles, retention.profiles),
        (Retained::Snapshots, retention.snapshots),
    ] {
        removed += store.prune(kind, keep.max_count, cutoff(now, keep)).await?;
    }
    Ok(removed)
}

fn cutoff(now_ms: u64, keep: Keep) -> u64 {
    now_ms.saturating_sub(u64::try_from(keep.max_age.as_duration().as_millis()).unwrap_or(u64::MAX))
}

/// Runs [`sweep`] every `every` until `stop` is cancelled.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    retention: Retention,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => break,
            }
            match sweep(store.as_ref(), &retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "retention: old records deleted"),
                Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
            }
        }
    })
}
