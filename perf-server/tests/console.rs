//! The web console in a real headless Chromium (chromedriver), against the
//! real binary: the token asked once, a validation error shown next to its
//! field, a test started from the form with its live charts moving, the
//! final report with its threshold verdict, a second test cancelled, a CPU
//! profile's flamegraph, every page at desktop and phone widths.
//!
//! With `CONSOLE_SCREENSHOTS=<dir>` set, each page's screenshot is written
//! there (the README's: `CONSOLE_SCREENSHOTS=$PWD/docs/images cargo test -p
//! perf-server --test console` from the workspace root; the test runs in
//! `perf-server/`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ServerProcess;
use serde_json::Value;
use testkit::browser::{Browser, Element};

const TOKEN: &str = "console-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn shot(browser: &Browser, name: &str) {
    let png = browser.screenshot().unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    if let Ok(dir) = std::env::var("CONSOLE_SCREENSHOTS") {
        std::fs::write(
            std::path::Path::new(&dir).join(format!("console-{name}.png")),
            png,
        )
        .unwrap();
    }
}

fn fill(browser: &Browser, css: &str, text: &str) -> Element {
    let input = browser.find(css).unwrap();
    browser.clear(&input).unwrap();
    browser.type_text(&input, text).unwrap();
    input
}

fn text_of(browser: &Browser, css: &str) -> String {
    browser
        .find(css)
        .and_then(|e| browser.text(&e))
        .unwrap_or_default()
}

/// Starts a test from the form and waits for its page.
/// Starts a test of `target` from the console at `base` and waits for its page.
fn start_from_form(browser: &Browser, base: &str, target: &str, duration: &str) -> String {
    browser.goto(&format!("{base}/ui/#/tests")).unwrap();
    browser.wait_for("#start-form", WAIT).unwrap();
    fill(browser, "#start-name", "console");
    fill(browser, "#start-target", target);
    fill(browser, "#start-users", "4");
    fill(browser, "#start-duration", duration);
    fill(browser, "#start-path", "/health");
    fill(
        browser,
        "#start-thresholds",
        "p95 < 1000ms, error_rate < 1%",
    );
    browser
        .click(&browser.find("#start-submit").unwrap())
        .unwrap();
    browser
        .wait_until("the test's page", WAIT, || {
            let url = browser.url().ok()?;
            url.contains("#/tests/")
                .then(|| url.rsplit('/').next().unwrap().to_owned())
        })
        .unwrap()
}

