//! `idbind fic list|gc`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use idbind_arm::{ArmClient, FederatedCredential, Identity};
use idbind_fic::{FicManager, GcOutcome};
use idbind_model::{ENTRA_FIC_AUDIENCE, FicSpec, IdentityResourceId, MAX_FICS_PER_IDENTITY};
use serde_json::json;

use crate::azure::{AzureArgs, arm_error, get_identity};
use crate::documents::{FetchError, Fetcher, IssuerArgs, IssuerDocuments};
use crate::exit::{Failure, Outcome};
use crate::output::{OutputArgs, Table};

/// FIC subcommands.
#[derive(Debug, Subcommand)]
pub enum FicCommand {
    /// List every federated identity credential of an identity, marking idbind's, and how many of
    /// the 20 Entra allows are used.
    #[command(
        after_help = "Examples:\n  idbind fic list --identity /subscriptions/<sub>/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments"
    )]
    List(ListArgs),
    /// Delete idbind's federated identity credential, only when its issuer's JWKS holds no key
    /// (no cluster is bound any more); otherwise say which clusters still are.
    #[command(
        after_help = "Examples:\n  idbind fic gc --identity /subscriptions/<sub>/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments --dry-run"
    )]
    Gc(GcArgs),
}

/// Arguments of `fic list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// ARM resource ID of the user-assigned managed identity.
    #[arg(long, value_parser = IdentityResourceId::parse, value_name = "RESOURCE_ID")]
    pub identity: IdentityResourceId,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub issuer: IssuerArgs,
    #[command(flatten)]
    pub azure: AzureArgs,
}

/// Arguments of `fic gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// ARM resource ID of the user-assigned managed identity.
    #[arg(long, value_parser = IdentityResourceId::parse, value_name = "RESOURCE_ID")]
    pub identity: IdentityResourceId,
    /// Only say what would be done.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub issuer: IssuerArgs,
    #[command(flatten)]
    pub azure: AzureArgs,
}

/// Runs a fic subcommand.
pub async fn run(command: FicCommand) -> anyhow::Result<Outcome> {
    match command {
        FicCommand::List(a) => list(a).await,
        FicCommand::Gc(a) => gc(a).await,
    }
}

/// Whether a FIC is idbind's: subject = the identity's resource ID in lower case, and issuer = the
/// per-identity issuer (under `--issuer-base-url` when given, else any base) or the configured name.
pub fn is_idbinds(fic: &FederatedCredential, identity: &Identity, issuer: &IssuerArgs) -> bool {
    if fic.properties.subject != identity.id.to_lowercase() {
        return false;
    }
    match &issuer.issuer_base_url {
        Some(base) => fic.properties.issuer == base.issuer_for(&identity.tenant_id, &identity.client_id),
        None => {
            fic.name == issuer.fic_name
                || fic
                    .properties
                    .issuer
                    .ends_with(&format!("/{}/{}", identity.tenant_id, identity.client_id))
        }
    }
}

/// The identity's idbind FIC, preferring the configured name when several match.
pub fn find_idbinds<'a>(
    fics: &'a [FederatedCredential],
    identity: &Identity,
    issuer: &IssuerArgs,
) -> Option<&'a FederatedCredential> {
    let mut matching = fics
        .iter()
        .filter(|f| is_idbinds(f, identity, issuer))
        .collect::<Vec<_>>();
    matching.sort_by_key(|f| f.name != issuer.fic_name);
    matching.first().copied()
}

/// Lists the identity's FICs with a readable error.
pub async fn list_fics(arm: &ArmClient, identity: &Identity) -> anyhow::Result<Vec<FederatedCredential>> {
    arm.list_fics(&identity.id).await.map_err(|e| {
        arm_error(
            &format!("listing federated identity credentials of {}", identity.name),
            &e,
        )
    })
}

async fn list(args: ListArgs) -> anyhow::Result<Outcome> {
    let arm = args.azure.arm()?;
    let identity = get_identity(&arm, &args.identity).await?;
    let mut fics = list_fics(&arm, &identity).await?;
    fics.sort_by(|a, b| a.name.cmp(&b.name));
    let ours = find_idbinds(&fics, &identity, &args.issuer).map(|f| f.name.clone());
    if args.output.structured() {
        let items: Vec<_> = fics
            .iter()
            .map(|f| {
                json!({
                    "name": f.name, "issuer": f.properties.issuer, "subject": f.properties.subject,
                    "audiences": f.properties.audiences, "idbind": Some(&f.name) == ours.as_ref(),
                })
            })
            .collect();
        args.output.print_structured(&json!({
            "identity": identity.id.to_string(), "clientId": identity.client_id.to_string(),
            "used": fics.len(), "limit": MAX_FICS_PER_IDENTITY, "federatedCredentials": items,
        }))?;
        return Ok(Outcome::Ok);
    }
    if fics.is_empty() {
        println!(
            "Identity {} has no federated identity credentials.",
            identity.name
        );
    } else {
        let mut t = Table::new(["NAME", "IDBIND", "ISSUER", "SUBJECT", "AUDIENCES"]);
        for f in &fics {
            t.row([
                f.name.clone(),
                if Some(&f.name) == ours.as_ref() {
                    "yes".to_owned()
                } else {
                    "-".to_owned()
                },
                f.properties.issuer.clone(),
                f.properties.subject.clone(),
                f.properties.audiences.join(","),
            ]);
        }
        t.print();
    }
    println!(
        "{}/{MAX_FICS_PER_IDENTITY} federated identity credentials used on identity {}",
        fics.len(),
        identity.name
    );
    if ours.is_none() {
        println!(
            "None of them is idbind's (subject {} and an idbind issuer).",
            identity.id.to_lowercase()
        );
    }
    if fics.len() >= MAX_FICS_PER_IDENTITY && ours.is_none() {
        println!("The identity is at Entra's limit: idbind cannot add its credential until one is deleted.");
    }
    Ok(Outcome::Ok)
}

