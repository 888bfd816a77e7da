//! `idbind doctor`: walks the chain a pod's token request depends on, one check per link, in the
//! order a request needs them; a check whose prerequisite failed is skipped.
//!
//! | check | what it reads |
//! |---|---|
//! | `cluster` | the Kubernetes API (`/version`) |
//! | `crd` | CRD `identitybindings.idbind.dev`, Established, serving `v1alpha1` |
//! | `controller` | Lease `<idbind-namespace>/<lease-name>` held and renewed within its duration; `--controller-admin` `/readyz` |
//! | `service-account` | the service account and its `azure.workload.identity/client-id` annotation |
//! | `binding` | an IdentityBinding with that client id, Ready for its current generation |
//! | `fic` | through ARM: the binding's federated credential has its issuer, subject and audience |
//! | `jwks` | the issuer's JWKS (fetched as Entra does) holds this cluster's current key (signing-key Secret) |
//! | `rbac` | a SubjectAccessReview for the service account (`use-managed-identity` on `cid.wi.aks.azure.com/<clientId>`) |
//! | `proxy` | TLS to the proxy with the CA of ConfigMap `idbind-proxy-ca` and the SNI name |
//! | `exchange` | a TokenRequest for the service account, then a token request through the proxy |

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use idbind_issuer::KeySet;
use idbind_model::{
    ClientId, DEFAULT_SA_TOKEN_AUDIENCE, ENTRA_FIC_AUDIENCE, IdentityBinding, RBAC_API_GROUP, RBAC_VERB,
    SA_CLIENT_ID_ANNOTATION, SA_TENANT_ID_ANNOTATION, condition, duration::human,
};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};

use crate::azure::AzureArgs;
use crate::cluster::{Cluster, KubeArgs, error_chain};
use crate::cmd::binding::{CRD_NAME, INSTALL_CRD};
use crate::documents::{Fetcher, IssuerArgs, IssuerDocuments};
use crate::duration::age;
use crate::exit::Outcome;
use crate::output::OutputArgs;
use crate::progress::Progress;
use crate::proxy_client::{ProxyError, ProxyTarget};
use crate::report::Report;

/// Arguments of `idbind doctor`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    # The whole chain for one workload\n  \
    idbind doctor -n apps --service-account api\n\n  \
    # With ARM access (checks the federated credential too) and the proxy through a port-forward\n  \
    kubectl -n idbind port-forward svc/idbind-proxy 8443:443 &\n  \
    idbind doctor -n apps --service-account api --proxy-url https://127.0.0.1:8443 \\\n    \
    --azure-tenant-id <guid> --azure-client-id <guid> --azure-client-secret <secret>\n\n\
    Checks: cluster, crd, controller, service-account, binding, fic, jwks, rbac, proxy, exchange.\n\
    Each prints PASS, FAIL (with a fix), WARN or SKIP; the exit status is 3 when one failed.")]
