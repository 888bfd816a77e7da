//! Assembling and running the controller: admin server, optional issuer server, leader
//! election, and — while this replica leads — the key manager and the reconciler. Extra tasks
//! (the admission webhook, certificate management) plug in through [`RuntimeBuilder::task`] and
//! [`RuntimeBuilder::leader_task`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use idbind_arm::Credential;
use idbind_issuer::{ClusterName, IssuerStore, Publisher, RotationPolicy};
use idbind_model::IdentityBinding;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Health, ReadyFlag};
use crate::args::Args;
use crate::azure::Azure;
use crate::clock::{Clock, SystemClock};
use crate::keys::{KeyManager, KeySettings, Keys};
use crate::leader::{LeaderElector, LeaseSettings};
use crate::memo::MemoTtl;
use crate::metrics::Metrics;
use crate::publish::PublishTargets;
use crate::reconcile::{self, Context, Hooks, NoHooks, ReconcileSettings};
use crate::triggers::{self, OwnWrites};
use crate::{Error, Result, setup};

/// The error type of plug-in tasks.
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;
/// A plug-in task.
pub type TaskFuture = BoxFuture<'static, Result<(), TaskError>>;
type TaskFactory = Box<dyn Fn(TaskContext) -> TaskFuture + Send + Sync>;

/// What a plug-in task gets.
#[derive(Clone)]
pub struct TaskContext {
    /// Kubernetes client.
    pub client: kube::Client,
    /// The idbind namespace (`--namespace`).
    pub namespace: String,
    /// All flags.
    pub args: Arc<Args>,
    /// Cancelled on shutdown, and for leader tasks also when leadership is lost.
    pub shutdown: CancellationToken,
    /// Readiness checks of `/readyz`.
    pub health: Health,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
}

/// Builds a controller runtime.
pub struct RuntimeBuilder {
    args: Args,
    client: Option<kube::Client>,
    clock: Arc<dyn Clock>,
    hooks: Arc<dyn Hooks>,
    credential: Option<Arc<dyn Credential>>,
    store: Option<Arc<dyn IssuerStore>>,
    registry: Registry,
    health: Health,
    tasks: Vec<(String, TaskFactory)>,
    leader_tasks: Vec<(String, TaskFactory)>,
}

impl RuntimeBuilder {
    /// A builder for the controller configured by `args`.
    pub fn new(args: Args) -> Self {
        Self {
            args,
            client: None,
            clock: Arc::new(SystemClock),
            hooks: Arc::new(NoHooks),
            credential: None,
            store: None,
            registry: Registry::default(),
            health: Health::default(),
            tasks: Vec::new(),
            leader_tasks: Vec::new(),
        }
    }

