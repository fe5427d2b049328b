//! What a new cluster needs in its API before workers can join: the
//! bootstrap token Secret and the RBAC of kubelet TLS bootstrap. machined
//! applies these with its own admin credentials through the Kubernetes API
//! (server-side apply, so every boot may apply them again), never through
//! kubectl on the node.

use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::collections::BTreeMap;
use std::path::Path;

/// The group bootstrap tokens authenticate into (must start with
/// `system:bootstrappers:`).
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:basalt:nodes";
/// The field manager machined's server-side applies are recorded under.
const FIELD_MANAGER: &str = "machined";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("bootstrap token is not `<id>.<secret>`")]
    Token,
}

/// A client from one of machined's kubeconfigs.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client, ClientError> {
    let err = |message: String| ClientError::Kubeconfig {
        path: kubeconfig.display().to_string(),
        message,
    };
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(kube::Client::try_from(config)?)
}

fn subject(kind: &str, name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
        ..Default::default()
    }
}

fn binding(name: &str, role: &str, subject: Subject) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![subject]),
    }
}

/// The RBAC of kubelet TLS bootstrap and of the apiserver's calls to
/// kubelets (logs, exec, port-forward), as kubeadm creates it.
pub fn rbac() -> Vec<ClusterRoleBinding> {
    let group = |g: &str| subject("Group", g);
    vec![
        // Bootstrap tokens may create CSRs...
        binding(
            "basalt:node-bootstrapper",
            "system:node-bootstrapper",
            group(BOOTSTRAP_GROUP),
        ),
        // ...whose node client certificates are approved automatically...
        binding(
            "basalt:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            group(BOOTSTRAP_GROUP),
        ),
        // ...as are nodes' renewals of their own.
        binding(
            "basalt:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            group("system:nodes"),
        ),
        binding(
            "basalt:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            subject("User", "kube-apiserver-kubelet-client"),
        ),
    ]
}

/// The bootstrap token as the Secret the apiserver authenticates it by.
pub fn token_secret(token: &str) -> Result<Secret, ClientError> {
    let (id, secret) = token.split_once('.').ok_or(ClientError::Token)?;
    let data: BTreeMap<String, String> = [
        ("token-id", id),
        ("token-secret", secret),
        ("usage-bootstrap-authentication", "true"),
        ("auth-extra-groups", BOOTSTRAP_GROUP),
        ("description", "Basalt node join token (cluster.token)"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{id}")),
            namespace: Some("kube-system".into()),
            ..Default::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".into()),
        string_data: Some(data),
        ..Default::default()
    })
}

/// The agent's namespaced Role and its binding to `system:nodes`.
pub fn cilium_namespaced_rbac() -> (Role, RoleBinding) {
    let role = super::cilium::agent_config_role();
    let binding = RoleBinding {
        metadata: role.metadata.clone(),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: role.metadata.name.clone().unwrap_or_default(),
        },
        subjects: Some(vec![subject("Group", "system:nodes")]),
    };
    (role, binding)
}

/// Cilium's RBAC: its agent acts as the node (group `system:nodes`), its
/// operator as [`super::cilium::OPERATOR_USER`].
pub fn cilium_rbac() -> (Vec<ClusterRole>, Vec<ClusterRoleBinding>) {
    let agent = super::cilium::agent_role();
    let operator = super::cilium::operator_role();
    let name = |r: &ClusterRole| r.metadata.name.clone().unwrap_or_default();
    let bindings = vec![
        binding(
            &name(&agent),
            &name(&agent),
            subject("Group", "system:nodes"),
        ),
        binding(
            &name(&operator),
            &name(&operator),
            subject("User", super::cilium::OPERATOR_USER),
        ),
    ];
    (vec![agent, operator], bindings)
}

/// Apply the bootstrap objects (and Cilium's RBAC with `cilium`); safe to
/// repeat.
pub async fn apply(client: &kube::Client, token: &str, cilium: bool) -> Result<(), ClientError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // What lets workers join first: a failure in Cilium's objects below
    // must not keep nodes out.
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for b in rbac() {
        let name = b.metadata.name.clone().unwrap_or_default();
        bindings.patch(&name, &params, &Patch::Apply(&b)).await?;
    }
    let secret = token_secret(token)?;
    let name = secret.metadata.name.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    secrets
        .patch(&name, &params, &Patch::Apply(&secret))
        .await?;
    if !cilium {
        return Ok(());
    }
    let (roles, cilium_bindings) = cilium_rbac();
    let api: Api<ClusterRole> = Api::all(client.clone());
    for r in roles {
        let name = r.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&r)).await?;
    }
    for b in cilium_bindings {
        let name = b.metadata.name.clone().unwrap_or_default();
        bindings.patch(&name, &params, &Patch::Apply(&b)).await?;
    }
    let (role, binding) = cilium_namespaced_rbac();
    let ns = super::cilium::NAMESPACE;
    let name = role.metadata.name.clone().unwrap_or_default();
    Api::<Role>::namespaced(client.clone(), ns)
        .patch(&name, &params, &Patch::Apply(&role))
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .patch(&name, &params, &Patch::Apply(&binding))
        .await?;
    Ok(())
}

/// The pod CIDR the controller-manager allocated to node `name`, once it did.
pub async fn pod_cidr(client: &kube::Client, name: &str) -> Result<Option<String>, ClientError> {
    let nodes: Api<Node> = Api::all(client.clone());
    Ok(nodes
        .get_opt(name)
        .await?
        .and_then(|n| n.spec)
        .and_then(|s| s.pod_cidr))
}

/// The node's `Ready` condition as the API server has it: `Ok(true)` when
/// Ready, `Ok(false)` with the reason otherwise.
pub async fn node_ready(client: &kube::Client, name: &str) -> Result<(bool, String), ClientError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let Some(node) = nodes.get_opt(name).await? else {
        return Ok((false, format!("node {name} is not registered")));
    };
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready");
    Ok(match ready {
        Some(c) if c.status == "True" => (true, "Ready".into()),
        Some(c) => (
            false,
            format!(
                "Ready={} ({})",
                c.status,
                c.message.or(c.reason).unwrap_or_default()
            ),
        ),
        None => (false, "no Ready condition yet".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_secret_has_the_shape_the_apiserver_authenticates() {
        let s = token_secret("abcdef.0123456789abcdef").unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("bootstrap-token-abcdef"));
        assert_eq!(s.type_.as_deref(), Some("bootstrap.kubernetes.io/token"));
        let data = s.string_data.unwrap();
        assert_eq!(data["token-secret"], "0123456789abcdef");
        assert!(data["auth-extra-groups"].starts_with("system:bootstrappers:"));
        assert!(token_secret("nodot").is_err());
    }
}