pub struct DoctorArgs {
    /// Namespace of the service account (default: the kubeconfig context's namespace).
    #[arg(short, long, env = "IDBIND_DOCTOR_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// The service account whose chain to check.
    #[arg(long, env = "IDBIND_DOCTOR_SERVICE_ACCOUNT", value_name = "SA")]
    pub service_account: Option<String>,
    /// Client id to check (default: the service account's `azure.workload.identity/client-id`).
    #[arg(long, value_parser = ClientId::parse, value_name = "GUID")]
    pub client_id: Option<ClientId>,
    /// Namespace of idbind's own objects (the controller's `--namespace`).
    #[arg(long, env = "IDBIND_NAMESPACE", default_value = "idbind", value_name = "NS")]
    pub idbind_namespace: String,
    /// The controller's leader-election Lease (in `--idbind-namespace`).
    #[arg(
        long,
        env = "IDBIND_LEASE_NAME",
        default_value = "idbind-controller",
        value_name = "NAME"
    )]
    pub lease_name: String,
    /// The controller's admin address, to ask its `/readyz` (e.g. `http://127.0.0.1:9090` through a port-forward).
    #[arg(long, env = "IDBIND_CONTROLLER_ADMIN", value_name = "URL")]
    pub controller_admin: Option<url::Url>,
    /// Secret (in `--idbind-namespace`) with this cluster's signing keys.
    #[arg(
        long,
        env = "IDBIND_SIGNING_KEY_SECRET",
        default_value = "idbind-signing-keys",
        value_name = "NAME"
    )]
    pub signing_key_secret: String,
    /// The proxy (default `https://idbind-proxy.<idbind-namespace>.svc`, reachable only in the cluster).
    #[arg(long, env = "AZURE_KUBERNETES_TOKEN_PROXY", value_name = "URL")]
    pub proxy_url: Option<String>,
    /// TLS name of the proxy (default `idbind-proxy.<idbind-namespace>.svc`).
    #[arg(long, env = "AZURE_KUBERNETES_SNI_NAME", value_name = "NAME")]
    pub sni_name: Option<String>,
    /// ConfigMap (in the service account's namespace) holding the proxy CA under `ca.crt`.
    #[arg(
        long,
        env = "IDBIND_PROXY_CA_CONFIGMAP",
        default_value = "idbind-proxy-ca",
        value_name = "NAME"
    )]
    pub ca_configmap: String,
    /// Use this proxy CA file instead of the ConfigMap.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Audience of the service-account token for the exchange.
    #[arg(long, default_value = DEFAULT_SA_TOKEN_AUDIENCE, value_name = "AUDIENCE")]
    pub audience: String,
    /// Scope of the test token request.
    #[arg(
        long,
        default_value = "https://management.azure.com/.default",
        value_name = "SCOPE"
    )]
    pub scope: String,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub issuer: IssuerArgs,
    #[command(flatten)]
    pub azure: AzureArgs,
}

/// What the checks found, for later checks.
#[derive(Default)]
struct Found {
    client_id: Option<ClientId>,
    tenant: Option<String>,
    binding: Option<IdentityBinding>,
    ca_source: String,
    ca_pem: Option<String>,
}

/// Runs `idbind doctor`.
pub async fn run(args: DoctorArgs) -> anyhow::Result<Outcome> {
    let cluster = args.kube.connect().await?;
    let progress = Progress::stderr();
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.namespace.clone());
    let mut report = Report::default();
    let mut found = Found {
        client_id: args.client_id,
        ..Found::default()
    };

    progress.say("checking the Kubernetes API");
    match cluster.client.apiserver_version().await {
        Ok(v) => report.pass(
            "cluster",
            format!("Kubernetes API at {} ({})", cluster.server, v.git_version),
        ),
        Err(e) => report.fail(
            "cluster",
            format!(
                "cannot reach the Kubernetes API at {}: {}",
                cluster.server,
                error_chain(&e)
            ),
            "check that the cluster is running and that --kubeconfig / --context (or KUBECONFIG) point at it",
        ),
    }
    if !report.skip_unless("crd", &["cluster"]) {
        progress.say("checking the CRD");
        check_crd(&cluster, &mut report).await;
    }
    if !report.skip_unless("controller", &["cluster"]) {
        progress.say("checking the controller");
        check_controller(&args, &cluster, &mut report).await;
    }
    if !report.skip_unless("service-account", &["cluster"]) {
        progress.say("checking the service account");
        check_service_account(&args, &cluster, &namespace, &mut report, &mut found).await;
    }
    let have_sa = args.service_account.is_some();
    let have_client = found.client_id.is_some();
    if !report.skip_unless("binding", &["crd", "service-account"]) {
        if have_client {
            progress.say("checking the binding");
            check_binding(&cluster, &mut report, &mut found).await;
        } else {
            report.skip(
                "binding",
                "pass -n NS --service-account SA (or --client-id) to check a workload's binding",
            );
        }
    }
    if !report.skip_unless("fic", &["binding"]) {
        if !have_client {
            report.skip("fic", "no client id to check");
        } else if !args.azure.configured() {
            report.skip("fic", "no Azure credentials given (--azure-tenant-id, --azure-client-id, --azure-client-secret or AZURE_*)");
        } else {
            progress.say("checking the federated identity credential through ARM");
            check_fic(&args, &mut report, &found).await;
        }
    }
    if !report.skip_unless("jwks", &["binding"]) {
        if have_client {
            progress.say("checking the issuer's JWKS");
            check_jwks(&args, &cluster, &mut report, &found).await;
        } else {
            report.skip("jwks", "no client id to check");
        }
    }
    if !report.skip_unless("rbac", &["service-account"]) {
        match (&args.service_account, &found.client_id) {
            (Some(sa), Some(client)) => {
                progress.say("checking RBAC");
                check_rbac(&cluster, &namespace, sa, client, &mut report).await;
            }
            _ => report.skip(
                "rbac",
                "pass -n NS --service-account SA to check whether it may use the identity",
            ),
        }
    }
    if !report.skip_unless("proxy", &["cluster"]) {
        progress.say("checking the proxy");
        check_proxy(&args, &cluster, &namespace, &mut report, &mut found).await;
    }
    if !report.skip_unless(
        "exchange",
        &["service-account", "binding", "fic", "jwks", "rbac", "proxy"],
    ) {
        match (&args.service_account, &found.client_id) {
            (Some(sa), Some(_)) if have_sa => {
                progress.say("requesting a token through the proxy");
                check_exchange(&args, &cluster, &namespace, sa, &mut report, &found).await;
            }
            _ => report.skip(
                "exchange",
                "pass -n NS --service-account SA to try a real exchange",
            ),
        }
    }
    report.finish(&args.output)
}

