//! The load of `make bench-podcerts` (scripts/podcert-bench.sh): nodes and
//! pods bound to them, PodCertificateRequests created by each node with its
//! own identity (so kube-apiserver's Node authorizer and NodeRestriction
//! check each, as for a kubelet's), the raw baseline of status writes, and
//! a watch that says when all requests of a signer are Issued.
//!
//!   pod_certificate_load pods N NODES            (as KUBECONFIG, an admin)
//!   pod_certificate_load requests N NODES DIR SIGNER PREFIX
//!       (as each node, DIR/node-<i>.kubeconfig; request PREFIX<j> for pod p<j>)
//!   pod_certificate_load raw SIGNER C            (as KUBECONFIG: signs every
//!       request of SIGNER not answered, then times one status write each, C in flight)
//!   pod_certificate_load wait N SIGNER           (prints "watching", then the
//!       Unix time at which N requests of SIGNER are Issued)
use std::collections::HashSet;
use std::io::Write;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const NAMESPACE: &str = "bench";
const SERVICE_ACCOUNT: &str = "web";
/// Requests in flight while the load is set up (not timed).
const SETUP_IN_FLIGHT: usize = 32;

fn node_name(i: usize) -> String {
    format!("bench-node-{i}")
}

fn arg<T: std::str::FromStr>(n: usize) -> Result<T>
where
    T::Err: std::error::Error + 'static,
{
    let a = std::env::args()
        .nth(n)
        .ok_or("missing argument; see the usage")?;
    Ok(a.parse()?)
}

async fn created<K>(api: &Api<K>, object: serde_json::Value) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object)?;
    match api.create(&PostParams::default(), &object).await {
        Ok(o) => Ok(o),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(api.get(&object.name_any()).await?),
        Err(e) => Err(e.into()),
    }
}

/// The ServiceAccount, NODES nodes and N pods, pod p<j> on node j % NODES.
async fn pods(n: usize, nodes: usize) -> Result<()> {
    let client = Client::try_default().await?;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    created(&sa, json!({"metadata": {"name": SERVICE_ACCOUNT}})).await?;
    let node_api: Api<Node> = Api::all(client.clone());
    for i in 0..nodes {
        created(&node_api, json!({"metadata": {"name": node_name(i)}})).await?;
    }
    let pod_api: Api<Pod> = Api::namespaced(client, NAMESPACE);
    futures::stream::iter((0..n).map(Ok))
        .try_for_each_concurrent(SETUP_IN_FLIGHT, |j| {
            let pod_api = pod_api.clone();
            async move {
                created(
                    &pod_api,
                    json!({"metadata": {"name": format!("p{j}")},
                           "spec": {"nodeName": node_name(j % nodes), "serviceAccountName": SERVICE_ACCOUNT,
                                    "automountServiceAccountToken": false,
                                    "containers": [{"name": "c", "image": "example.invalid/app"}]}}),
                )
                .await
                .map(|_| ())
            }
        })
        .await
}

async fn client_of(path: &std::path::Path) -> Result<Client> {
    let config =
        Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &KubeConfigOptions::default())
            .await?;
    Ok(Client::try_from(config)?)
}

/// A request for each pod, made by the pod's node, each for a fresh P-256 key.
async fn requests(n: usize, nodes: usize, dir: &str, signer: &str, prefix: &str) -> Result<()> {
    let admin = Client::try_default().await?;
    let sa_uid = Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .get(SERVICE_ACCOUNT)
        .await?
        .uid()
        .ok_or("a ServiceAccount without a UID")?;
    let mut node_clients = Vec::with_capacity(nodes);
    let mut node_uids = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let path = std::path::Path::new(dir).join(format!("node-{i}.kubeconfig"));
        node_clients.push(Api::<PodCertificateRequest>::namespaced(
            client_of(&path).await?,
            NAMESPACE,
        ));
        let node = Api::<Node>::all(admin.clone()).get(&node_name(i)).await?;
        node_uids.push(node.uid().ok_or("a Node without a UID")?);
    }
    let pod_api: Api<Pod> = Api::namespaced(admin, NAMESPACE);
    let mut pod_uids = std::collections::HashMap::new();
    for pod in pod_api.list(&ListParams::default()).await? {
        pod_uids.insert(pod.name_any(), pod.uid().unwrap_or_default());
    }
    let (node_clients, node_uids, pod_uids) = (&node_clients, &node_uids, &pod_uids);
    let sa_uid = &sa_uid;
    futures::stream::iter((0..n).map(Ok))
        .try_for_each_concurrent(SETUP_IN_FLIGHT, |j| async move {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let stub = rcgen::CertificateParams::default().serialize_request(&key)?;
            let pod = format!("p{j}");
            let pod_uid = pod_uids.get(&pod).ok_or("a pod is missing: run `pods` first")?;
            let i = j % nodes;
            created(
                &node_clients[i],
                json!({"metadata": {"name": format!("{prefix}{j}")},
                       "spec": {"signerName": signer, "podName": pod, "podUID": pod_uid,
                                "serviceAccountName": SERVICE_ACCOUNT, "serviceAccountUID": sa_uid,
                                "nodeName": node_name(i), "nodeUID": node_uids[i],
                                "maxExpirationSeconds": 86400,
                                "stubPKCS10Request": k8s_openapi::ByteString(stub.der().to_vec())}}),
            )
            .await
            .map(|_| ())
        })
        .await
}

