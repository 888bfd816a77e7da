//! `idbind rbac generate|who-can`.

use clap::{Args, Subcommand};
use idbind_model::{AllowedSubject, ClientId, IdentityBinding, RBAC_API_GROUP, RBAC_VERB};
use idbind_rbac::{RbacSnapshot, Subject};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::cluster::{Cluster, KubeArgs};
use crate::exit::Outcome;
use crate::output::{OutputArgs, Table, to_yaml};

/// RBAC subcommands.
#[derive(Debug, Subcommand)]
pub enum RbacCommand {
    /// Print the ClusterRole and ClusterRoleBinding that let service accounts use an identity
    /// (multi-document YAML for `kubectl apply -f -`).
    #[command(after_help = "Examples:\n  \
        idbind rbac generate --client-id 22222222-2222-2222-2222-222222222222 --allow apps/api --allow batch \\\n    \
        | kubectl apply -f -")]
    Generate(GenerateArgs),
    /// List who may use an identity in the cluster: service accounts, whole namespaces, groups and
    /// users, evaluated over the live RBAC objects as the Kubernetes RBAC authorizer does.
    #[command(
        after_help = "Examples:\n  idbind rbac who-can 22222222-2222-2222-2222-222222222222\n  \
        idbind rbac who-can 22222222-2222-2222-2222-222222222222 -o json"
    )]
    WhoCan(WhoCanArgs),
}

/// Arguments of `rbac generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Client id of the managed identity.
    #[arg(long, value_parser = ClientId::parse, value_name = "GUID")]
    pub client_id: ClientId,
    /// Allow a namespace (`NS`) or one service account (`NS/SA`); repeat for more.
    #[arg(long = "allow", value_parser = AllowedSubject::parse, value_name = "NS[/SA]", required = true)]
    pub allow: Vec<AllowedSubject>,
}