async fn check_crd(cluster: &Cluster, report: &mut Report) {
    match crate::cmd::binding::crd_installed(cluster).await {
        Ok(None) => report.fail(
            "crd",
            format!("the IdentityBinding CRD {CRD_NAME} is not installed"),
            format!("install it: {INSTALL_CRD}"),
        ),
        Ok(Some(crd)) => {
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            let served = crd.spec.versions.iter().any(|v| v.name == "v1alpha1" && v.served);
            if !established {
                report.fail(
                    "crd",
                    format!("CRD {CRD_NAME} exists but is not Established"),
                    format!("see kubectl describe crd {CRD_NAME}"),
                );
            } else if !served {
                report.fail(
                    "crd",
                    format!("CRD {CRD_NAME} does not serve v1alpha1"),
                    format!("reinstall it: {INSTALL_CRD}"),
                );
            } else {
                report.pass("crd", format!("CRD {CRD_NAME} installed and serving v1alpha1"));
            }
        }
        Err(e) => report.fail(
            "crd",
            format!("cannot read CRD {CRD_NAME}: {e:#}"),
            "use a kubeconfig whose user may read CRDs",
        ),
    }
}

async fn check_controller(args: &DoctorArgs, cluster: &Cluster, report: &mut Report) {
    let ns = &args.idbind_namespace;
    let name = &args.lease_name;
    let logs = format!(
        "check the controller: kubectl -n {ns} get pods; kubectl -n {ns} logs deploy/idbind-controller"
    );
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), ns);
    let lease_result = match leases.get_opt(name).await {
        Err(e) => Err((
            format!("cannot read Lease {ns}/{name}: {}", error_chain(&e)),
            "use a kubeconfig whose user may read Leases in that namespace".to_owned(),
        )),
        Ok(None) => Err((
            format!("no Lease {ns}/{name}: no idbind controller has run with --namespace {ns}"),
            format!(
                "install the controller (deploy/), or pass --idbind-namespace / --lease-name if it runs elsewhere; {logs}"
            ),
        )),
        Ok(Some(lease)) => {
            let spec = lease.spec.unwrap_or_default();
            let holder = spec.holder_identity.filter(|h| !h.is_empty());
            let duration = spec.lease_duration_seconds.unwrap_or(15);
            match (holder, spec.renew_time) {
                (None, _) => Err((
                    format!("Lease {ns}/{name} is not held: no controller replica leads"),
                    logs.clone(),
                )),
                (Some(h), None) => Err((
                    format!("Lease {ns}/{name} held by {h} was never renewed"),
                    logs.clone(),
                )),
                (Some(h), Some(renewed)) => {
                    let expires = renewed
                        .0
                        .checked_add(jiff::SignedDuration::from_secs(i64::from(duration)))
                        .ok();
                    if expires.is_some_and(|e| e < jiff::Timestamp::now()) {
                        Err((
                            format!(
                                "Lease {ns}/{name} held by {h} expired: last renewed {} ago, valid for {duration}s",
                                age(renewed.0)
                            ),
                            format!("the controller is down or cannot reach the API server; {logs}"),
                        ))
                    } else {
                        Ok(format!(
                            "Lease {ns}/{name} held by {h}, renewed {} ago",
                            age(renewed.0)
                        ))
                    }
                }
            }
        }
    };
    let readyz = match &args.controller_admin {
        None => None,
        Some(base) => {
            let url = format!("{}/readyz", base.as_str().trim_end_matches('/'));
            let result = reqwest::Client::new()
                .get(&url)
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await;
            Some(match result {
                Ok(r) if r.status().is_success() => Ok(format!("{url} answered {}", r.status().as_u16())),
                Ok(r) => Err(format!("{url} answered {}", r.status().as_u16())),
                Err(e) => Err(format!("{url}: {}", error_chain(&e))),
            })
        }
    };
    match (lease_result, readyz) {
        (Ok(msg), None) => report.pass("controller", msg),
        (Ok(msg), Some(Ok(r))) => report.pass("controller", format!("{msg}; {r}")),
        (Ok(msg), Some(Err(r))) => {
            report.fail("controller", format!("{msg}, but it is not ready: {r}"), logs);
        }
        (Err((msg, fix)), _) => report.fail("controller", msg, fix),
    }
}

