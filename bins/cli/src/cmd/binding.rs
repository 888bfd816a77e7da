//! `idbind binding create|get|list|describe|delete`.

use std::time::Duration;

use clap::{Args, Subcommand};
use idbind_model::{
    AllowedSubject, IdentityBinding, IdentityBindingSpec, IdentityResourceId, ManagedIdentityRef, condition,
};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::cluster::{Cluster, KubeArgs};
use crate::duration::age;
use crate::exit::{Failure, Outcome};
use crate::output::{OutputArgs, Table, or_none};
use crate::progress::Progress;

/// The CRD's name.
pub const CRD_NAME: &str = "identitybindings.idbind.dev";
/// How kubectl names a binding (`kind.group/name`).
const KIND_PREFIX: &str = "identitybinding.idbind.dev";
/// The command that installs the CRD.
pub const INSTALL_CRD: &str = "kubectl apply -f deploy/crds/identitybindings.idbind.dev.yaml";

/// IdentityBinding subcommands.
#[derive(Debug, Subcommand)]
pub enum BindingCommand {
    /// Bind a user-assigned managed identity to this cluster.
    #[command(after_help = "Examples:\n  \
        idbind binding create payments \\\n    \
        --identity /subscriptions/<sub>/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments \\\n    \
        --allow apps/api --allow batch --wait")]
    Create(CreateArgs),
    /// Show one binding.
    #[command(after_help = "Examples:\n  idbind binding get payments\n  idbind binding get payments -o yaml")]
    Get(GetArgs),
    /// List the bindings of this cluster.
    #[command(
        visible_alias = "ls",
        after_help = "Examples:\n  idbind binding list\n  idbind binding list -o wide"
    )]
    List(ListArgs),
    /// Show a binding's status, conditions, federated credential, issuer and recent events.
    #[command(after_help = "Examples:\n  idbind binding describe payments")]
    Describe(NameArgs),
    /// Delete a binding (the controller withdraws this cluster's keys, then lets it go).
    #[command(after_help = "Examples:\n  idbind binding delete payments --wait")]
    Delete(DeleteArgs),
}

