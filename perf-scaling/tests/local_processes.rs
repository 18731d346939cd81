//! Real local processes (Python's http.server) started, health-checked,
//! restarted after a crash, drained, and driven by the controller.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perf_scaling::{
    Instance, InstanceManager, LocalProcessConfig, LocalProcesses, MetricsSource, Reading,
    ScalingController, ScalingPolicy,
};

fn free_base_port() -> u16 {
    // A run of 8 free ports starting at a random spot above 20000; each
    // call (tests run in parallel) starts further on.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let offset = NEXT.fetch_add(400, std::sync::atomic::Ordering::Relaxed);
    let start = 20_000 + (std::process::id() % 2000) as u16 * 8 + offset;
    for base in (start..60_000).step_by(8) {
        if (0..8).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free ports");
}

fn python_servers(base_port: u16) -> LocalProcessConfig {
    assert!(
        std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_ok(),
        "these tests run python3 -m http.server as the instances: apt-get install -y python3"
    );
    LocalProcessConfig::builder(
        [
            "python3",
            "-m",
            "http.server",
            "{port}",
            "--bind",
            "127.0.0.1",
        ]
        .map(String::from)
        .to_vec(),
        base_port,
    )
    .health_path("/")
    .health_interval_s(0.1)
    .drain_timeout_s(5.0)
    .build()
    .unwrap()
}

async fn wait_until(what: &str, limit: Duration, check: impl AsyncFn() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_start_get_ready_restart_after_a_crash_and_drain() {
    let base = free_base_port();
    let local = LocalProcesses::new(python_servers(base)).unwrap();
    local.scale_to(3).await.unwrap();
    let all_ready = async || {
        let i = local.instances().await.unwrap();
        i.len() == 3 && i.iter().all(|x| x.ready)
    };
    wait_until("3 ready", Duration::from_secs(15), all_ready).await;
    let instances = local.instances().await.unwrap();
    let ports: Vec<String> = instances
        .iter()
        .map(|i| i.address.clone().unwrap())
        .collect();
    assert_eq!(
        ports,
        (0..3)
            .map(|i| format!("127.0.0.1:{}", base + i))
            .collect::<Vec<_>>()
    );

    // A crash: the supervisor restarts it and counts it.
    let victim = instances[1].pid.unwrap();
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let restarted = async || {
        let i = local.instances().await.unwrap();
        i[1].restarts == 1 && i[1].ready && i[1].pid != Some(victim)
    };
    wait_until("restarted", Duration::from_secs(15), restarted).await;

    // Scale down drains the newest.
    let started = Instant::now();
    local.scale_to(1).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM ends python at once"
    );
    let left = local.instances().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, "local-0");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", base + 2)).is_err(),
        "the drained one is gone"
    );
    local.shutdown().await;
    assert!(local.instances().await.unwrap().is_empty());
    // Nothing is left behind, even where `python3` is a wrapper that
    // forks (a pyenv shim): the whole process group was signalled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for port in base..base + 3 {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers"
        );
    }
}

/// A source whose per-instance load the test sets.
struct Load(Mutex<f64>);

#[async_trait::async_trait]
impl MetricsSource for Load {
    async fn read(&self, instances: &[Instance]) -> BTreeMap<String, Reading> {
        let total = *self.0.lock().unwrap();
        let ready: Vec<&Instance> = instances.iter().filter(|i| i.ready).collect();
        let per = total / ready.len().max(1) as f64;
        let values = ready.iter().map(|i| (i.id.clone(), per)).collect();
        [("rps".to_owned(), Reading::PerPod(values))].into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_scales_real_processes_and_respects_manual_bounds() {
    let base = free_base_port();
    let manager = Arc::new(LocalProcesses::new(python_servers(base)).unwrap());
    let load = Arc::new(Load(Mutex::new(50.0)));
    let policy: ScalingPolicy = serde_json::from_str(
        r#"{"min_replicas": 1, "max_replicas": 5,
            "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 100}}],
            "behavior": {"scale_down": {"stabilization_window_seconds": 0}}}"#,
    )
    .unwrap();
    let controller = ScalingController::new(policy, manager.clone(), load.clone()).unwrap();
    let first = controller.tick().await.unwrap();
    assert_eq!((first.from, first.to), (0, 1));
    wait_until("1 ready", Duration::from_secs(15), async || {
        manager.instances().await.unwrap().iter().all(|i| i.ready)
    })
    .await;
    *load.0.lock().unwrap() = 380.0;
    let up = controller.tick().await.unwrap();
    assert_eq!((up.from, up.to), (1, 4), "{up:?}");
    assert!(up.reason.contains("rps asks for 4"), "{}", up.reason);
    wait_until("4 ready", Duration::from_secs(15), async || {
        let i = manager.instances().await.unwrap();
        i.len() == 4 && i.iter().all(|x| x.ready)
    })
    .await;
    let status = controller.status().await.unwrap();
    assert_eq!((status.current_replicas, status.desired_replicas), (4, 4));
    let shares: f64 = status.instances.iter().filter_map(|i| i.load_share).sum();
    assert!((shares - 1.0).abs() < 1e-9, "{status:?}");

    let err = controller.manual(9, false).await.unwrap_err().to_string();
    assert!(err.starts_with("replicas:"), "{err}");
    let forced = controller.manual(2, true).await.unwrap();
    assert_eq!(
        (forced.kind.as_str(), forced.from, forced.to),
        ("manual", 4, 2)
    );
    assert_eq!(manager.instances().await.unwrap().len(), 2);
    manager.shutdown().await;
}