async fn check_service_account(
    args: &DoctorArgs,
    cluster: &Cluster,
    namespace: &str,
    report: &mut Report,
    found: &mut Found,
) {
    let Some(sa_name) = &args.service_account else {
        match &found.client_id {
            Some(c) => report.pass(
                "service-account",
                format!("no service account given; checking client id {c}"),
            ),
            None => report.skip(
                "service-account",
                "no service account given (-n NS --service-account SA)",
            ),
        }
        return;
    };
    let sas: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), namespace);
    match sas.get_opt(sa_name).await {
        Err(e) => report.fail("service-account", format!("cannot read service account {namespace}/{sa_name}: {}", error_chain(&e)), "use a kubeconfig that may read service accounts"),
        Ok(None) => report.fail(
            "service-account",
            format!("no service account {namespace}/{sa_name}"),
            format!("create it (kubectl -n {namespace} create serviceaccount {sa_name}) or fix -n / --service-account"),
        ),
        Ok(Some(sa)) => {
            let annotations = sa.metadata.annotations.unwrap_or_default();
            found.tenant = annotations.get(SA_TENANT_ID_ANNOTATION).cloned();
            let annotated = annotations.get(SA_CLIENT_ID_ANNOTATION).map(|s| s.trim().to_owned());
            match (&found.client_id, annotated) {
                (Some(c), Some(a)) if a != c.to_string() => report.warn(
                    "service-account",
                    format!("{namespace}/{sa_name} is annotated with client id {a}, but --client-id {c} is checked"),
                    "pods get the annotated client id; drop --client-id to check that one",
                ),
                (Some(c), _) => report.pass("service-account", format!("{namespace}/{sa_name} exists; checking client id {c}")),
                (None, Some(a)) => match ClientId::parse(&a) {
                    Ok(c) => {
                        report.pass("service-account", format!("{namespace}/{sa_name} uses client id {c}"));
                        found.client_id = Some(c);
                    }
                    Err(e) => report.fail(
                        "service-account",
                        format!("{namespace}/{sa_name}: annotation {SA_CLIENT_ID_ANNOTATION}: {e}"),
                        format!("kubectl -n {namespace} annotate --overwrite serviceaccount {sa_name} {SA_CLIENT_ID_ANNOTATION}=<client id>"),
                    ),
                },
                (None, None) => report.fail(
                    "service-account",
                    format!("{namespace}/{sa_name} has no {SA_CLIENT_ID_ANNOTATION} annotation, so pods get no AZURE_CLIENT_ID"),
                    format!("kubectl -n {namespace} annotate serviceaccount {sa_name} {SA_CLIENT_ID_ANNOTATION}=<client id of the identity>"),
                ),
            }
        }
    }
}