/// Whether a JWKS still holds keys, decided from its documents as Entra would read them.
enum Usage {
    /// Keys of these clusters (name → count; keys with foreign ids under "?").
    Used(BTreeMap<String, usize>, String),
    /// No key, or no documents at all (nothing Entra could verify an assertion with).
    Unused(String),
    /// Cannot tell.
    Unknown(String),
}

async fn usage(fetcher: &Fetcher, issuer: &str) -> Usage {
    let docs = IssuerDocuments::fetch(fetcher, issuer).await;
    let jwks_uri = docs
        .jwks_uri
        .clone()
        .unwrap_or_else(|| idbind_model::jwks_url(issuer));
    match (&docs.discovery, &docs.jwks) {
        (Err(FetchError::Status(404)), _) => Usage::Unused(format!(
            "no discovery document is published at {}",
            docs.discovery_url
        )),
        (Ok(_), Some(Err(FetchError::Status(404)))) => {
            Usage::Unused(format!("no JWKS is published at {jwks_uri}"))
        }
        _ => match docs.keys() {
            Some(keys) if keys.is_empty() => Usage::Unused(format!("the JWKS at {jwks_uri} holds no key")),
            Some(keys) => {
                let mut clusters = BTreeMap::new();
                for k in keys {
                    let kid = k
                        .get("kid")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default();
                    *clusters
                        .entry(idbind_issuer::kid_cluster(kid).unwrap_or("?").to_owned())
                        .or_insert(0) += 1;
                }
                Usage::Used(clusters, jwks_uri)
            }
            None => Usage::Unknown(
                docs.jwks_problem()
                    .unwrap_or_else(|| "the JWKS could not be read".to_owned()),
            ),
        },
    }
}

fn describe_clusters(clusters: &BTreeMap<String, usize>) -> String {
    clusters
        .iter()
        .map(|(c, n)| format!("{c} ({n} key{})", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn gc(args: GcArgs) -> anyhow::Result<Outcome> {
    let arm = args.azure.arm()?;
    let identity = get_identity(&arm, &args.identity).await?;
    let fics = list_fics(&arm, &identity).await?;
    let Some(fic) = find_idbinds(&fics, &identity, &args.issuer).cloned() else {
        println!(
            "Identity {} has no idbind federated identity credential (subject {}); nothing to delete.",
            identity.name,
            identity.id.to_lowercase()
        );
        return Ok(Outcome::Ok);
    };
    let fetcher = Fetcher::new(args.issuer.issuer_ca_file.as_ref())?;
    let issuer = fic.properties.issuer.clone();
    match usage(&fetcher, &issuer).await {
        Usage::Used(clusters, uri) => {
            println!(
                "Kept federated identity credential {} of identity {}: the JWKS at {uri} still holds keys of {}. \
                 Those clusters can still get tokens for the identity; unbind it in each of them first \
                 (idbind binding delete NAME), then run this again.",
                fic.name,
                identity.name,
                describe_clusters(&clusters)
            );
            return Ok(Outcome::Ok);
        }
        Usage::Unknown(why) => {
            return Err(Failure::unreachable(format!(
                "cannot tell whether federated identity credential {} is still used: {why}; refusing to delete it",
                fic.name
            ))
            .hint("make the issuer reachable (or pass --issuer-ca-file for a private CA) and run this again")
            .into());
        }
        Usage::Unused(why) => {
            if args.dry_run {
                println!(
                    "Would delete federated identity credential {} of identity {}: {why} (dry run, nothing deleted).",
                    fic.name, identity.name
                );
                return Ok(Outcome::Ok);
            }
        }
    }
    let spec = FicSpec {
        name: fic.name.clone(),
        issuer: issuer.clone(),
        subject: fic.properties.subject.clone(),
        audience: ENTRA_FIC_AUDIENCE.to_owned(),
    };
    let manager = FicManager::new(arm);
    let check_fetcher = fetcher.clone();
    let check_issuer = issuer.clone();
    let outcome = manager
        .delete_if_unused(&identity.id, &spec, move || async move {
            match usage(&check_fetcher, &check_issuer).await {
                Usage::Unused(_) => Ok(true),
                Usage::Used(..) => Ok(false),
                Usage::Unknown(why) => Err(why.into()),
            }
        })
        .await
        .map_err(|e| {
            Failure::failed(format!(
                "deleting federated identity credential {}: {e}",
                fic.name
            ))
        })?;
    match outcome {
        GcOutcome::Deleted { name } => {
            println!(
                "Deleted federated identity credential {name} of identity {}: no cluster key was left in its JWKS.",
                identity.name
            );
        }
        GcOutcome::InUse { name } => {
            println!(
                "Kept federated identity credential {name} of identity {}: a cluster published a key meanwhile.",
                identity.name
            );
        }
        GcOutcome::Absent => println!("Federated identity credential {} is already gone.", fic.name),
        _ => println!("Done."),
    }
    Ok(Outcome::Ok)
}