#[test]
fn the_console_starts_watches_reports_cancels_and_profiles_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("perf.yaml");
    // An autoscaler with one local instance, so the scaling page has one to show.
    let base_port = 36_000 + (std::process::id() % 1000) as u16 * 4;
    std::fs::write(
        &config,
        format!(
            "api_token: {TOKEN}\nsample_interval: 500ms\n{}",
            common::local_scaling(1, 2, 100_000, base_port)
        ),
    )
    .unwrap();
    let server = ServerProcess::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let base = format!("http://{}", server.addr);
    // The service under test: a local target of its own, not the console's server.
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let browser = Browser::start(1280, 900).unwrap();

    // `/` leads to the console. The view takes the focus on each page; Tab
    // goes on from there through the form's fields.
    browser.goto(&format!("{base}/")).unwrap();
    browser.wait_for("#start-form", WAIT).unwrap();
    assert!(browser.url().unwrap().contains("/ui/"));
    browser.press("\u{E004}").unwrap(); // Tab
    let focused = browser
        .script(
            "return document.activeElement.tagName + '#' + document.activeElement.id",
            &[],
        )
        .unwrap();
    assert_eq!(focused, "INPUT#start-name", "{focused}");
    // The skip link moves the focus to the page, and stays on it.
    // (Off screen until focused, as skip links are: reached by keyboard.)
    browser.find("a.skip[href='#view']").unwrap();
    browser
        .script("document.querySelector('a.skip').focus()", &[])
        .unwrap();
    browser.press("\u{E007}").unwrap(); // Enter
    let focused = browser
        .script(
            "return document.activeElement.id + '|' + location.hash",
            &[],
        )
        .unwrap();
    assert_eq!(focused, "view|", "{focused}");
    assert!(browser.find("#start-form").is_ok());

    // A bad value: the token is asked once (POST needs it), then the
    // server's error shows next to its field.
    fill(&browser, "#start-target", &target.url());
    fill(&browser, "#start-users", "0");
    fill(&browser, "#start-duration", "5s");
    browser
        .click(&browser.find("#start-submit").unwrap())
        .unwrap();
    let token = browser.wait_for("#token-input", WAIT).unwrap();
    browser
        .wait_until("the token dialog", WAIT, || {
            browser
                .script("return document.getElementById('token-dialog').open", &[])
                .ok()
                .filter(|v| v == &Value::Bool(true))
        })
        .unwrap();
    browser.type_text(&token, TOKEN).unwrap();
    shot(&browser, "token");
    browser
        .click(&browser.find("#token-form button[value=save]").unwrap())
        .unwrap();
    let message = browser
        .wait_until("the field's error", WAIT, || {
            Some(text_of(&browser, "#start-users-error")).filter(|t| !t.is_empty())
        })
        .unwrap();
    assert!(message.contains("users"), "{message}");
    let users = browser.find("#start-users").unwrap();
    assert_eq!(
        browser
            .attribute(&users, "aria-invalid")
            .unwrap()
            .as_deref(),
        Some("true")
    );
    shot(&browser, "validation");
    // The token stays in the tab's session storage, never in the URL.
    assert!(!browser.url().unwrap().contains(TOKEN));

    // A test from the form: its live figures move while it runs.
    let id = start_from_form(&browser, &base, &target.url(), "8s");
    browser.wait_for("#live-rps", WAIT).unwrap();
    let first = browser
        .wait_until("a live snapshot", WAIT, || {
            Some(text_of(&browser, "#live-elapsed")).filter(|t| t.contains(" s of "))
        })
        .unwrap();
    let later = browser
        .wait_until("the next snapshot", WAIT, || {
            Some(text_of(&browser, "#live-elapsed")).filter(|t| *t != first)
        })
        .unwrap();
    assert_ne!(first, later);
    let points = browser
        .script(
            "return Array.from(document.querySelectorAll('.uplot')).length",
            &[],
        )
        .unwrap();
    assert!(points.as_u64().unwrap() >= 3, "{points}");
    assert!(text_of(&browser, "#live-rps").contains("req/s"));
    shot(&browser, "test-running");

    // The end: the report with its verdicts, the stream closed by itself.
    browser
        .wait_for("#report-summary", Duration::from_secs(40))
        .unwrap();
    let report = text_of(&browser, "#report");
    assert!(report.contains("PASSED"), "{report}");
    assert!(
        report.contains("p95 < 1000ms") && report.contains("pass"),
        "{report}"
    );
    assert!(report.contains("health"), "{report}");
    assert_eq!(text_of(&browser, "#test-status"), "completed");
    shot(&browser, "test-report");

    // A second test, cancelled from its page, with a CPU profile taken
    // meanwhile from the system page.
    let second = start_from_form(&browser, &base, &target.url(), "60s");
    assert_ne!(second, id);
    browser.wait_for("#cancel-test", WAIT).unwrap();
    browser.goto(&format!("{base}/ui/#/system")).unwrap();
    browser.wait_for("#profile-form", WAIT).unwrap();
    browser
        .wait_until("the host samples", WAIT, || {
            Some(text_of(&browser, "#sys-cpu")).filter(|t| t.contains("cores"))
        })
        .unwrap();
    // A profile stopped early, then one left to its end.
    fill(&browser, "#profile-duration", "30");
    browser
        .click(&browser.find("#profile-start").unwrap())
        .unwrap();
    browser
        .wait_until("the profile to start", WAIT, || {
            Some(text_of(&browser, "#notice")).filter(|t| t.contains("running"))
        })
        .unwrap();
    browser
        .click(&browser.find("#profile-stop").unwrap())
        .unwrap();
    browser
        .wait_until("the profile to stop", WAIT, || {
            Some(text_of(&browser, "#notice")).filter(|t| t == "profile stopped")
        })
        .unwrap();
    fill(&browser, "#profile-duration", "2");
    browser
        .click(&browser.find("#profile-start").unwrap())
        .unwrap();
    let view = browser
        .wait_until(
            "the second profile in the list",
            Duration::from_secs(30),
            || {
                browser
                    .script(
                        "return document.querySelectorAll('#profile-list button').length",
                        &[],
                    )
                    .ok()
                    .filter(|n| n.as_u64() >= Some(2))?;
                browser.find("#profile-list button").ok()
            },
        )
        .unwrap();
    browser.click(&view).unwrap();
    let loaded = browser
        .wait_until("the flamegraph", WAIT, || {
            browser
                .script(
                    "const i = document.querySelector('#flamegraph img'); return i && i.complete && i.naturalWidth",
                    &[],
                )
                .ok()
                .and_then(|v| v.as_u64())
                .filter(|w| *w > 0)
        })
        .unwrap();
    assert!(loaded > 0);
    shot(&browser, "system");
    browser
        .goto(&format!("{base}/ui/#/tests/{second}"))
        .unwrap();
    let cancel = browser.wait_for("#cancel-test", WAIT).unwrap();
    browser.click(&cancel).unwrap();
    browser
        .wait_until("the cancelled status", WAIT, || {
            Some(text_of(&browser, "#test-status")).filter(|t| t == "cancelled")
        })
        .unwrap();

    // The other pages render, and the history lists both tests.
    browser.goto(&format!("{base}/ui/#/tests")).unwrap();
    browser.wait_for("#history table", WAIT).unwrap();
    let history = text_of(&browser, "#history");
    assert!(
        history.contains("completed") && history.contains("cancelled"),
        "{history}"
    );
    shot(&browser, "tests");
    browser
        .goto(&format!("{base}/ui/#/compare?a={id}&b={id}"))
        .unwrap();
    browser.wait_for("#comparison table", WAIT).unwrap();
    assert!(text_of(&browser, "#comparison").contains("p95"));
    shot(&browser, "compare");
    browser.goto(&format!("{base}/ui/#/scaling")).unwrap();
    browser.wait_for("#policy-form", WAIT).unwrap();
    let scaling = browser
        .wait_until("the instance, ready", Duration::from_secs(30), || {
            browser.goto(&format!("{base}/ui/#/scaling")).ok()?;
            browser.wait_for("#policy-form", WAIT).ok()?;
            Some(text_of(&browser, "#view"))
                .filter(|t| t.contains("Instances") && t.contains("127.0.0.1:"))
        })
        .unwrap();
    assert!(scaling.contains("Current"), "{scaling}");
    shot(&browser, "scaling");
    browser
        .goto(&format!("{base}/ui/#/recommendations"))
        .unwrap();
    browser
        .wait_until("the recommendations", WAIT, || {
            Some(text_of(&browser, "#view")).filter(|t| t.contains("Recommendations"))
        })
        .unwrap();
    shot(&browser, "recommendations");

    // A phone's width: nothing wider than the screen.
    browser.resize(390, 844).unwrap();
    for page in [
        "tests",
        &format!("tests/{id}"),
        &format!("compare?a={id}&b={id}"),
        "system",
        "scaling",
        "recommendations",
    ] {
        browser.goto(&format!("{base}/ui/#/{page}")).unwrap();
        browser.wait_for("main h1", WAIT).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let overflow = browser
            .script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                &[],
            )
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 1,
            "{page} is wider than a phone: {overflow}"
        );
    }
    shot(&browser, "phone");
}