async fn check_binding(cluster: &Cluster, report: &mut Report, found: &mut Found) {
    let Some(client) = found.client_id else { return };
    let api: Api<IdentityBinding> = Api::all(cluster.client.clone());
    let bindings = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            report.fail(
                "binding",
                format!("cannot list IdentityBindings: {}", error_chain(&e)),
                "use a kubeconfig that may list identitybindings.idbind.dev",
            );
            return;
        }
    };
    let Some(b) = bindings.into_iter().find(|b| b.client_id() == Some(client)) else {
        report.fail(
            "binding",
            format!("no IdentityBinding has client id {client}: the identity is not bound to this cluster (or not resolved yet)"),
            "bind it: idbind binding create NAME --identity <resource ID of the identity> --allow NS/SA",
        );
        return;
    };
    let name = b.metadata.name.clone().unwrap_or_default();
    if b.is_ready() {
        report.pass(
            "binding",
            format!(
                "IdentityBinding {name} is Ready (identity {})",
                b.spec.managed_identity.resource_id
            ),
        );
    } else {
        let failing = condition::ALL
            .iter()
            .filter_map(|t| b.condition(t))
            .find(|c| c.status != "True")
            .map(|c| format!("{} is {} ({}): {}", c.type_, c.status, c.reason, c.message));
        let generation = b.metadata.generation;
        let observed = b.status.as_ref().and_then(|s| s.observed_generation);
        let why = match (failing, generation, observed) {
            (Some(f), _, _) => f,
            (None, Some(g), Some(o)) if g != o => {
                format!("the controller has not reconciled generation {g} yet (observed {o})")
            }
            (None, _, _) => "no Ready condition yet: the controller has not reconciled it".to_owned(),
        };
        report.fail(
            "binding",
            format!("IdentityBinding {name} is not Ready: {why}"),
            format!("see `idbind binding describe {name}`; the message above names the cause"),
        );
    }
    found.binding = Some(b);
}

async fn check_fic(args: &DoctorArgs, report: &mut Report, found: &Found) {
    let Some(b) = &found.binding else { return };
    let status = b.status.clone().unwrap_or_default();
    let (Some(issuer), Ok(identity_id)) = (status.oidc_issuer_url.clone(), b.identity_id()) else {
        report.fail(
            "fic",
            "the binding's status has no issuer URL or its resource ID is invalid",
            "see idbind binding describe",
        );
        return;
    };
    let subject = identity_id.to_lowercase();
    let arm = match args.azure.arm() {
        Ok(a) => a,
        Err(e) => {
            report.fail(
                "fic",
                format!("cannot use the Azure settings: {e:#}"),
                "fix the --azure-* flags",
            );
            return;
        }
    };
    let fics = match arm.list_fics(&identity_id).await {
        Ok(f) => f,
        Err(e) => {
            report.fail(
                "fic",
                format!(
                    "listing the federated credentials of {}: {}",
                    identity_id.name(),
                    error_chain(&e)
                ),
                "check the --azure-* credentials and their access to the identity",
            );
            return;
        }
    };
    let name = status
        .federated_credential
        .as_ref()
        .map_or(args.issuer.fic_name.clone(), |f| f.name.clone());
    let matching = fics
        .iter()
        .find(|f| f.properties.issuer == issuer && f.properties.subject == subject);
    let named = fics.iter().find(|f| f.name == name);
    let fix = format!(
        "the controller recreates the credential on its next reconcile (delete a wrong one first: az identity \
         federated-credential delete --identity-name {} --resource-group {} --name {name}); then `idbind issuer verify --identity {identity_id}`",
        identity_id.name(),
        identity_id.resource_group()
    );
    match (matching, named) {
        (Some(f), _) if f.properties.audiences == [ENTRA_FIC_AUDIENCE] => {
            report.pass("fic", format!("federated credential {} trusts issuer {issuer} for subject {subject}", f.name));
        }
        (Some(f), _) => report.fail("fic", format!("federated credential {} has audiences {:?}, not [{ENTRA_FIC_AUDIENCE:?}]", f.name, f.properties.audiences), fix),
        (None, Some(f)) => {
            let mut diffs = Vec::new();
            if f.properties.issuer != issuer {
                diffs.push(format!("issuer {:?} instead of {issuer:?}", f.properties.issuer));
            }
            if f.properties.subject != subject {
                diffs.push(format!("subject {:?} instead of {subject:?}", f.properties.subject));
            }
            report.fail("fic", format!("federated credential {} does not match the binding: {}", f.name, diffs.join(", ")), fix);
        }
        (None, None) => report.fail(
            "fic",
            format!("identity {} has no federated credential for issuer {issuer} and subject {subject} ({} others)", identity_id.name(), fics.len()),
            fix,
        ),
    }
}

