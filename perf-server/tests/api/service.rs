//! Health, metrics, snapshots, errors, auth, request ids and the OpenAPI contract.

use super::*;

#[actix_web::test]
async fn health_ready_and_metrics_endpoints_answer_with_live_values() {
    let (svc, _dir) = service(None).await;
    let (status, body) = get_json(&svc, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");

    // The first read waits for a real sample instead of answering zeros.
    let (status, cpu) = get_json(&svc, "/performance/metrics/cpu").await;
    assert_eq!(status, 200, "{cpu}");
    assert!(cpu["interval_ms"].as_u64().unwrap() >= 50, "{cpu}");
    let cores = cpu["cores"].as_u64().unwrap();
    assert!(cores >= 1);
    assert_eq!(
        cpu["per_core_utilization_percent"]
            .as_array()
            .unwrap()
            .len() as u64,
        cores
    );
    assert!(cpu["load_average_1m"].is_number());

    let (status, ready) = get_json(&svc, "/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["store"], "sqlite");
    assert_eq!(ready["schema_version"], 5);

    let (_, mem) = get_json(&svc, "/performance/metrics/memory").await;
    assert!(
        mem["process_rss_bytes"].as_u64().unwrap() > 1 << 20,
        "{mem}"
    );
    assert!(
        mem["host_total_bytes"].as_u64().unwrap() >= mem["host_available_bytes"].as_u64().unwrap()
    );
    assert!(mem.get("allocator").is_some(), "{mem}");

    let (_, net) = get_json(&svc, "/performance/metrics/network").await;
    let lo = net["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "lo")
        .cloned()
        .unwrap();
    assert!(lo["rx_bytes_per_sec"].is_number());
    assert!(net["tcp"]["total"].is_number());

    let (_, summary) = get_json(&svc, "/performance/metrics").await;
    for key in [
        "cpu_utilization_percent",
        "process_rss_bytes",
        "tcp_established",
        "uptime_seconds",
    ] {
        assert!(summary.get(key).is_some(), "{key} missing in {summary}");
    }
}

#[actix_web::test]
async fn window_returns_a_series_and_bad_windows_name_the_parameter() {
    let (svc, _dir) = service(None).await;
    actix_web::rt::time::sleep(Duration::from_millis(650)).await;
    let (status, series) = get_json(&svc, "/performance/metrics/cpu?window=60s").await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["window_ms"], 60_000);
    let samples = series["samples"].as_array().unwrap();
    assert!(samples.len() >= 3, "{}", samples.len());
    let times: Vec<u64> = samples
        .iter()
        .map(|s| s["timestamp_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    let (_, short) = get_json(&svc, "/performance/metrics/memory?window=150ms").await;
    assert!(short["samples"].as_array().unwrap().len() < samples.len());

    for (uri, field) in [
        ("/performance/metrics/cpu?window=forever", "window"),
        ("/performance/metrics/cpu?window=2h", "window"),
        ("/performance/metrics/network?windw=5s", "windw"),
    ] {
        let (status, body) = get_json(&svc, uri).await;
        assert_eq!(status, 400, "{uri}: {body}");
        assert_error(&body, "bad_request", Some(field));
    }
}

#[actix_web::test]
async fn snapshots_are_created_listed_read_and_deleted() {
    let (svc, _dir) = service(None).await;
    let create = |label: &str| {
        post_json(
            "/performance/metrics/snapshots",
            json!({"label": label, "note": "n"}),
        )
    };
    let resp = test::call_service(&svc, create("before deploy")).await;
    assert_eq!(resp.status(), 201);
    let location = header(&resp, "location");
    let (_, created) = json_of(resp).await;
    assert_eq!(
        location,
        format!(
            "/performance/metrics/snapshots/{}",
            created["id"].as_str().unwrap()
        )
    );
    assert!(
        created["sample"]["cpu"]["cores"].as_u64().unwrap() >= 1,
        "{created}"
    );

    let (status, got) = get_json(&svc, &location).await;
    assert_eq!(status, 200);
    assert_eq!(got, created);

    let _ = test::call_service(&svc, create("after deploy")).await;
    let (_, page) = get_json(&svc, "/performance/metrics/snapshots?limit=1").await;
    assert_eq!(page["items"][0]["label"], "after deploy");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page2) = get_json(
        &svc,
        &format!("/performance/metrics/snapshots?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(page2["items"][0]["label"], "before deploy");
    assert!(page2["next_cursor"].is_null());

    let resp = test::call_service(&svc, TestRequest::delete().uri(&location).to_request()).await;
    assert_eq!(resp.status(), 204);
    let (status, body) = get_json(&svc, &location).await;
    assert_eq!(status, 404);
    assert_error(&body, "not_found", None);
    let (status, _) = call_json(&svc, TestRequest::delete().uri(&location).to_request()).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn bad_requests_get_json_errors_with_the_right_status_and_field() {
    let (svc, _dir) = service(None).await;
    let post = |body: &str| {
        TestRequest::post()
            .uri("/performance/metrics/snapshots")
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_owned())
            .to_request()
    };
    let cases: [(&str, u16, &str, Option<&str>); 6] = [
        (
            r#"{"label": "x", "lable": "typo"}"#,
            422,
            "invalid_field",
            Some("lable"),
        ),
        (r#"{"label": 5}"#, 422, "invalid_field", Some("label")),
        (
            r#"{"note": "no label"}"#,
            422,
            "invalid_field",
            Some("label"),
        ),
        (r#"{"label": "   "}"#, 422, "invalid_field", Some("label")),
        (r#"{"label": "#, 400, "bad_request", None),
        (r#"{"label": "x",}"#, 400, "bad_request", None),
    ];
    for (body, status, code, field) in cases {
        let (got, json) = call_json(&svc, post(body)).await;
        assert_eq!(got.as_u16(), status, "{body}: {json}");
        assert_error(&json, code, field);
    }
    let long = format!(r#"{{"label": "{}"}}"#, "x".repeat(201));
    let (got, json) = call_json(&svc, post(&long)).await;
    assert_eq!(got, 422);
    assert_error(&json, "invalid_field", Some("label"));

    let big = format!(r#"{{"label": "x", "note": "{}"}}"#, "y".repeat(2 << 20));
    let (got, json) = call_json(&svc, post(&big)).await;
    assert_eq!(got, 413, "{json}");
    assert_error(&json, "payload_too_large", None);

    let wrong_type = TestRequest::post()
        .uri("/performance/metrics/snapshots")
        .insert_header(("content-type", "text/plain"))
        .set_payload(r#"{"label":"x"}"#)
        .to_request();
    let (got, json) = call_json(&svc, wrong_type).await;
    assert_eq!(got, 415);
    assert_error(&json, "unsupported_media_type", None);

    for (uri, status, field) in [
        ("/performance/metrics/snapshots/not-a-uuid", 400, Some("id")),
        ("/performance/metrics/snapshots?limit=0", 400, Some("limit")),
        (
            "/performance/metrics/snapshots?cursor=zzz",
            400,
            Some("cursor"),
        ),
        ("/performance/nothing-here", 404, None),
    ] {
        let (got, json) = get_json(&svc, uri).await;
        assert_eq!(got.as_u16(), status, "{uri}: {json}");
        assert_eq!(json["error"]["field"].as_str(), field, "{uri}: {json}");
    }
}

#[actix_web::test]
async fn with_a_token_every_state_change_needs_it_and_reads_do_not() {
    let (svc, _dir) = service(Some(TOKEN)).await;
    let create = |auth: Option<&str>| {
        let mut req = TestRequest::post()
            .uri("/performance/metrics/snapshots")
            .set_json(json!({"label": "x"}));
        if let Some(a) = auth {
            req = req.insert_header(("authorization", a));
        }
        req.to_request()
    };
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some(&*format!("Basic {TOKEN}")),
    ] {
        let resp = test::call_service(&svc, create(auth)).await;
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(resp.headers().get("www-authenticate").unwrap(), "Bearer");
        let (_, json) = json_of(resp).await;
        assert_error(&json, "unauthorized", None);
    }
    let resp = test::call_service(&svc, create(Some(&format!("Bearer {TOKEN}")))).await;
    assert_eq!(resp.status(), 201);
    let location = header(&resp, "location");

    let resp = test::call_service(&svc, TestRequest::delete().uri(&location).to_request()).await;
    assert_eq!(resp.status(), 401);
    let resp = test::call_service(&svc, TestRequest::get().uri(&location).to_request()).await;
    assert_eq!(resp.status(), 200);
    let resp = test::call_service(
        &svc,
        TestRequest::delete()
            .uri(&location)
            .insert_header(("authorization", format!("Bearer {TOKEN}")))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 204);
}

#[actix_web::test]
async fn prometheus_counts_requests_by_route_and_status_and_openapi_lists_routes() {
    let (svc, _dir) = service(None).await;
    for _ in 0..3 {
        let _ = test::call_service(&svc, TestRequest::get().uri("/health").to_request()).await;
    }
    let _ = test::call_service(
        &svc,
        TestRequest::get()
            .uri("/performance/metrics/snapshots/not-a-uuid")
            .to_request(),
    )
    .await;
    let resp = test::call_service(&svc, TestRequest::get().uri("/metrics").to_request()).await;
    assert!(header(&resp, "content-type").starts_with("text/plain"));
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    let health_line = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total")
                && l.contains(r#"route="/health""#)
                && l.contains(r#"status="200""#)
        })
        .unwrap_or_else(|| panic!("no /health counter in\n{text}"));
    let count: f64 = health_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{health_line}");
    assert!(
        text.contains(r#"route="/performance/metrics/snapshots/{id}""#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );

    let (status, doc) = get_json(&svc, "/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/performance/metrics",
        "/performance/metrics/cpu",
        "/performance/metrics/memory",
        "/performance/metrics/network",
        "/performance/metrics/snapshots",
        "/performance/metrics/snapshots/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(
        doc["components"]["schemas"].get("CpuView").is_some(),
        "{}",
        doc["components"]
    );
}

#[actix_web::test]
async fn request_ids_and_trace_context_are_echoed() {
    let (app, _dir) = service(None).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = test::call_service(
        &app,
        TestRequest::get()
            .uri("/health")
            .insert_header(("traceparent", parent))
            .insert_header(("x-request-id", "req-42"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "req-42");
    assert_eq!(resp.headers().get("traceparent").unwrap(), parent);
    // Without one, the server makes a request id.
    let resp = test::call_service(&app, TestRequest::get().uri("/health").to_request()).await;
    assert_eq!(resp.headers().get("x-request-id").unwrap().len(), 36);
    assert!(resp.headers().get("traceparent").is_none());
}

/// Both directions between the OpenAPI document and what actix serves:
/// every documented operation reaches the handler of that very pattern (not
/// the no-route answer, not a neighbour such as `{id}`), and every route a
/// handler declares is documented with that method. Handlers declare their
/// routes with one-line `#[get("...")]`-style attributes in `src/routes/*.rs`
/// (the house style: no `web::resource` or `.route()` in `app.rs`); this scan
/// reads exactly those.
#[actix_web::test]
async fn every_served_route_is_documented_and_every_documented_route_is_served() {
    use std::collections::BTreeSet;
    use utoipa::OpenApi;
    let (svc, _dir) = service(None).await;
    let doc = serde_json::to_value(perf_server::ApiDoc::openapi()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            documented.insert((method.clone(), path.clone()));
            let uri = path.replace("{id}", "00000000-0000-4000-8000-000000000000");
            let mut req = TestRequest::default()
                .method(actix_web::http::Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&uri);
            if matches!(method.as_str(), "POST" | "PUT") {
                // An empty object: refused by the handler (422), never started.
                req = req
                    .insert_header(("content-type", "application/json"))
                    .set_payload("{}");
            }
            let resp = test::call_service(&svc, req.to_request()).await;
            // The route that answered must be this one (not, say, `{id}`
            // taking `history` for an id).
            let pattern = resp.request().match_pattern();
            let status = resp.status();
            // An event stream never ends by itself: its headers say enough.
            let streaming = resp
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body = if streaming {
                String::new()
            } else {
                String::from_utf8_lossy(&test::read_body(resp).await).into_owned()
            };
            assert_eq!(
                pattern.as_deref(),
                Some(path.as_str()),
                "{method} {path} is documented but not served: {status} {body}"
            );
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && !body.contains("no route for"),
                "{method} {path} is documented but not served: {status} {body}"
            );
        }
    }
    let mut declared = BTreeSet::new();
    let routes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    for entry in std::fs::read_dir(routes).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in source.lines().map(str::trim) {
            for method in ["get", "post", "put", "delete", "patch"] {
                if let Some(rest) = line.strip_prefix(&format!("#[{method}(\"")) {
                    let path = rest.split('"').next().unwrap();
                    declared.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    assert!(declared.len() > 20, "found only {declared:?}");
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let undeclared: Vec<_> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in the document: {undocumented:?}"
    );
    assert!(
        undeclared.is_empty(),
        "documented but no handler declares it: {undeclared:?}"
    );
}