/// Arguments of `binding create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the binding (a DNS subdomain).
    #[arg(value_parser = parse_name)]
    pub name: String,
    /// ARM resource ID of the user-assigned managed identity.
    #[arg(long, value_parser = IdentityResourceId::parse, value_name = "RESOURCE_ID")]
    pub identity: IdentityResourceId,
    /// Allow a namespace (`NS`: all its service accounts) or one service account (`NS/SA`);
    /// repeat for more. Without any, manage the RBAC yourself (`idbind rbac generate`).
    #[arg(long = "allow", value_parser = AllowedSubject::parse, value_name = "NS[/SA]")]
    pub allow: Vec<AllowedSubject>,
    /// Wait until the binding is Ready.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "2m", value_parser = idbind_model::duration::parse_duration_or_seconds, value_name = "DURATION")]
    pub timeout: Duration,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Arguments of `binding get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Name of the binding.
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Arguments of `binding list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// A binding name and the cluster.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// Name of the binding.
    pub name: String,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Arguments of `binding delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Name of the binding.
    pub name: String,
    /// Wait until the binding is gone (after the controller has withdrawn this cluster's keys).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "2m", value_parser = idbind_model::duration::parse_duration_or_seconds, value_name = "DURATION")]
    pub timeout: Duration,
    /// Succeed when the binding does not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
    #[command(flatten)]
    pub kube: KubeArgs,
}

fn parse_name(input: &str) -> Result<String, idbind_model::Error> {
    idbind_model::validate_dns_subdomain("IdentityBinding", input)?;
    Ok(input.to_owned())
}

/// Runs a binding subcommand.
pub async fn run(command: BindingCommand) -> anyhow::Result<Outcome> {
    match command {
        BindingCommand::Create(a) => create(a).await,
        BindingCommand::Get(a) => get(a).await,
        BindingCommand::List(a) => list(a).await,
        BindingCommand::Describe(a) => describe(a).await,
        BindingCommand::Delete(a) => delete(a).await,
    }
}

/// A failure for a missing resource type: the CRD is not installed.
pub fn crd_missing(cluster: &Cluster) -> anyhow::Error {
    Failure::failed(format!(
        "the IdentityBinding CRD ({CRD_NAME}) is not installed in the cluster at {}",
        cluster.server
    ))
    .hint(format!("install it: {INSTALL_CRD}"))
    .into()
}

/// Whether the CRD exists (`None` when it cannot be read, e.g. no permission).
pub async fn crd_installed(cluster: &Cluster) -> anyhow::Result<Option<CustomResourceDefinition>> {
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    crds.get_opt(CRD_NAME)
        .await
        .map_err(|e| cluster.error("reading the IdentityBinding CRD", e))
}

/// Turns a 404 on a binding into "not found" or "CRD missing".
async fn not_found(cluster: &Cluster, name: &str) -> anyhow::Error {
    if matches!(crd_installed(cluster).await, Ok(None)) {
        return crd_missing(cluster);
    }
    Failure::failed(format!(
        "IdentityBinding {name:?} not found in the cluster at {}",
        cluster.server
    ))
    .hint("list the bindings: idbind binding list")
    .into()
}

/// Reads a binding, with failures for a missing binding or CRD.
pub async fn fetch(cluster: &Cluster, name: &str) -> anyhow::Result<IdentityBinding> {
    let api: Api<IdentityBinding> = Api::all(cluster.client.clone());
    match api.get(name).await {
        Ok(b) => Ok(b),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(not_found(cluster, name).await),
        Err(e) => Err(cluster.error(&format!("reading IdentityBinding {name}"), e)),
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<Outcome> {
    let cluster = args.kube.connect().await?;
    let api: Api<IdentityBinding> = Api::all(cluster.client.clone());
    let binding = IdentityBinding::new(
        &args.name,
        IdentityBindingSpec {
            managed_identity: ManagedIdentityRef {
                resource_id: args.identity.to_string(),
            },
            allowed_subjects: args.allow.clone(),
        },
    );
    let created = match api.create(&PostParams::default(), &binding).await {
        Ok(b) => b,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Err(Failure::failed(format!("IdentityBinding {:?} already exists", args.name))
                .hint(format!(
                    "inspect it with `idbind binding describe {0}`, or delete it first: idbind binding delete {0}",
                    args.name
                ))
                .into());
        }
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(crd_missing(&cluster)),
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
            return Err(Failure::usage(format!(
                "the cluster refused IdentityBinding {:?}: {}",
                args.name, s.message
            ))
            .hint("fix the values named above")
            .into());
        }
        Err(e) => return Err(cluster.error(&format!("creating IdentityBinding {}", args.name), e)),
    };
    let result = if args.wait {
        wait_ready(&cluster, &args.name, args.timeout).await?
    } else {
        created
    };
    if !args.output.print_structured(&result)? {
        let state = if args.wait { "ready" } else { "created" };
        match result.client_id() {
            Some(c) if args.wait => println!("{KIND_PREFIX}/{} {state} (client id {c})", args.name),
            _ => println!("{KIND_PREFIX}/{} {state}", args.name),
        }
    }
    Ok(Outcome::Ok)
}

/// The `Ready` condition in one line: `False (Reason): message`.
fn ready_summary(b: &IdentityBinding) -> String {
    match b.condition(condition::READY) {
        Some(c) if c.message.is_empty() => format!("{} ({})", c.status, c.reason),
        Some(c) => format!("{} ({}): {}", c.status, c.reason, c.message),
        None => "not reported yet (is the controller running?)".to_owned(),
    }
}

async fn wait_ready(cluster: &Cluster, name: &str, timeout: Duration) -> anyhow::Result<IdentityBinding> {
    let progress = Progress::stderr();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let b = fetch(cluster, name).await?;
        if b.is_ready() {
            return Ok(b);
        }
        let summary = ready_summary(&b);
        if summary != last {
            progress.say(format!("waiting for {name} to be Ready: {summary}"));
            last = summary;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::timeout(format!(
                "IdentityBinding {name:?} was not Ready after {}: Ready is {last}",
                idbind_model::duration::human(timeout)
            ))
            .hint(format!(
                "see why: idbind binding describe {name}; or diagnose: idbind doctor"
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn get(args: GetArgs) -> anyhow::Result<Outcome> {
    let cluster = args.kube.connect().await?;
    let binding = fetch(&cluster, &args.name).await?;
    if !args.output.print_structured(&binding)? {
        table(std::slice::from_ref(&binding), args.output.wide()).print();
    }
    Ok(Outcome::Ok)
}

async fn list(args: ListArgs) -> anyhow::Result<Outcome> {
    let cluster = args.kube.connect().await?;
    let api: Api<IdentityBinding> = Api::all(cluster.client.clone());
    let mut items = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(crd_missing(&cluster)),
        Err(e) => return Err(cluster.error("listing IdentityBindings", e)),
    };
    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if args.output.structured() {
        args.output
            .print_structured(&json!({"apiVersion": "v1", "kind": "List", "items": items}))?;
    } else if items.is_empty() {
        eprintln!("No IdentityBindings found.");
    } else {
        table(&items, args.output.wide()).print();
    }
    Ok(Outcome::Ok)
}

fn created_age(b: &IdentityBinding) -> String {
    b.metadata
        .creation_timestamp
        .as_ref()
        .map_or_else(|| "<unknown>".to_owned(), |t| age(t.0))
}

fn table(items: &[IdentityBinding], wide: bool) -> Table {
    let mut header = vec!["NAME", "IDENTITY", "CLIENT ID", "READY", "AGE"];
    if wide {
        header.extend(["ALLOWED", "ISSUER", "REASON"]);
    }
    let mut t = Table::new(header);
    for b in items {
        let status = b.status.clone().unwrap_or_default();
        let identity = status
            .identity_name
            .clone()
            .or_else(|| b.identity_id().ok().map(|i| i.name().to_owned()));
        let ready = b.condition(condition::READY);
        let mut row = vec![
            or_none(b.metadata.name.as_deref()),
            or_none(identity.as_deref()),
            or_none(status.client_id.as_deref()),
            if b.is_ready() {
                "True".to_owned()
            } else {
                or_none(ready.map(|c| c.status.as_str()))
            },
            created_age(b),
        ];
        if wide {
            let allowed: Vec<String> = b.spec.allowed_subjects.iter().map(ToString::to_string).collect();
            row.push(if allowed.is_empty() {
                "<none>".to_owned()
            } else {
                allowed.join(",")
            });
            row.push(or_none(status.oidc_issuer_url.as_deref()));
            row.push(or_none(ready.map(|c| c.reason.as_str())));
        }
        t.row(row);
    }
    t
}

async fn describe(args: NameArgs) -> anyhow::Result<Outcome> {
    let cluster = args.kube.connect().await?;
    let b = fetch(&cluster, &args.name).await?;
    let status = b.status.clone().unwrap_or_default();
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    line("Name:", or_none(b.metadata.name.as_deref()));
    line("Created:", format!("{} ago", created_age(&b)));
    line("Identity:", b.spec.managed_identity.resource_id.clone());
    line("  Name:", or_none(status.identity_name.as_deref()));
    line("  Client ID:", or_none(status.client_id.as_deref()));
    line("  Tenant ID:", or_none(status.tenant_id.as_deref()));
    line("  Principal ID:", or_none(status.object_id.as_deref()));
    let allowed: Vec<String> = b.spec.allowed_subjects.iter().map(ToString::to_string).collect();
    line(
        "Allowed subjects:",
        if allowed.is_empty() {
            "<none> (RBAC managed outside idbind)".to_owned()
        } else {
            allowed.join(", ")
        },
    );
    line("Issuer URL:", or_none(status.oidc_issuer_url.as_deref()));
    match &status.federated_credential {
        Some(f) => {
            line("Federated credential:", f.name.clone());
            line("  Issuer:", f.issuer.clone());
            line("  Subject:", f.subject.clone());
        }
        None => line("Federated credential:", "<none>".to_owned()),
    }
    line("Ready:", ready_summary(&b));
    line(
        "Generation:",
        format!(
            "{} (observed {})",
            b.metadata
                .generation
                .map_or_else(|| "?".to_owned(), |g| g.to_string()),
            status
                .observed_generation
                .map_or_else(|| "never".to_owned(), |g| g.to_string())
        ),
    );
    print!("{out}");

    println!("Conditions:");
    if status.conditions.is_empty() {
        println!("  <none> (the controller has not reconciled this binding yet)");
    } else {
        let mut t = Table::new(["  TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]);
        for type_ in condition::ALL {
            if let Some(c) = b.condition(type_) {
                t.row([
                    format!("  {}", c.type_),
                    c.status.clone(),
                    c.reason.clone(),
                    age(c.last_transition_time.0),
                    c.message.clone(),
                ]);
            }
        }
        for c in status
            .conditions
            .iter()
            .filter(|c| !condition::ALL.contains(&c.type_.as_str()))
        {
            t.row([
                format!("  {}", c.type_),
                c.status.clone(),
                c.reason.clone(),
                age(c.last_transition_time.0),
                c.message.clone(),
            ]);
        }
        t.print();
    }

    println!("Events:");
    let events = events_for(&cluster, &b).await;
    match events {
        Ok(events) if events.is_empty() => println!("  <none>"),
        Ok(events) => {
            let mut t = Table::new(["  TYPE", "REASON", "AGE", "FROM", "MESSAGE"]);
            for e in events.iter().rev().take(10).rev() {
                let when = e
                    .last_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or_else(|| e.event_time.as_ref().map(|t| t.0))
                    .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
                let from = e
                    .reporting_component
                    .clone()
                    .filter(|s| !s.is_empty())
                    .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
                    .unwrap_or_default();
                t.row([
                    format!("  {}", e.type_.clone().unwrap_or_default()),
                    e.reason.clone().unwrap_or_default(),
                    when.map_or_else(|| "?".to_owned(), age),
                    from,
                    e.message.clone().unwrap_or_default().replace('\n', " "),
                ]);
            }
            t.print();
        }
        Err(e) => println!("  <cannot list events: {e:#}>"),
    }
    Ok(Outcome::Ok)
}

/// The Events about a binding, oldest first.
async fn events_for(cluster: &Cluster, b: &IdentityBinding) -> anyhow::Result<Vec<Event>> {
    let api: Api<Event> = Api::all(cluster.client.clone());
    let name = b.metadata.name.clone().unwrap_or_default();
    let params = ListParams::default().fields(&format!(
        "involvedObject.kind=IdentityBinding,involvedObject.name={name}"
    ));
    let list = api
        .list(&params)
        .await
        .map_err(|e| cluster.error("listing events", e))?;
    let uid = b.metadata.uid.clone();
    let mut events: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| uid.is_none() || e.involved_object.uid.is_none() || e.involved_object.uid == uid)
        .collect();
    let key = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    events.sort_by_key(key);
    Ok(events)
}

async fn delete(args: DeleteArgs) -> anyhow::Result<Outcome> {
    let cluster = args.kube.connect().await?;
    let api: Api<IdentityBinding> = Api::all(cluster.client.clone());
    match api.delete(&args.name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            if args.ignore_not_found {
                return Ok(Outcome::Ok);
            }
            return Err(not_found(&cluster, &args.name).await);
        }
        Err(e) => return Err(cluster.error(&format!("deleting IdentityBinding {}", args.name), e)),
    }
    if args.wait {
        let progress = Progress::stderr();
        let deadline = tokio::time::Instant::now() + args.timeout;
        loop {
            match api
                .get_opt(&args.name)
                .await
                .map_err(|e| cluster.error("reading the binding", e))?
            {
                None => break,
                Some(b) => {
                    let finalizers = b.metadata.finalizers.clone().unwrap_or_default();
                    progress.say(format!(
                        "waiting for {} to go (finalizers: {})",
                        args.name,
                        finalizers.join(", ")
                    ));
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Failure::timeout(format!(
                            "IdentityBinding {:?} still exists after {} (finalizers: {})",
                            args.name,
                            idbind_model::duration::human(args.timeout),
                            finalizers.join(", ")
                        ))
                        .hint(
                            "the controller removes its finalizer once this cluster's keys are withdrawn from the \
                             identity's issuer: check that it runs (idbind doctor) and its logs",
                        )
                        .into());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!("{KIND_PREFIX}/{} deleted", args.name);
    Ok(Outcome::Ok)
}
