//! The Kubernetes manager against a local fake API server that answers the
//! real Kubernetes HTTP API for the calls it makes: GET and PATCH
//! (merge-patch) of `deployments/{name}/scale`, and the pod list by the
//! scale's label selector.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use perf_scaling::{InstanceManager, KubernetesConfig, KubernetesDeployment, PodPhase};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Cluster {
    replicas: u32,
    /// (name, ready, phase, ip, restarts)
    pods: Vec<(String, bool, &'static str, String, i32)>,
    calls: Vec<String>,
}

fn scale(c: &Cluster) -> Value {
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
        "spec": {"replicas": c.replicas},
        "status": {"replicas": c.replicas, "selector": "app=web"}
    })
}

fn pods(c: &Cluster) -> Value {
    let items: Vec<Value> = c
        .pods
        .iter()
        .map(|(name, ready, phase, ip, restarts)| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1"}]},
                "status": {
                    "phase": phase, "podIP": ip, "startTime": "2026-11-28T10:00:00Z",
                    "conditions": [{"type": "Ready", "status": if *ready { "True" } else { "False" }}],
                    "containerStatuses": [{"name": "web", "image": "web:1", "imageID": "", "ready": ready, "restartCount": restarts}]
                }
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": items})
}

/// Serves the fake API until the test ends; returns its URL.
async fn fake_api(cluster: Arc<Mutex<Cluster>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let cluster = Arc::clone(&cluster);
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then the body by Content-Length.
                let (head, mut body) = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (
                            String::from_utf8_lossy(&raw[..p]).into_owned(),
                            raw[p + 4..].to_vec(),
                        );
                    }
                };
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while body.len() < length {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&buf[..n]);
                }
                let mut parts = head.lines().next().unwrap_or("").split_whitespace();
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let content_type = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-type:")
                        .map(|v| v.trim().to_owned())
                });
                let (status, answer) = {
                    let mut c = cluster.lock().unwrap();
                    c.calls.push(format!("{method} {target}"));
                    let path = target.split('?').next().unwrap_or("");
                    match (method, path) {
                        ("GET", "/apis/apps/v1/namespaces/shop/deployments/web/scale") => {
                            (200, scale(&c))
                        }
                        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web/scale") => {
                            let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            match (content_type.as_deref(), patch["spec"]["replicas"].as_u64()) {
                                (Some("application/merge-patch+json"), Some(r)) => {
                                    c.replicas = u32::try_from(r).unwrap();
                                    (200, scale(&c))
                                }
                                _ => (
                                    422,
                                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "bad patch", "reason": "Invalid", "code": 422}),
                                ),
                            }
                        }
                        ("GET", "/api/v1/namespaces/shop/pods")
                            if target.contains("labelSelector=app%3Dweb") =>
                        {
                            (200, pods(&c))
                        }
                        _ => (
                            404,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "not found", "reason": "NotFound", "code": 404}),
                        ),
                    }
                };
                let text = answer.to_string();
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn reads_scale_and_pod_readiness_and_patches_the_scale_subresource() {
    let cluster = Arc::new(Mutex::new(Cluster {
        replicas: 3,
        pods: vec![
            ("web-a".into(), true, "Running", "10.1.0.5".into(), 0),
            ("web-b".into(), true, "Running", "10.1.0.6".into(), 2),
            ("web-c".into(), false, "Pending", "10.1.0.7".into(), 0),
        ],
        calls: Vec::new(),
    }));
    let url = fake_api(Arc::clone(&cluster)).await;
    let manager = KubernetesDeployment::new(
        KubernetesConfig::builder("shop", "web")
            .api_url(url)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(manager.replicas().await.unwrap(), 3);
    let instances = manager.instances().await.unwrap();
    assert_eq!(instances.len(), 3);
    assert_eq!(instances[0].address.as_deref(), Some("10.1.0.5:8080"));
    assert!(instances[0].ready && instances[1].ready && !instances[2].ready);
    assert_eq!(instances[2].phase, PodPhase::Pending);
    assert_eq!(instances[1].restarts, 2);
    assert!(instances[0].age_s > 0.0);

    manager.scale_to(5).await.unwrap();
    assert_eq!(cluster.lock().unwrap().replicas, 5);
    assert_eq!(manager.replicas().await.unwrap(), 5);
    let calls = cluster.lock().unwrap().calls.clone();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("PATCH /apis/apps/v1/namespaces/shop/deployments/web/scale")),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("GET /api/v1/namespaces/shop/pods?")
                && c.contains("labelSelector=app%3Dweb")),
        "{calls:?}"
    );

    // A deployment that does not exist is a clear error.
    let missing = KubernetesDeployment::new(
        KubernetesConfig::builder("shop", "nope")
            .api_url(fake_api(cluster).await)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let err = missing.replicas().await.unwrap_err().to_string();
    assert!(err.starts_with("kubernetes:"), "{err}");
}
