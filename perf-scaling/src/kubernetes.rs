//! The Kubernetes instance manager (feature `kubernetes`): a Deployment's
//! replicas through its `scale` subresource, its pods' readiness from the
//! pods matching the scale's selector. Credentials come from the usual
//! places (in-cluster service account, or `~/.kube/config`), or an explicit
//! API URL.

use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use crate::instances::{Instance, InstanceManager};
use crate::replicas::PodPhase;
use crate::{Error, Result};

/// Which Deployment to scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KubernetesConfig {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub deployment: String,
    /// The container port instances serve on (for their addresses).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The API server, e.g. `http://127.0.0.1:8001` behind `kubectl proxy`
    /// (default: in-cluster config or `~/.kube/config`).
    #[serde(default)]
    pub api_url: Option<String>,
}

fn default_port() -> u16 {
    8080
}

/// Scales a Deployment.
#[derive(Clone)]
pub struct KubernetesDeployment {
    config: KubernetesConfig,
    client: Client,
}

impl std::fmt::Debug for KubernetesDeployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesDeployment")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn kube_error(e: impl std::fmt::Display) -> Error {
    Error::Input(format!("kubernetes: {e}"))
}

impl KubernetesDeployment {
    /// Connects (nothing is read until the first call).
    pub async fn new(config: KubernetesConfig) -> Result<Self> {
        config.validate()?;
        let kube_config = match &config.api_url {
            Some(url) => {
                let uri = url
                    .parse()
                    .map_err(|e| Error::invalid("api_url", format!("{url:?} is not a URL: {e}")))?;
                kube::Config::new(uri)
            }
            None => kube::Config::infer().await.map_err(kube_error)?,
        };
        let client = Client::try_from(kube_config).map_err(kube_error)?;
        Ok(Self { config, client })
    }

    fn deployments(&self) -> Api<k8s_openapi::api::apps::v1::Deployment> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    async fn scale(&self) -> Result<k8s_openapi::api::autoscaling::v1::Scale> {
        self.deployments()
            .get_scale(&self.config.deployment)
            .await
            .map_err(kube_error)
    }
}

fn phase(p: Option<&str>) -> PodPhase {
    match p {
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Pending,
    }
}

#[async_trait::async_trait]
impl InstanceManager for KubernetesDeployment {
    async fn instances(&self) -> Result<Vec<Instance>> {
        let scale = self.scale().await?;
        let selector = scale
            .status
            .and_then(|s| s.selector)
            .ok_or_else(|| kube_error("the scale subresource has no selector"))?;
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), &self.config.namespace);
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_error)?;
        let now = k8s_openapi::jiff::Timestamp::now();
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let status = p.status.unwrap_or_default();
                let ready = status
                    .conditions
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                let restarts = status
                    .container_statuses
                    .as_ref()
                    .map_or(0, |c| c.iter().map(|s| s.restart_count.max(0) as u32).sum());
                let age_s = status
                    .start_time
                    .map_or(0.0, |t| (now - t.0).get_seconds() as f64);
                Instance {
                    id: p.metadata.name.unwrap_or_default(),
                    address: status.pod_ip.map(|ip| format!("{ip}:{}", self.config.port)),
                    ready,
                    phase: phase(status.phase.as_deref()),
                    restarts,
                    age_s,
                    pid: None,
                }
            })
            .collect())
    }

    async fn replicas(&self) -> Result<u32> {
        let scale = self.scale().await?;
        Ok(scale
            .spec
            .and_then(|s| s.replicas)
            .map_or(0, |r| r.max(0) as u32))
    }

    async fn scale_to(&self, replicas: u32) -> Result<()> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        self.deployments()
            .patch_scale(
                &self.config.deployment,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(kube_error)?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "kubernetes deployment {}/{}",
            self.config.namespace, self.config.deployment
        )
    }
}

impl KubernetesConfig {
    /// Checks every field; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        // A namespace is an RFC 1123 label, a deployment's name a subdomain.
        for (field, value, max, dots) in [
            ("namespace", &self.namespace, 63, false),
            ("deployment", &self.deployment, 253, true),
        ] {
            if !is_dns_name(value, max, dots) {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{value:?} must be 1 to {max} lower-case letters, digits or '-'{}, starting and ending with a letter or digit",
                        if dots { " or '.'" } else { "" }
                    ),
                ));
            }
        }
        if self.port == 0 {
            return Err(Error::invalid("port", "must be 1 to 65535"));
        }
        if let Some(url) = &self.api_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(Error::invalid(
                "api_url",
                format!("{url:?} must be an http:// or https:// URL"),
            ));
        }
        Ok(())
    }
}

/// A Kubernetes name (RFC 1123 label, or subdomain when dots are allowed).
fn is_dns_name(s: &str, max: usize, dots: bool) -> bool {
    let b = s.as_bytes();
    (1..=max).contains(&b.len())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || (dots && *c == b'.')
        })
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

perf_core::config_builder! {
    /// Builds a [`KubernetesConfig`] from the namespace and the deployment.
    KubernetesConfig(namespace: impl Into<String>, deployment: impl Into<String>)
        => KubernetesConfigBuilder, Error {
        port: u16,
        api_url: Option<String> => into,
    }
    starting from KubernetesConfig {
        namespace: namespace.into(),
        deployment: deployment.into(),
        port: default_port(),
        api_url: None,
    }
}

#[cfg(test)]
mod tests {
    use super::KubernetesConfig;

    #[test]
    fn the_builder_refuses_names_kubernetes_would_refuse() {
        let config = KubernetesConfig::builder("shop", "web.v2")
            .port(9000)
            .build()
            .unwrap();
        assert_eq!((config.port, config.api_url.as_deref()), (9000, None));
        for (namespace, deployment, field) in [
            ("", "web", "namespace"),
            ("Shop", "web", "namespace"),
            ("shop.eu", "web", "namespace"),
            ("shop", "-web", "deployment"),
            ("shop", "web_1", "deployment"),
        ] {
            let err = KubernetesConfig::builder(namespace, deployment)
                .build()
                .unwrap_err();
            assert!(
                err.to_string().starts_with(field),
                "{namespace}/{deployment}: {err}"
            );
        }
        let err = KubernetesConfig::builder("shop", "web")
            .port(0)
            .build()
            .unwrap_err();
        assert!(err.to_string().starts_with("port"), "{err}");
        let err = KubernetesConfig::builder("shop", "web")
            .api_url("file:///etc/passwd".to_owned())
            .build()
            .unwrap_err();
        assert!(err.to_string().starts_with("api_url"), "{err}");
    }
}