/// The raw baseline: every request of SIGNER not yet answered, signed
/// beforehand (by
/// a CA made here), then one status write each, timed, C in flight.
async fn raw(signer: &str, in_flight: usize) -> Result<()> {
    let client = Client::try_default().await?;
    let api: Api<PodCertificateRequest> = Api::namespaced(client, NAMESPACE);
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let now = time::OffsetDateTime::from_unix_timestamp(
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )?;
    let (not_before, not_after) = (now, now + time::Duration::hours(12));
    let rfc3339 = |t: time::OffsetDateTime| -> Result<String> {
        Ok(t.format(&time::format_description::well_known::Rfc3339)?)
    };
    let mut patches = Vec::new();
    for request in api.list(&ListParams::default()).await? {
        let answered = request
            .status
            .as_ref()
            .is_some_and(|s| s.certificate_chain.is_some() || s.conditions.is_some());
        if answered || request.spec.signer_name != signer {
            continue;
        }
        let der = rustls::pki_types::CertificateSigningRequestDer::from(
            request.spec.stub_pkc_s10_request.0.clone(),
        );
        let mut csr = rcgen::CertificateSigningRequestParams::from_der(&der)?;
        csr.params.not_before = not_before;
        csr.params.not_after = not_after;
        let leaf = csr.signed_by(&issuer)?;
        patches.push((
            request.name_any(),
            json!({"status": {
                "certificateChain": format!("{}{}", leaf.pem(), ca_cert.pem()),
                "notBefore": rfc3339(not_before)?,
                "notAfter": rfc3339(not_after)?,
                "beginRefreshAt": rfc3339(now + time::Duration::hours(9))?,
                "conditions": [{"type": "Issued", "status": "True", "reason": "Issued",
                                "message": "signed by the raw baseline", "lastTransitionTime": rfc3339(now)?}],
            }}),
        ));
    }
    let count = patches.len();
    let start = Instant::now();
    let api = &api;
    futures::stream::iter(patches.into_iter().map(Ok))
        .try_for_each_concurrent(in_flight, |(name, patch)| async move {
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(|e| format!("{name}: {e}"))
        })
        .await?;
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{count} {elapsed:.3} raw: {count} status writes in {elapsed:.2} s ({:.0}/s, {in_flight} in flight)",
        count as f64 / elapsed
    );
    Ok(())
}

/// Watches the requests until N of SIGNER are Issued.
async fn wait(n: usize, signer: &str) -> Result<()> {
    let client = Client::try_default().await?;
    let api: Api<PodCertificateRequest> = Api::namespaced(client, NAMESPACE);
    let mut issued = HashSet::new();
    let mut events = watcher(api, watcher::Config::default()).boxed();
    let mut stdout = std::io::stdout();
    while let Some(event) = events.try_next().await? {
        let objects = match event {
            watcher::Event::Apply(r) | watcher::Event::InitApply(r) => vec![r],
            watcher::Event::InitDone => {
                writeln!(stdout, "watching")?;
                stdout.flush()?;
                vec![]
            }
            _ => vec![],
        };
        for r in objects {
            let done = r.spec.signer_name == signer
                && r.status
                    .iter()
                    .flat_map(|s| s.conditions.iter().flatten())
                    .any(|c| c.type_ == "Issued" && c.status == "True");
            if done {
                issued.insert(r.name_any());
            }
        }
        if issued.len() >= n {
            let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            writeln!(stdout, "{:.3}", at.as_secs_f64())?;
            return Ok(());
        }
    }
    Err("the watch ended".into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let command: String = arg(1)?;
    match command.as_str() {
        "pods" => pods(arg(2)?, arg(3)?).await,
        "requests" => {
            let (dir, signer, prefix): (String, String, String) = (arg(4)?, arg(5)?, arg(6)?);
            requests(arg(2)?, arg(3)?, &dir, &signer, &prefix).await
        }
        "raw" => {
            let signer: String = arg(2)?;
            raw(&signer, arg(3)?).await
        }
        "wait" => {
            let signer: String = arg(3)?;
            wait(arg(2)?, &signer).await
        }
        _ => Err("usage: pod_certificate_load pods|requests|raw|wait ...".into()),
    }
}