    /// The Kubernetes client (default: `kube::Client::try_default()`).
    pub fn client(mut self, client: kube::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The wall clock used for key rotation and condition times (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Hooks called between reconcile steps (tests).
    pub fn hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// An Azure credential to use instead of the one the flags describe.
    pub fn credential(mut self, credential: Arc<dyn Credential>) -> Self {
        self.credential = Some(credential);
        self
    }

    /// An issuer store to use instead of the one the flags name (the issuer server, if enabled,
    /// still serves `--issuer-dir`).
    pub fn issuer_store(mut self, store: Arc<dyn IssuerStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The metrics registry, to register more metrics before [`start`](Self::start).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The readiness checks; register more with [`Health::check`].
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// A task every replica runs until shutdown (e.g. the admission webhook server).
    pub fn task<F, Fut>(mut self, name: &str, task: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        self.tasks
            .push((name.to_owned(), Box::new(move |ctx| Box::pin(task(ctx)))));
        self
    }

    /// A task only the leader runs; started on each acquisition of the Lease, its
    /// [`TaskContext::shutdown`] is cancelled when the Lease is lost (e.g. certificate renewal).
    pub fn leader_task<F, Fut>(mut self, name: &str, task: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        self.leader_tasks
            .push((name.to_owned(), Box::new(move |ctx| Box::pin(task(ctx)))));
        self
    }

    /// Validates the settings, binds the listeners and starts everything.
    pub async fn start(mut self) -> Result<Running> {
        let args = Arc::new(self.args);
        let cluster = ClusterName::parse(&args.cluster.cluster_name)
            .map_err(|e| Error::config("--cluster-name", e.to_string()))?;
        idbind_model::validate_fic_name(&args.reconcile.fic_name)
            .map_err(|e| Error::config("--fic-name", e.to_string()))?;
        let metrics = Arc::new(Metrics::register(&mut self.registry));
        let cloud = setup::cloud(&args.azure)?;
        let credential = match self.credential {
            Some(c) => c,
            None => setup::credential(&args.azure, &cloud)?,
        };
        let arm = setup::arm_client(&args.azure, cloud, credential.clone(), &metrics)?;
        let azure = Azure::new(
            arm.clone(),
            idbind_fic::FicManager::new(arm),
            metrics.clone(),
            MemoTtl {
                success: args.reconcile.arm_cache_ttl,
                failure: args.reconcile.error_backoff_min,
            },
        );
        let store = match self.store {
            Some(s) => s,
            None => setup::issuer_store(&args.issuer, credential)?,
        };
        let publisher = Arc::new(Publisher::new(store, args.issuer.issuer_base_url.clone()));

        let admin_listener = bind(args.admin.admin_listen).await?;
        let admin_addr = local_addr(&admin_listener, args.admin.admin_listen)?;
        let issuer = match (&args.issuer.issuer_listen, &args.issuer.issuer_dir) {
            (Some(addr), Some(dir)) => {
                let listener = bind(*addr).await?;
                let local = local_addr(&listener, *addr)?;
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::config("--issuer-dir", format!("cannot create {}: {e}", dir.display()))
                })?;
                let dir_store: Arc<dyn IssuerStore> = Arc::new(
                    idbind_issuer::DirectoryStore::new(dir.clone())
                        .map_err(|e| Error::config("--issuer-dir", e.to_string()))?,
                );
                let tls = match (&args.issuer.issuer_tls_cert, &args.issuer.issuer_tls_key) {
                    (Some(cert), Some(key)) => {
                        let resolver = idbind_tls::ReloadingCertResolver::new(cert.clone(), key.clone())
                            .map_err(|e| {
                                Error::config("--issuer-tls-cert/--issuer-tls-key", e.to_string())
                            })?;
                        let config = idbind_tls::server_config_with_resolver(Arc::new(resolver))
                            .map_err(|e| Error::config("issuer TLS", e.to_string()))?;
                        Some(Arc::new(config))
                    }
                    _ => None,
                };
                Some((listener, local, idbind_issuer::router(dir_store), tls))
            }
            _ => None,
        };
        let issuer_addr = issuer.as_ref().map(|(_, a, _, _)| *a);

        let client = match self.client {
            Some(c) => c,
            None => kube::Client::try_default()
                .await
                .map_err(Error::kube("connecting to the Kubernetes API"))?,
        };
        let identity = args
            .leader
            .leader_identity
            .clone()
            .unwrap_or_else(default_identity);
        let elector = LeaderElector::new(
            client.clone(),
            LeaseSettings {
                namespace: args.cluster.namespace.clone(),
                name: args.leader.lease_name.clone(),
                identity: identity.clone(),
                lease_duration: args.leader.lease_duration,
                renew_deadline: args.leader.lease_renew_deadline,
                retry_period: args.leader.lease_retry_period,
            },
        )
        .with_ready_flag(self.health.check("leader-election"));
        let leader_rx = elector.subscribe();
        let caches = self.health.check("bindings-cache");
        let registry = Arc::new(self.registry);
        let shutdown = CancellationToken::new();

        let shared = Shared {
            args: args.clone(),
            client: client.clone(),
            cluster,
            identity,
            azure,
            publisher,
            metrics: metrics.clone(),
            hooks: self.hooks,
            clock: self.clock.clone(),
            health: self.health.clone(),
            leader_tasks: Arc::new(self.leader_tasks),
        };
        let task_ctx = TaskContext {
            client,
            namespace: args.cluster.namespace.clone(),
            args: args.clone(),
            shutdown: shutdown.clone(),
            health: self.health.clone(),
            clock: self.clock,
        };
        let mut set: JoinSet<(String, Result<(), TaskError>)> = JoinSet::new();
        let router = admin::router(registry.clone(), self.health.clone());
        let token = shutdown.clone();
        set.spawn(async move {
            crate::serve::serve(admin_listener, router, None, token).await;
            ("admin server".to_owned(), Ok(()))
        });
        if let Some((listener, _, router, tls)) = issuer {
            let token = shutdown.clone();
            set.spawn(async move {
                crate::serve::serve(listener, router, tls, token).await;
                ("issuer server".to_owned(), Ok(()))
            });
        }
        let token = shutdown.clone();
        set.spawn(async move {
            elector.run(token).await;
            ("leader election".to_owned(), Ok(()))
        });
        let token = shutdown.clone();
        let rx = leader_rx.clone();
        set.spawn(async move {
            leader_loop(shared, rx, caches, token).await;
            ("leader loop".to_owned(), Ok(()))
        });
        for (name, factory) in &self.tasks {
            let fut = factory(task_ctx.clone());
            let name = name.clone();
            set.spawn(async move { (name, fut.await) });
        }
        let token = shutdown.clone();
        let task = tokio::spawn(supervise(set, token));
        tracing::info!(%admin_addr, issuer = ?issuer_addr, "idbind-controller started");
        Ok(Running {
            admin_addr,
            issuer_addr,
            shutdown,
            task,
            leader: leader_rx,
            registry,
            health: self.health,
            metrics,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Listen {
        addr: addr.to_string(),
        source,
    })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr> {
    listener.local_addr().map_err(|source| Error::Listen {
        addr: addr.to_string(),
        source,
    })
}

fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "idbind-controller".to_owned());
    format!("{base}-{:08x}", rand::random::<u32>())
}

/// Waits for shutdown or for a task to fail; then stops everything.
async fn supervise(
    mut set: JoinSet<(String, Result<(), TaskError>)>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut failure = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            next = set.join_next() => match next {
                None => break,
                Some(Ok((name, Ok(())))) => {
                    if !shutdown.is_cancelled() {
                        tracing::warn!(task = %name, "task ended early; shutting down");
                        failure = Some(Error::config("runtime", format!("{name} ended unexpectedly")));
                        break;
                    }
                }
                Some(Ok((name, Err(e)))) => {
                    tracing::error!(task = %name, error = %e, "task failed; shutting down");
                    failure = Some(Error::config("runtime", format!("{name} failed: {e}")));
                    break;
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "task panicked; shutting down");
                    failure = Some(Error::config("runtime", format!("a task panicked: {e}")));
                    break;
                }
            }
        }
    }
    shutdown.cancel();
    let drain = async { while set.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10 s; aborting them");
    }
    failure.map_or(Ok(()), Err)
}