async fn check_jwks(args: &DoctorArgs, cluster: &Cluster, report: &mut Report, found: &Found) {
    let Some(b) = &found.binding else { return };
    let Some(issuer) = b.status.as_ref().and_then(|s| s.oidc_issuer_url.clone()) else {
        report.fail(
            "jwks",
            "the binding's status has no issuer URL yet",
            "wait for the controller to publish it (IssuerPublished condition)",
        );
        return;
    };
    let ns = &args.idbind_namespace;
    let secret_name = &args.signing_key_secret;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let keys = match secrets.get_opt(secret_name).await {
        Err(e) => Err((
            format!("cannot read Secret {ns}/{secret_name}: {}", error_chain(&e)),
            "use a kubeconfig that may read Secrets in the idbind namespace, or pass --signing-key-secret"
                .to_owned(),
        )),
        Ok(None) => Err((
            format!("no signing-key Secret {ns}/{secret_name}: this cluster has no keys yet"),
            format!(
                "the controller creates it at start; check it runs (kubectl -n {ns} get pods) or pass --signing-key-secret"
            ),
        )),
        Ok(Some(s)) => {
            let data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            KeySet::from_secret_data(&data).map_err(|e| {
                (
                    format!("Secret {ns}/{secret_name} is not a signing-key set: {e}"),
                    "delete it; the controller creates a new one (and republishes)".to_owned(),
                )
            })
        }
    };
    let keys = match keys {
        Ok(k) => k,
        Err((m, f)) => {
            report.fail("jwks", m, f);
            return;
        }
    };
    let fetcher = match Fetcher::new(args.issuer.issuer_ca_file.as_ref()) {
        Ok(f) => f,
        Err(e) => {
            report.fail("jwks", format!("{e:#}"), "fix --issuer-ca-file");
            return;
        }
    };
    let docs = IssuerDocuments::fetch(&fetcher, &issuer).await;
    if let Some(problem) = docs.jwks_problem() {
        report.fail(
            "jwks",
            format!("Entra cannot read the issuer's JWKS: {problem}"),
            "the controller publishes it to the issuer store served at --issuer-base-url; check the binding's \
             IssuerPublished condition and that the store is served over https",
        );
        return;
    }
    let kids = docs.kids();
    let (current, since) = keys.current();
    let current_kid = current.kid().to_owned();
    let mut clusters = BTreeMap::<String, usize>::new();
    for k in &kids {
        *clusters
            .entry(idbind_issuer::kid_cluster(k).unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    let others: Vec<String> = clusters.iter().map(|(c, n)| format!("{c} ({n})")).collect();
    if kids.contains(&current_kid) {
        let mut msg = format!(
            "JWKS {} holds this cluster's current key {current_kid} (signing for {}); keys of: {}",
            docs.jwks_uri.as_deref().unwrap_or_default(),
            age(since),
            others.join(", ")
        );
        if let Some((next, next_since)) = keys.next() {
            let published = if kids.iter().any(|k| k == next.kid()) {
                "published"
            } else {
                "NOT published yet"
            };
            msg.push_str(&format!(
                "; next key {} staged {} ago, {published}",
                next.kid(),
                age(next_since)
            ));
        }
        report.pass("jwks", msg);
    } else {
        report.fail(
            "jwks",
            format!(
                "JWKS {} does not hold this cluster's current key {current_kid} (cluster {}); it holds {}",
                docs.jwks_uri.as_deref().unwrap_or_default(),
                keys.cluster(),
                if kids.is_empty() { "no key".to_owned() } else { kids.join(", ") }
            ),
            "Entra rejects this cluster's assertions until the controller publishes the key: check the binding's \
             IssuerPublished condition and the controller's logs (is --issuer-store the store served at the issuer URL?)",
        );
    }
}

async fn check_rbac(cluster: &Cluster, namespace: &str, sa: &str, client: &ClientId, report: &mut Report) {
    let user = idbind_rbac::service_account_user_name(namespace, sa);
    let groups = vec![
        idbind_rbac::SERVICE_ACCOUNTS_GROUP.to_owned(),
        idbind_rbac::service_accounts_group(namespace),
        idbind_rbac::AUTHENTICATED_GROUP.to_owned(),
    ];
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.clone()),
            groups: Some(groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(RBAC_API_GROUP.to_owned()),
                resource: Some(client.to_string()),
                verb: Some(RBAC_VERB.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(cluster.client.clone());
    let decision = match api.create(&PostParams::default(), &review).await {
        Ok(r) => {
            let s = r.status.unwrap_or_default();
            Ok((s.allowed, s.reason.unwrap_or_default(), "SubjectAccessReview"))
        }
        // No permission to create reviews: evaluate the RBAC objects ourselves.
        Err(_) => match crate::cmd::rbac::snapshot(cluster).await {
            Ok(snapshot) => {
                let d = snapshot.authorizer().can(
                    &idbind_rbac::UserInfo::new(user.clone()).with_groups(groups.clone()),
                    &idbind_rbac::ResourceAttributes::use_managed_identity(client),
                );
                Ok((d.allowed, d.reason, "RBAC evaluation"))
            }
            Err(e) => Err(format!("{e:#}")),
        },
    };
    match decision {
        Ok((true, reason, how)) => report.pass(
            "rbac",
            format!("{namespace}/{sa} may use client id {client} ({how}: {reason})"),
        ),
        Ok((false, _, how)) => {
            let who = match crate::cmd::rbac::snapshot(cluster).await {
                Ok(s) => {
                    let (subjects, _) = crate::cmd::rbac::subjects_for(&s, client);
                    if subjects.is_empty() {
                        "nobody".to_owned()
                    } else {
                        subjects
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                }
                Err(_) => "unknown".to_owned(),
            };
            report.fail(
                "rbac",
                format!("RBAC does not let {namespace}/{sa} {RBAC_VERB} on {RBAC_API_GROUP}/{client} ({how}); allowed: {who}"),
                format!(
                    "add it to the binding's allowedSubjects (spec.allowedSubjects: [{{namespace: {namespace}, serviceAccount: {sa}}}]), \
                     or: idbind rbac generate --client-id {client} --allow {namespace}/{sa} | kubectl apply -f -"
                ),
            );
        }
        Err(e) => report.fail(
            "rbac",
            format!("cannot check RBAC: {e}"),
            "use a kubeconfig that may create SubjectAccessReviews or list RBAC objects",
        ),
    }
}

async fn check_proxy(
    args: &DoctorArgs,
    cluster: &Cluster,
    namespace: &str,
    report: &mut Report,
    found: &mut Found,
) {
    let default_name = format!("idbind-proxy.{}.svc", args.idbind_namespace);
    let url = args
        .proxy_url
        .clone()
        .unwrap_or_else(|| format!("https://{default_name}"));
    let sni = args.sni_name.clone().unwrap_or(default_name);
    let ca = match &args.ca_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|pem| (pem, format!("file {}", path.display())))
            .map_err(|e| {
                (
                    format!("cannot read --ca-file {}: {e}", path.display()),
                    "pass a readable PEM file".to_owned(),
                )
            }),
        None => {
            let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), namespace);
            let name = &args.ca_configmap;
            match cms.get_opt(name).await {
                Err(e) => Err((
                    format!("cannot read ConfigMap {namespace}/{name}: {}", error_chain(&e)),
                    "use a kubeconfig that may read ConfigMaps, or pass --ca-file".to_owned(),
                )),
                Ok(None) => Err((
                    format!("no ConfigMap {namespace}/{name}: pods in {namespace} get no proxy CA"),
                    "the controller publishes the proxy CA to every namespace; check it runs and its logs"
                        .to_owned(),
                )),
                Ok(Some(cm)) => match cm
                    .data
                    .unwrap_or_default()
                    .get("ca.crt")
                    .filter(|s| !s.trim().is_empty())
                {
                    Some(pem) => Ok((pem.clone(), format!("ConfigMap {namespace}/{name}"))),
                    None => Err((
                        format!("ConfigMap {namespace}/{name} has no ca.crt"),
                        "the controller writes ca.crt; check its logs".to_owned(),
                    )),
                },
            }
        }
    };
    let (pem, source) = match ca {
        Ok(c) => c,
        Err((m, f)) => {
            report.fail("proxy", m, f);
            return;
        }
    };
    found.ca_source = source.clone();
    found.ca_pem = Some(pem.clone());
    let target = match ProxyTarget::new(&url, Some(sni.clone()), Some(pem)) {
        Ok(t) => t,
        Err(e) => {
            report.fail(
                "proxy",
                format!("--proxy-url: {e}"),
                "pass --proxy-url https://HOST[:PORT] without a path",
            );
            return;
        }
    };
    match target.probe().await {
        Ok(status) => report.pass("proxy", format!("{url} (TLS name {sni}) verified with the CA from {source}; HTTP {status}")),
        Err(ProxyError::Tls(m)) => report.fail(
            "proxy",
            format!("TLS with {url} as {sni} fails with the CA from {source}: {m}"),
            format!(
                "the proxy's certificate must chain to the CA in {source} and name {sni}: check the controller's proxy TLS \
                 (Secret {}/idbind-proxy-tls) and --sni-name",
                args.idbind_namespace
            ),
        ),
        Err(ProxyError::Unreachable(m)) => report.fail(
            "proxy",
            format!("cannot reach the proxy at {url}: {m}"),
            format!(
                "check the proxy pods (kubectl -n {0} get pods); from outside the cluster port-forward it \
                 (kubectl -n {0} port-forward svc/idbind-proxy 8443:443) and pass --proxy-url https://127.0.0.1:8443",
                args.idbind_namespace
            ),
        ),
        Err(e) => report.fail("proxy", format!("{url}: {e}"), "check --proxy-url"),
    }
}

