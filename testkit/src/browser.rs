//! A real headless Chromium for page tests, driven through chromedriver's
//! W3C WebDriver protocol (JSON over HTTP on 127.0.0.1) with [`crate::http`]:
//! no browser-automation crate, no second HTTP stack.
//!
//! Without `chromedriver` and `chromium` it fails with a message that names
//! the Debian packages to install; it never skips.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; the driver and the browser end on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium `width` × `height` pixels.
    pub fn start(width: u32, height: u32) -> Result<Self, String> {
        let driver_path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("chromedriver is needed for the browser tests: apt-get install -y chromium chromium-driver")?;
        let port = free_port()?;
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {driver_path}: {e}"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while crate::http::get(addr, "/status").map(|r| r.status) != Ok(200) {
            if Instant::now() > deadline {
                return Err("chromedriver did not answer within 20 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("chromium is needed for the browser tests: apt-get install -y chromium chromium-driver")?;
        let answer = browser.call(
            "POST",
            "/session",
            &json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": binary,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--no-first-run", "--disable-extensions", "--lang=en-GB",
                             format!("--window-size={width},{height}")]
                }
            }}}),
        )?;
        browser.session = answer["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {answer}"))?
            .to_owned();
        Ok(browser)
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let answer = crate::http::send(
            self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            &body,
        )?;
        let value: Value = serde_json::from_str(&answer.body)
            .map_err(|e| format!("chromedriver answered {}: {e}", answer.status))?;
        if answer.status != 200 {
            return Err(format!(
                "{method} {path}: {} {}",
                value["value"]["error"], value["value"]["message"]
            ));
        }
        Ok(value.get("value").cloned().unwrap_or(value))
    }

    fn session_call(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.session_call("POST", "/url", &json!({ "url": url }))
            .map(drop)
    }

    /// The page's URL now.
    pub fn url(&self) -> Result<String, String> {
        Ok(self
            .session_call("GET", "/url", &Value::Null)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The first element matching the CSS selector, now.
    pub fn find(&self, css: &str) -> Result<Element, String> {
        let found = self.session_call(
            "POST",
            "/element",
            &json!({"using": "css selector", "value": css}),
        )?;
        found[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_owned()))
            .ok_or_else(|| format!("no element {css}: {found}"))
    }

    /// The first element matching the CSS selector, waiting up to `limit`.
    pub fn wait_for(&self, css: &str, limit: Duration) -> Result<Element, String> {
        self.wait_until(&format!("{css} to appear"), limit, || self.find(css).ok())
    }

    /// Polls `check` every 100 ms until it gives a value or `limit` passes.
    pub fn wait_until<T>(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check() {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(format!("waited {limit:?} for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks `element`.
    pub fn click(&self, element: &Element) -> Result<(), String> {
        self.session_call("POST", &format!("/element/{}/click", element.0), &json!({}))
            .map(drop)
    }

    /// Types `text` into `element` (after what it holds).
    pub fn type_text(&self, element: &Element, text: &str) -> Result<(), String> {
        self.session_call(
            "POST",
            &format!("/element/{}/value", element.0),
            &json!({ "text": text }),
        )
        .map(drop)
    }

    /// Empties an input.
    pub fn clear(&self, element: &Element) -> Result<(), String> {
        self.session_call("POST", &format!("/element/{}/clear", element.0), &json!({}))
            .map(drop)
    }

    /// The element's rendered text.
    pub fn text(&self, element: &Element) -> Result<String, String> {
        Ok(self
            .session_call("GET", &format!("/element/{}/text", element.0), &Value::Null)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// An attribute of the element (`None` when absent).
    pub fn attribute(&self, element: &Element, name: &str) -> Result<Option<String>, String> {
        Ok(self
            .session_call(
                "GET",
                &format!("/element/{}/attribute/{name}", element.0),
                &Value::Null,
            )?
            .as_str()
            .map(str::to_owned))
    }

    /// Runs `script` in the page (a function body; `arguments` are `args`)
    /// and returns its result.
    pub fn script(&self, script: &str, args: &[Value]) -> Result<Value, String> {
        self.session_call(
            "POST",
            "/execute/sync",
            &json!({ "script": script, "args": args }),
        )
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        let data = self.session_call("GET", "/screenshot", &Value::Null)?;
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .map_err(|e| e.to_string())
    }

    /// Resizes the window.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), String> {
        self.session_call(
            "POST",
            "/window/rect",
            &json!({"width": width, "height": height}),
        )
        .map(drop)
    }

    /// Presses `key` (a WebDriver key code such as `"\u{E004}"` for Tab).
    pub fn press(&self, key: &str) -> Result<(), String> {
        self.session_call(
            "POST",
            "/actions",
            &json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]}),
        )
        .map(drop)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call(
                "DELETE",
                &format!("/session/{}", self.session),
                &Value::Null,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
