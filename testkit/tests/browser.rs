//! The WebDriver client against a real headless Chromium.
#![allow(clippy::unwrap_used)]

use testkit::browser::Browser;

#[test]
fn a_headless_chromium_opens_a_page_and_runs_a_script() {
    let browser = Browser::start(800, 600).unwrap();
    browser
        .goto("data:text/html,<title>t</title><p id=x>hello</p>")
        .unwrap();
    let p = browser.find("#x").unwrap();
    assert_eq!(browser.text(&p).unwrap(), "hello");
    assert_eq!(browser.script("return 6 * 7", &[]).unwrap(), 42);
    assert!(browser.screenshot().unwrap().starts_with(b"\x89PNG"));
    assert!(browser.find("#missing").is_err());
}