/// Arguments of `rbac who-can`.
#[derive(Debug, Args)]
pub struct WhoCanArgs {
    /// Client id of the managed identity.
    #[arg(value_parser = ClientId::parse, value_name = "CLIENT_ID")]
    pub client_id: ClientId,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Runs an rbac subcommand.
pub async fn run(command: RbacCommand) -> anyhow::Result<Outcome> {
    match command {
        RbacCommand::Generate(a) => generate(&a),
        RbacCommand::WhoCan(a) => who_can(a).await,
    }
}

fn generate(args: &GenerateArgs) -> anyhow::Result<Outcome> {
    let rbac = idbind_rbac::generate(&args.client_id, &args.allow);
    let mut role = serde_json::to_value(&rbac.cluster_role)?;
    role["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
    role["kind"] = json!("ClusterRole");
    let mut binding = serde_json::to_value(&rbac.cluster_role_binding)?;
    binding["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
    binding["kind"] = json!("ClusterRoleBinding");
    print!("---\n{}---\n{}", to_yaml(&role)?, to_yaml(&binding)?);
    Ok(Outcome::Ok)
}

/// Lists every RBAC object of the cluster.
pub async fn snapshot(cluster: &Cluster) -> anyhow::Result<RbacSnapshot> {
    let lp = ListParams::default();
    let c = &cluster.client;
    let (cluster_roles, cluster_role_bindings, roles, role_bindings) = tokio::try_join!(
        async {
            Api::<ClusterRole>::all(c.clone())
                .list(&lp)
                .await
                .map_err(|e| cluster.error("listing ClusterRoles", e))
        },
        async {
            Api::<ClusterRoleBinding>::all(c.clone())
                .list(&lp)
                .await
                .map_err(|e| cluster.error("listing ClusterRoleBindings", e))
        },
        async {
            Api::<Role>::all(c.clone())
                .list(&lp)
                .await
                .map_err(|e| cluster.error("listing Roles", e))
        },
        async {
            Api::<RoleBinding>::all(c.clone())
                .list(&lp)
                .await
                .map_err(|e| cluster.error("listing RoleBindings", e))
        },
    )?;
    Ok(RbacSnapshot {
        cluster_roles: cluster_roles.items,
        cluster_role_bindings: cluster_role_bindings.items,
        roles: roles.items,
        role_bindings: role_bindings.items,
    })
}

/// Who may use `client_id`: the proxy asks a cluster-scoped SubjectAccessReview, so only
/// ClusterRoleBindings count.
pub fn subjects_for(snapshot: &RbacSnapshot, client_id: &ClientId) -> (Vec<Subject>, Vec<String>) {
    let authorizer = snapshot.authorizer();
    let subjects = authorizer.who_can(RBAC_VERB, RBAC_API_GROUP, &client_id.to_string(), None);
    let problems = authorizer.problems().iter().map(ToString::to_string).collect();
    (subjects, problems)
}

/// What a subject means for service accounts.
fn scope_of(subject: &Subject) -> String {
    match subject {
        Subject::ServiceAccount { namespace, name } => {
            format!("service account {name} in namespace {namespace}")
        }
        Subject::Group(g) if g == "system:serviceaccounts" => {
            "every service account of every namespace".to_owned()
        }
        Subject::Group(g) if g == "system:authenticated" => {
            "every authenticated user and service account".to_owned()
        }
        Subject::Group(g) => match g.strip_prefix("system:serviceaccounts:") {
            Some(ns) => format!("every service account in namespace {ns}"),
            None => format!("members of group {g}"),
        },
        Subject::User(u) => match u
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
        {
            Some((ns, sa)) => format!("service account {sa} in namespace {ns} (as a User subject)"),
            None => format!("user {u}"),
        },
    }
}

async fn who_can(args: WhoCanArgs) -> anyhow::Result<Outcome> {
    let cluster = args.kube.connect().await?;
    let snapshot = snapshot(&cluster).await?;
    let (subjects, problems) = subjects_for(&snapshot, &args.client_id);

    // Is the identity bound here at all? Without a Ready binding the proxy refuses everyone.
    let bindings: Api<IdentityBinding> = Api::all(cluster.client.clone());
    let binding = match bindings.list(&ListParams::default()).await {
        Ok(l) => l
            .items
            .into_iter()
            .find(|b| b.client_id().as_ref() == Some(&args.client_id)),
        Err(_) => None,
    };

    if args.output.structured() {
        let list: Vec<_> = subjects
            .iter()
            .map(|s| {
                let (namespace, name) = match s {
                    Subject::ServiceAccount { namespace, name } => (Some(namespace.clone()), name.clone()),
                    Subject::Group(g) | Subject::User(g) => (None, g.clone()),
                };
                json!({"kind": s.kind(), "namespace": namespace, "name": name, "meaning": scope_of(s)})
            })
            .collect();
        let value = json!({
            "clientId": args.client_id.to_string(),
            "binding": binding.as_ref().and_then(|b| b.metadata.name.clone()),
            "bindingReady": binding.as_ref().is_some_and(IdentityBinding::is_ready),
            "subjects": list,
            "problems": problems,
        });
        args.output.print_structured(&value)?;
        return Ok(Outcome::Ok);
    }

    if subjects.is_empty() {
        println!(
            "Nobody may use identity {} in this cluster: no ClusterRoleBinding grants {RBAC_VERB} on {RBAC_API_GROUP}/{}.",
            args.client_id, args.client_id
        );
        println!(
            "Grant it with: idbind rbac generate --client-id {} --allow NS[/SA] | kubectl apply -f -",
            args.client_id
        );
    } else {
        let mut t = Table::new(["KIND", "NAMESPACE", "NAME", "MEANING"]);
        for s in &subjects {
            let (namespace, name) = match s {
                Subject::ServiceAccount { namespace, name } => (namespace.clone(), name.clone()),
                Subject::Group(g) | Subject::User(g) => (String::new(), g.clone()),
            };
            t.row([
                s.kind().to_owned(),
                if namespace.is_empty() {
                    "-".to_owned()
                } else {
                    namespace
                },
                name,
                scope_of(s),
            ]);
        }
        t.print();
    }
    match &binding {
        Some(b) if b.is_ready() => {}
        Some(b) => eprintln!(
            "warning: IdentityBinding {} for this client id is not Ready: the proxy refuses every request until it is \
             (idbind binding describe {0})",
            b.metadata.name.clone().unwrap_or_default()
        ),
        None => eprintln!(
            "warning: no IdentityBinding in this cluster has client id {}: the proxy refuses every request for it \
             (bind it: idbind binding create NAME --identity RESOURCE_ID)",
            args.client_id
        ),
    }
    for p in problems {
        eprintln!("warning: {p}");
    }
    Ok(Outcome::Ok)
}