async fn check_exchange(
    args: &DoctorArgs,
    cluster: &Cluster,
    namespace: &str,
    sa: &str,
    report: &mut Report,
    found: &Found,
) {
    let Some(client) = found.client_id else { return };
    let sas: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![args.audience.clone()]),
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = match sas
        .create_subresource::<TokenRequest, TokenRequest>("token", sa, &PostParams::default(), &request)
        .await
    {
        Ok(r) => r.status.and_then(|s| s.token).filter(|t| !t.is_empty()),
        Err(e) => {
            report.fail(
                "exchange",
                format!("TokenRequest for {namespace}/{sa}: {}", error_chain(&e)),
                "use a kubeconfig that may create serviceaccounts/token in that namespace",
            );
            return;
        }
    };
    let Some(token) = token else {
        report.fail(
            "exchange",
            format!("TokenRequest for {namespace}/{sa} returned no token"),
            "check the API server's service-account issuer",
        );
        return;
    };
    let default_name = format!("idbind-proxy.{}.svc", args.idbind_namespace);
    let url = args
        .proxy_url
        .clone()
        .unwrap_or_else(|| format!("https://{default_name}"));
    let sni = args.sni_name.clone().unwrap_or(default_name);
    let target = match ProxyTarget::new(&url, Some(sni), found.ca_pem.clone()) {
        Ok(t) => t,
        Err(e) => {
            report.fail("exchange", e.to_string(), "pass --proxy-url https://HOST[:PORT]");
            return;
        }
    };
    let tenant = found.tenant.clone().or_else(|| {
        found
            .binding
            .as_ref()
            .and_then(|b| b.status.as_ref()?.tenant_id.clone())
    });
    match target
        .request_token(tenant.as_deref(), &client.to_string(), &args.scope, &token)
        .await
    {
        Ok(reply) => {
            let claims = crate::jwt::decode(&reply.access_token)
                .map(|d| d.claims)
                .unwrap_or_default();
            let appid = claims
                .get("appid")
                .or_else(|| claims.get("azp"))
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            if appid != "?" && appid != client.to_string() {
                report.fail(
                    "exchange",
                    format!("got a token, but for application {appid} instead of {client}"),
                    "check the binding's identity",
                );
            } else {
                report.pass(
                    "exchange",
                    format!(
                        "got an access token for client id {client} (scope {}), expiring in {}",
                        args.scope,
                        human(std::time::Duration::from_secs(
                            u64::try_from(reply.expires_in).unwrap_or(0)
                        ))
                    ),
                );
            }
        }
        Err(e) => {
            let text = e.to_string();
            let fix = if text.contains("AADSTS") {
                "Entra refused the assertion: run `idbind issuer verify --identity <resource id>` and check the fic and jwks checks above"
            } else if text.contains("temporarily_unavailable") || text.contains("503") {
                "the proxy could not reach Entra (or Entra is failing): check the proxy's logs and its network path to the authority host"
            } else {
                "see the proxy's logs for this request"
            };
            report.fail(
                "exchange",
                format!("the token request through the proxy failed: {text}"),
                fix,
            );
        }
    }
}
