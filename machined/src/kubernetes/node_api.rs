//! What the node API asks of the Kubernetes controller: `POST /v1/bootstrap`,
//! `POST /v1/kubeconfig` and `GET /v1/health` (see [`basalt_api::route`]).
//! [`crate::server`] dispatches those routes to this trait on [`Node`]; the
//! wire types live in [`basalt_api::rpc`].
//!
//! A control-plane node mints kubeconfigs itself (it holds the cluster CA);
//! a worker cannot, and says so.

use crate::kubernetes::pki;
use crate::node::Node;
use basalt_api::rpc::{BootstrapResponse, HealthReport, KubeconfigRequest, KubeconfigResponse};
use std::future::Future;
use std::time::SystemTime;

/// Why a Kubernetes call failed: the HTTP status and the message the
/// operator reads (basaltctl prints it as `error: STATUS: MESSAGE`).
/// 409 for a second bootstrap, 503 while the control plane is not up, 400
/// for a bad request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KubeApiError {
    pub status: u16,
    pub message: String,
}

impl KubeApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// The Kubernetes side of the node API. The futures are `Send`: the server
/// awaits them on its connection tasks.
pub trait KubernetesApi {
    /// `POST /v1/bootstrap` (admin): initialise etcd as a new cluster on this
    /// control-plane node, once; 409 with a clear message on a second call.
    fn bootstrap(&self) -> impl Future<Output = Result<BootstrapResponse, KubeApiError>> + Send;

    /// `POST /v1/kubeconfig` (admin): mint a kubeconfig for `req.user`,
    /// pointing at `req.server` or else `cluster.endpoint`. `req` has passed
    /// [`KubeconfigRequest::check`].
    fn kubeconfig(
        &self,
        req: KubeconfigRequest,
    ) -> impl Future<Output = Result<KubeconfigResponse, KubeApiError>> + Send;

    /// `GET /v1/health` (reader): one check per component
    /// ([`basalt_api::rpc::HEALTH_CHECKS`]); never fails, a failing check says why.
    fn health(&self) -> impl Future<Output = HealthReport> + Send;
}

impl KubernetesApi for Node {
    async fn bootstrap(&self) -> Result<BootstrapResponse, KubeApiError> {
        let cfg = self.current_config().await;
        let name = self.kubernetes().bootstrap(cfg.as_ref())?;
        Ok(BootstrapResponse {
            etcd_member: name.clone(),
            message: format!(
                "etcd initialised on {name}; the control plane is starting (watch it with `basaltctl health`)"
            ),
        })
    }

    async fn kubeconfig(&self, req: KubeconfigRequest) -> Result<KubeconfigResponse, KubeApiError> {
        let cfg = self.current_config().await.ok_or_else(|| {
            KubeApiError::new(409, "this node has no config yet: apply one first")
        })?;
        if cfg.cluster.ca_key.is_none() {
            return Err(KubeApiError::new(
                409,
                "a worker holds no cluster CA key and cannot mint kubeconfigs: ask a control-plane node",
            ));
        }
        let server = req.server.as_deref().unwrap_or(&cfg.cluster.endpoint);
        let kubeconfig = pki::admin_kubeconfig(
            &cfg.cluster,
            &cfg.cluster.name,
            server,
            &req.user,
            SystemTime::now(),
        )
        .map_err(|e| KubeApiError::new(500, e.to_string()))?;
        tracing::info!(user = %req.user, "minted an admin kubeconfig for {server}");
        Ok(KubeconfigResponse { kubeconfig })
    }

    async fn health(&self) -> HealthReport {
        let cfg = self.current_config().await;
        HealthReport {
            checks: self.kubernetes().health(cfg.as_ref()).await,
        }
    }
}
