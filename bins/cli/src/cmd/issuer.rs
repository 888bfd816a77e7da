//! `idbind issuer show|verify`.
//!
//! Key ages: idbind's publisher stamps every key with the time it first appeared in the JWKS
//! (the `idbind_published_at` member, which Entra ignores as RFC 7517 requires); `issuer show`
//! prints the age from it. Keys published by other tools carry no stamp and show as unknown.

use std::collections::BTreeSet;

use clap::{Args, Subcommand};
use idbind_arm::{FederatedCredential, Identity};
use idbind_model::{ENTRA_FIC_AUDIENCE, IdentityResourceId, MAX_JWKS_KEYS};
use serde_json::{Value, json};

use crate::azure::{AzureArgs, get_identity};
use crate::cmd::fic::{find_idbinds, list_fics};
use crate::documents::{FetchError, Fetcher, IssuerArgs, IssuerDocuments, check_fetchable};
use crate::exit::{Failure, Outcome};
use crate::output::{OutputArgs, Table};
use crate::report::Report;

/// Issuer subcommands.
#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Show an identity's issuer: URL, discovery document, and the clusters whose keys its JWKS
    /// publishes.
    #[command(
        after_help = "Examples:\n  idbind issuer show --identity /subscriptions/<sub>/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments\n\n\
        Key ages come from the time idbind first published each key (JWK member idbind_published_at);\n\
        keys published by other tools show as unknown."
    )]
    Show(IdentityArgs),
    /// Fetch the issuer documents the way Entra does and report every mismatch with idbind's
    /// federated identity credential (exit status 3 when there is one).
    #[command(
        after_help = "Examples:\n  idbind issuer verify --identity /subscriptions/<sub>/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments"
    )]
    Verify(IdentityArgs),
}

