//! What the node API asks of the Kubernetes controller: `POST /v1/bootstrap`,
//! `POST /v1/kubeconfig` and `GET /v1/health` (see [`basalt_api::route`]).
//! [`crate::server`] dispatches those routes to this trait on [`Node`]; the
//! wire types live in [`basalt_api::rpc`].
//!
//! PLACEHOLDER: the bodies below only say that Kubernetes is not configured
//! yet. The Kubernetes controller replaces them (keep the signatures: the
//! server, basaltctl and the API tests rely on them).

use crate::node::Node;
use basalt_api::rpc::{
    BootstrapResponse, HEALTH_CHECKS, HealthCheck, HealthReport, KubeconfigRequest,
    KubeconfigResponse,
};
use std::future::Future;

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
    /// ([`HEALTH_CHECKS`]); never fails, a failing check says why.
    fn health(&self) -> impl Future<Output = HealthReport> + Send;
}

/// PLACEHOLDER, replaced by the Kubernetes controller.
const NOT_CONFIGURED: &str = "Kubernetes is not configured on this node yet";

impl KubernetesApi for Node {
    // PLACEHOLDER body.
    async fn bootstrap(&self) -> Result<BootstrapResponse, KubeApiError> {
        Err(KubeApiError::new(503, NOT_CONFIGURED))
    }

    // PLACEHOLDER body.
    async fn kubeconfig(
        &self,
        _req: KubeconfigRequest,
    ) -> Result<KubeconfigResponse, KubeApiError> {
        Err(KubeApiError::new(503, NOT_CONFIGURED))
    }

    // PLACEHOLDER body.
    async fn health(&self) -> HealthReport {
        HealthReport {
            checks: HEALTH_CHECKS
                .iter()
                .map(|name| HealthCheck::new(*name, false, NOT_CONFIGURED))
                .collect(),
        }
    }
}
