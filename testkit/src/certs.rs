//! Test-only certificates (see `testkit/certs/README.md`): a CA, a server
//! certificate for `localhost`, `127.0.0.1` and `::1`, a client certificate,
//! and a self-signed certificate no test trusts.

use std::path::PathBuf;

/// The path of one of the files in `testkit/certs`, e.g. `ca.pem`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}
