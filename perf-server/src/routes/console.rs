//! The web console: static pages embedded in the binary (no build step, no
//! external network), served under `/ui/`; `/` leads there.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};

use crate::api_error::ApiError;

/// An embedded file: its name under `/ui/`, media type and bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

/// Every file of the console. uPlot (MIT, see `uPlot-LICENSE.txt`) is
/// vendored as published on npm (1.6.32).
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        media_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        media_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "app.css",
        media_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../ui/app.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        media_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../ui/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        media_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../ui/uPlot.min.css"),
    },
    Asset {
        name: "uPlot-LICENSE.txt",
        media_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../ui/uPlot-LICENSE.txt"),
    },
];

/// What the console's pages may load and reach: this server only, scripts
/// and style sheets from these files (the chart library sets styles through
/// the DOM, which the policy does not govern); the flamegraphs are SVG
/// images from this server.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Each file's ETag: a hash of its bytes, computed once.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{:016x}\"", fingerprint(a.bytes)))
            .collect()
    });
    ASSETS
        .iter()
        .position(|a| a.name == asset.name)
        .and_then(|i| tags.get(i))
        .map_or("\"0\"", String::as_str)
}

fn serve(asset: &Asset, request: &HttpRequest) -> HttpResponse {
    let tag = etag(asset);
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, tag))
        // Revalidated each time: a new binary serves new files at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if unchanged {
        return response.finish();
    }
    response.content_type(asset.media_type).body(asset.bytes)
}

/// FNV-1a of a file: its part of the ETag.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The console lives under `/ui/`.
#[utoipa::path(get, operation_id = "openConsole", path = "/", tag = "console", responses(
    (status = 302, description = "to the console, `/ui/`", headers(("Location" = String, description = "/ui/")))
))]
#[get("/")]
pub(crate) async fn root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

/// The console's page (one page; its views are `#/tests`, `#/system`...).
#[utoipa::path(get, operation_id = "getConsolePage", path = "/ui/", tag = "console", responses(
    (status = 200, content_type = "text/html", body = String, description = "the console")
))]
#[get("/ui/")]
pub(crate) async fn page(request: HttpRequest) -> HttpResponse {
    serve(&ASSETS[0], &request)
}

/// A file of the console (script, style sheet, the chart library and its licence).
#[utoipa::path(get, operation_id = "getConsoleFile", path = "/ui/{file}", tag = "console", responses(
    (status = 200, body = String, description = "the file"),
    (status = 304, description = "unchanged (If-None-Match)"),
    (status = 404, body = crate::api_error::ErrorBody, description = "no such file")
))]
#[get("/ui/{file}")]
pub(crate) async fn file(
    request: HttpRequest,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == file.as_str())
        .map(|a| serve(a, &request))
        .ok_or_else(|| ApiError::not_found("the console has no such file"))
}