/// Arguments of `issuer show` and `issuer verify`.
#[derive(Debug, Args)]
pub struct IdentityArgs {
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

/// Runs an issuer subcommand.
pub async fn run(command: IssuerCommand) -> anyhow::Result<Outcome> {
    match command {
        IssuerCommand::Show(a) => show(a).await,
        IssuerCommand::Verify(a) => verify(a).await,
    }
}

/// The identity, its FICs, idbind's FIC and the issuer URL to look at.
struct Target {
    identity: Identity,
    fic: Option<FederatedCredential>,
    issuer: String,
}

async fn target(args: &IdentityArgs) -> anyhow::Result<Target> {
    let arm = args.azure.arm()?;
    let identity = get_identity(&arm, &args.identity).await?;
    let fics = list_fics(&arm, &identity).await?;
    // idbind's by issuer and subject, else by name (a credential whose issuer or subject went wrong).
    let fic = find_idbinds(&fics, &identity, &args.issuer)
        .or_else(|| fics.iter().find(|f| f.name == args.issuer.fic_name))
        .cloned();
    let issuer = match (&args.issuer.issuer_base_url, &fic) {
        (Some(base), _) => base.issuer_for(&identity.tenant_id, &identity.client_id),
        (None, Some(f)) => f.properties.issuer.clone(),
        (None, None) => {
            return Err(Failure::failed(format!(
                "identity {} is not bound by idbind: it has no federated identity credential with subject {} \
                 and an idbind issuer",
                identity.name,
                identity.id.to_lowercase()
            ))
            .hint(
                "bind it in a cluster (idbind binding create NAME --identity RESOURCE_ID), or name the issuer with \
                 --issuer-base-url",
            )
            .into());
        }
    };
    Ok(Target {
        identity,
        fic,
        issuer,
    })
}

fn key_row(key: &Value) -> (String, String, String) {
    let kid = key
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or("<no kid>")
        .to_owned();
    let cluster = idbind_issuer::kid_cluster(&kid).unwrap_or("?").to_owned();
    let alg = key
        .get("alg")
        .and_then(Value::as_str)
        .or_else(|| key.get("kty").and_then(Value::as_str))
        .unwrap_or("?");
    (cluster, kid, alg.to_owned())
}

/// When idbind first published the key, from its `idbind_published_at` member.
fn published_at(key: &Value) -> Option<jiff::Timestamp> {
    let secs = key.get(idbind_issuer::PUBLISHED_AT_MEMBER)?.as_i64()?;
    jiff::Timestamp::from_second(secs).ok()
}

async fn show(args: IdentityArgs) -> anyhow::Result<Outcome> {
    let target = target(&args).await?;
    let fetcher = Fetcher::new(args.issuer.issuer_ca_file.as_ref())?;
    let docs = IssuerDocuments::fetch(&fetcher, &target.issuer).await;
    let identity = &target.identity;
    if let Err(FetchError::Status(404)) = &docs.discovery {
        return Err(Failure::failed(format!(
            "nothing is published for identity {} at its issuer {}: no cluster has bound it (GET {} answered 404)",
            identity.name, target.issuer, docs.discovery_url
        ))
        .hint("bind it in a cluster: idbind binding create NAME --identity RESOURCE_ID")
        .into());
    }
    if let Err(e) = &docs.discovery {
        let failure = match e {
            FetchError::Unreachable(_) => Failure::unreachable(format!(
                "issuer {}: discovery document {}: {e}",
                target.issuer, docs.discovery_url
            )),
            _ => Failure::failed(format!(
                "issuer {}: discovery document {}: {e}",
                target.issuer, docs.discovery_url
            )),
        };
        return Err(failure
            .hint("check that the issuer is served at --issuer-base-url (idbind issuer verify explains more)")
            .into());
    }
    let keys: Vec<Value> = docs.keys().cloned().unwrap_or_default();
    let mut clusters = std::collections::BTreeMap::<String, usize>::new();
    for k in &keys {
        *clusters.entry(key_row(k).0).or_insert(0) += 1;
    }
    if args.output.structured() {
        let key_list: Vec<_> = keys
            .iter()
            .map(|k| {
                let (cluster, kid, alg) = key_row(k);
                let published = published_at(k);
                json!({
                    "kid": kid,
                    "cluster": cluster,
                    "alg": alg,
                    "publishedAt": published.map(|t| t.to_string()),
                    "age": published.map(crate::duration::age),
                })
            })
            .collect();
        args.output.print_structured(&json!({
            "identity": identity.id.to_string(),
            "clientId": identity.client_id.to_string(),
            "tenantId": identity.tenant_id.to_string(),
            "issuer": target.issuer,
            "federatedCredential": target.fic.as_ref().map(|f| f.name.clone()),
            "discoveryUrl": docs.discovery_url,
            "discovery": docs.discovery.as_ref().ok(),
            "jwksUri": docs.jwks_uri,
            "jwksError": docs.jwks_problem(),
            "clusters": clusters,
            "keys": key_list,
        }))?;
        return Ok(Outcome::Ok);
    }
    println!(
        "Identity:              {} (client id {}, tenant {})",
        identity.name, identity.client_id, identity.tenant_id
    );
    println!("Issuer:                {}", target.issuer);
    println!(
        "Federated credential:  {}",
        target
            .fic
            .as_ref()
            .map_or_else(|| "<none>".to_owned(), |f| f.name.clone())
    );
    println!("Discovery document:    {}", docs.discovery_url);
    if let Ok(d) = &docs.discovery {
        for line in serde_json::to_string_pretty(d)?.lines() {
            println!("  {line}");
        }
    }
    println!(
        "JWKS:                  {}",
        docs.jwks_uri.as_deref().unwrap_or("<none>")
    );
    if let Some(problem) = docs.jwks_problem() {
        println!("  cannot read it: {problem}");
        return Ok(Outcome::Ok);
    }
    let list: Vec<String> = clusters.iter().map(|(c, n)| format!("{c} ({n})")).collect();
    println!(
        "Clusters:              {}",
        if list.is_empty() {
            "<none>: no cluster is bound any more".to_owned()
        } else {
            list.join(", ")
        }
    );
    if !keys.is_empty() {
        let mut t = Table::new(["  CLUSTER", "KID", "ALG", "AGE"]);
        for k in &keys {
            let (cluster, kid, alg) = key_row(k);
            let age = published_at(k).map_or_else(|| "unknown".to_owned(), crate::duration::age);
            t.row([format!("  {cluster}"), kid, alg, age]);
        }
        t.print();
    }
    Ok(Outcome::Ok)
}

async fn verify(args: IdentityArgs) -> anyhow::Result<Outcome> {
    let target = target(&args).await?;
    let identity = &target.identity;
    let mut report = Report::default();
    let want_subject = identity.id.to_lowercase();
    let expected_issuer = args
        .issuer
        .issuer_base_url
        .as_ref()
        .map(|b| b.issuer_for(&identity.tenant_id, &identity.client_id));

    // The FIC itself.
    let issuer = match &target.fic {
        None => {
            report.fail(
                "fic",
                format!(
                    "identity {} has no federated identity credential for issuer {}",
                    identity.name, target.issuer
                ),
                format!(
                    "the controller creates it when a cluster binds the identity; check the binding's \
                     FederatedCredentialReady condition, or --fic-name (now {})",
                    args.issuer.fic_name
                ),
            );
            target.issuer.clone()
        }
        Some(fic) => {
            report.pass(
                "fic",
                format!(
                    "federated identity credential {} on identity {}",
                    fic.name, identity.name
                ),
            );
            let issuer = fic.properties.issuer.clone();
            let mut issuer_problems = Vec::new();
            if issuer.ends_with('/') {
                issuer_problems.push("it ends with '/' (Entra compares issuers as exact strings; idbind's have no trailing slash)".to_owned());
            }
            if let Err(e) = check_fetchable(&issuer) {
                issuer_problems.push(e);
            }
            if let Some(want) = &expected_issuer
                && &issuer != want
            {
                issuer_problems.push(format!("it is not {want}, the issuer under --issuer-base-url"));
            }
            if issuer_problems.is_empty() {
                report.pass("fic-issuer", format!("issuer {issuer}"));
            } else {
                report.fail(
                    "fic-issuer",
                    format!(
                        "the credential's issuer {issuer:?} is wrong: {}",
                        issuer_problems.join("; ")
                    ),
                    format!(
                        "set the credential's issuer to {} (delete it and let the controller recreate it)",
                        expected_issuer
                            .clone()
                            .unwrap_or_else(|| issuer.trim_end_matches('/').to_owned())
                    ),
                );
            }
            let subject = &fic.properties.subject;
            if subject == &want_subject {
                report.pass("fic-subject", format!("subject {subject}"));
            } else if subject.eq_ignore_ascii_case(&want_subject) {
                report.fail(
                    "fic-subject",
                    format!("subject {subject:?} differs from {want_subject:?} in case only; Entra compares subjects case-sensitively"),
                    "recreate the credential with the lower-case resource ID as subject (delete it; the controller recreates it)",
                );
            } else {
                report.fail(
                    "fic-subject",
                    format!("subject {subject:?} is not the identity's lower-case resource ID {want_subject:?}"),
                    "recreate the credential with the lower-case resource ID as subject (delete it; the controller recreates it)",
                );
            }
            if fic.properties.audiences == [ENTRA_FIC_AUDIENCE] {
                report.pass("fic-audience", format!("audience {ENTRA_FIC_AUDIENCE}"));
            } else {
                report.fail(
                    "fic-audience",
                    format!(
                        "audiences {:?}; Entra expects exactly [{ENTRA_FIC_AUDIENCE:?}]",
                        fic.properties.audiences
                    ),
                    format!("set the credential's audiences to [\"{ENTRA_FIC_AUDIENCE}\"]"),
                );
            }
            issuer
        }
    };

    // The documents, as Entra fetches them.
    let fetcher = Fetcher::new(args.issuer.issuer_ca_file.as_ref())?;
    let docs = IssuerDocuments::fetch(&fetcher, issuer.trim_end_matches('/')).await;
    match &docs.discovery {
        Err(e) => report.fail(
            "discovery",
            format!("GET {}: {e}", docs.discovery_url),
            match e {
                FetchError::Status(404) => "nothing is published: bind the identity in a cluster (the controller publishes the documents)".to_owned(),
                FetchError::Refused(_) => "serve the issuer over https (Entra fetches nothing else)".to_owned(),
                _ => "make the issuer store reachable at the issuer URL (check --issuer-base-url of the controller)".to_owned(),
            },
        ),
        Ok(d) => {
            report.pass("discovery", format!("GET {} answered a JSON document", docs.discovery_url));
            let doc_issuer = d.get("issuer").and_then(Value::as_str).unwrap_or_default();
            if doc_issuer == issuer {
                report.pass("discovery-issuer", "the document's issuer equals the credential's, exactly");
            } else if doc_issuer.trim_end_matches('/') == issuer.trim_end_matches('/') {
                report.fail(
                    "discovery-issuer",
                    format!("the document says issuer {doc_issuer:?}, the credential {issuer:?}: they differ by a trailing slash"),
                    "make both exactly equal, without a trailing slash",
                );
            } else {
                report.fail(
                    "discovery-issuer",
                    format!("the document says issuer {doc_issuer:?}, the credential {issuer:?}"),
                    "republish the discovery document for this issuer URL (the controller rewrites it on its next reconcile)",
                );
            }
            let algs: Vec<&str> = d
                .get("id_token_signing_alg_values_supported")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !algs.contains(&"RS256") {
                report.warn("discovery-algorithms", format!("id_token_signing_alg_values_supported is {algs:?}"), "list RS256");
            }
        }
    }
    if report.skip_unless("jwks", &["discovery"]) {
        return report.finish(&args.output);
    }
    match (&docs.jwks_uri, &docs.jwks) {
        (None, _) | (_, None) => report.fail(
            "jwks",
            "the discovery document has no jwks_uri",
            "republish the discovery document",
        ),
        (Some(uri), Some(Err(e))) => report.fail(
            "jwks",
            format!("GET {uri}: {e}"),
            if matches!(e, FetchError::Refused(_)) {
                "serve the JWKS over https"
            } else {
                "publish the JWKS at jwks_uri"
            },
        ),
        (Some(uri), Some(Ok(_))) if docs.keys().is_none() => {
            report.fail(
                "jwks",
                format!("{uri} is not a JWKS: no \"keys\" array"),
                "republish the JWKS",
            );
        }
        (Some(uri), Some(Ok(_))) => report.pass("jwks", format!("GET {uri} answered a JWKS")),
    }
    if report.skip_unless("keys", &["jwks"]) {
        return report.finish(&args.output);
    }
    let keys = docs.keys().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let mut kids = BTreeSet::new();
    for (i, k) in keys.iter().enumerate() {
        let kid = k.get("kid").and_then(Value::as_str).unwrap_or_default();
        let name = if kid.is_empty() {
            format!("key #{i}")
        } else {
            kid.to_owned()
        };
        if kid.is_empty() {
            problems.push(format!("{name} has no kid"));
        } else if !kids.insert(kid) {
            problems.push(format!("kid {kid} appears twice"));
        }
        if k.get("kty").and_then(Value::as_str) != Some("RSA") {
            problems.push(format!("{name} is not an RSA key"));
        }
        if let Some(alg) = k.get("alg").and_then(Value::as_str)
            && alg != "RS256"
        {
            problems.push(format!("{name} has alg {alg}; Entra verifies RS256 only"));
        }
        if k.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            problems.push(format!("{name} is not a signing key"));
        }
        if k.get("n").and_then(Value::as_str).is_none() || k.get("e").and_then(Value::as_str).is_none() {
            problems.push(format!("{name} lacks n or e"));
        }
    }
    if keys.len() > MAX_JWKS_KEYS {
        problems.push(format!(
            "{} keys: Entra reads only the first {MAX_JWKS_KEYS}",
            keys.len()
        ));
    }
    if keys.is_empty() {
        report.fail(
            "keys",
            "the JWKS holds no key: no cluster can get tokens for this identity",
            "bind the identity in a cluster",
        );
    } else if problems.is_empty() {
        report.pass(
            "keys",
            format!("{} RS256 key(s), at most {MAX_JWKS_KEYS}", keys.len()),
        );
    } else {
        report.fail(
            "keys",
            problems.join("; "),
            "republish the JWKS with RS256 RSA signing keys only, at most 100",
        );
    }
    report.finish(&args.output)
}