struct Shared {
    args: Arc<Args>,
    client: kube::Client,
    cluster: ClusterName,
    identity: String,
    azure: Azure,
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
    hooks: Arc<dyn Hooks>,
    clock: Arc<dyn Clock>,
    health: Health,
    leader_tasks: Arc<Vec<(String, TaskFactory)>>,
}

async fn leader_loop(
    shared: Shared,
    mut leader: watch::Receiver<bool>,
    caches: ReadyFlag,
    shutdown: CancellationToken,
) {
    caches.set(true);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = wait_leader(&mut leader, true) => if !r { return },
        }
        caches.set(false);
        shared.metrics.leader.set(1);
        let term = shutdown.child_token();
        let work = lead(&shared, caches.clone(), term.clone());
        tokio::pin!(work);
        tokio::select! {
            () = &mut work => {}
            _ = wait_leader(&mut leader, false) => {
                tracing::warn!("lost leadership; stopped reconciling");
            }
            () = shutdown.cancelled() => {
                term.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut work).await;
            }
        }
        term.cancel();
        shared.metrics.leader.set(0);
        caches.set(true);
    }
}

/// Waits until leadership is `want`; false when the elector is gone.
async fn wait_leader(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|l| *l == want).await.is_ok()
}

/// Everything the leader runs; dropping the future stops all of it at once.
async fn lead(shared: &Shared, caches: ReadyFlag, term: CancellationToken) {
    let args = &shared.args;
    let bindings: Api<IdentityBinding> = Api::all(shared.client.clone());
    let managed = format!(
        "{}={}",
        idbind_model::MANAGED_BY_LABEL,
        idbind_model::MANAGED_BY_VALUE
    );
    let own_writes = OwnWrites::default();
    let (store, binding_events) = triggers::bindings(bindings, watcher::Config::default());
    let owned_events = triggers::owned_role_bindings(
        shared.client.clone(),
        watcher::Config::default().labels(&managed),
        own_writes.clone(),
    );
    let owner_store = store.clone();
    let controller = Controller::for_stream(binding_events, store.clone())
        .watches_stream(owned_events, move |crb| {
            triggers::repairing_owner(&crb, &owner_store)
        })
        .with_config(ControllerConfig::default().concurrency(args.reconcile.concurrency));
    let (synced_tx, synced_rx) = watch::channel(false);
    let targets = PublishTargets::new(
        store.clone(),
        synced_rx,
        shared.publisher.clone(),
        shared.cluster.clone(),
        shared.metrics.clone(),
    );
    let keys = Keys::default();
    let key_settings = KeySettings {
        namespace: args.cluster.namespace.clone(),
        secret_name: args.keys.signing_key_secret.clone(),
        cluster: shared.cluster.clone(),
        policy: RotationPolicy {
            rotate_after: args.keys.key_rotation_interval,
            propagation_delay: args.keys.key_propagation_delay,
            retire_after: args.keys.key_retirement_delay,
        },
        retry_delay: args.reconcile.error_backoff_min,
        recheck_interval: args.reconcile.resync_interval,
    };
    let key_manager = KeyManager::new(
        shared.client.clone(),
        key_settings,
        keys.clone(),
        shared.clock.clone(),
        targets.clone(),
        shared.metrics.clone(),
    );
    let recorder = Recorder::new(
        shared.client.clone(),
        Reporter {
            controller: "idbind-controller".to_owned(),
            instance: Some(shared.identity.clone()),
        },
    );
    let ctx = Arc::new(Context::new(
        shared.client.clone(),
        ReconcileSettings {
            cluster: shared.cluster.clone(),
            fic_name: args.reconcile.fic_name.clone(),
            fic_gc: args.reconcile.fic_gc,
            issuer_base: args.issuer.issuer_base_url.clone(),
            resync: args.reconcile.resync_interval,
            backoff_min: args.reconcile.error_backoff_min,
            backoff_max: args.reconcile.error_backoff_max,
            key_secret: format!("{}/{}", args.cluster.namespace, args.keys.signing_key_secret),
        },
        shared.azure.clone(),
        targets,
        keys,
        store.clone(),
        recorder,
        shared.metrics.clone(),
        shared.hooks.clone(),
        shared.clock.clone(),
        own_writes,
    ));
    let mut set: JoinSet<()> = JoinSet::new();
    let token = term.clone();
    set.spawn(async move { key_manager.run(token).await });
    set.spawn(async move {
        // The store's readiness wakes only its latest waiter (the controller's queue also waits
        // on it), so poll it again now and then instead of trusting one wake-up.
        loop {
            match tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    tracing::debug!("bindings cache synced");
                    caches.set(true);
                    synced_tx.send_replace(true);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "bindings cache never synced");
                    return;
                }
                Err(_) => {}
            }
        }
    });
    let token = term.clone();
    set.spawn(async move {
        controller
            .graceful_shutdown_on(async move { token.cancelled().await })
            .run(reconcile::reconcile, reconcile::error_policy, ctx)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "reconcile error");
                }
            })
            .await;
    });
    let task_ctx = TaskContext {
        client: shared.client.clone(),
        namespace: args.cluster.namespace.clone(),
        args: args.clone(),
        shutdown: term.clone(),
        health: shared.health.clone(),
        clock: shared.clock.clone(),
    };
    for (name, factory) in shared.leader_tasks.iter() {
        let fut = factory(task_ctx.clone());
        let name = name.clone();
        set.spawn(async move {
            if let Err(e) = fut.await {
                tracing::error!(task = %name, error = %e, "leader task failed");
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// A running controller.
pub struct Running {
    admin_addr: SocketAddr,
    issuer_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<()>>,
    leader: watch::Receiver<bool>,
    registry: Arc<Registry>,
    health: Health,
    metrics: Arc<Metrics>,
}

impl Running {
    /// Where the admin server listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the issuer server listens, if enabled.
    pub fn issuer_addr(&self) -> Option<SocketAddr> {
        self.issuer_addr
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Follows leadership.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// The metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        crate::metrics::encode(&self.registry)
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Readiness checks.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// A token that stops the controller when cancelled (e.g. on SIGTERM).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops gracefully (releasing the Lease) and waits.
    pub async fn shutdown(self) -> Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the controller stops (after [`Running::shutdown_token`] is cancelled, or a
    /// task failed).
    pub async fn wait(self) -> Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::config(
                "runtime",
                format!("the controller task failed: {e}"),
            )),
        }
    }

    /// Stops at once, as a crash would: nothing is released or finished.
    pub fn abort(self) {
        self.task.abort();
    }
}
