//! Makes N requests of one verb, a fixed number in flight, on objects shaped
//! like certop's, and prints the wall time and, with VERB_COST_PID set to the
//! control plane's process (kube-apiserver and its embedded etcd), the CPU
//! that process used meanwhile. `scripts/verb-cost.sh` runs it once per verb
//! to find the cheapest verb for each write certop makes (issue 24).
//!
//!   verb_cost VERB N ROUND TEMPLATES [CONCURRENCY]
//!
//! TEMPLATES is a directory with what a running certop wrote: `secret-a.json`
//! and `secret-b.json` (two of its Secrets: real key pairs, its labels and
//! annotations) and `certificate.json` (a Ready ClusterCertificate: its status).
//! Verbs, all in namespace `bench` and as field manager `certop`:
//!
//!   setup-secrets       creates the Secrets w1..wN the Secret verbs below rewrite
//!   setup-certificates  creates ClusterCertificates v1..vN (of a CA that does not
//!                       exist) and applies a status to each
//!   secret-create       POST of new Secrets c<ROUND>-1..N (certop's first issuance)
//!   secret-apply-create server-side apply of new Secrets a<ROUND>-1..N
//!   secret-get          GET of w1..wN
//!   secret-update       PUT of the read wI with a new key pair, at its resourceVersion
//!   secret-merge        merge patch of the new key pair and annotations, at the
//!                       resourceVersion read
//!   secret-apply        server-side apply, force, at the resourceVersion read
//!                       (certop's renewal: src/operator/certificate/secret.rs)
//!   status-apply        server-side apply, force, of vI's status (certop's
//!                       ClusterCertificate status write)
//!   status-merge        merge patch of vI's status
//!   status-replace      PUT of the read vI's status, at its resourceVersion
//!
//! Each write changes what is stored (the other key pair, the next revision),
//! as a renewal does: an unchanged write is not stored and would cost less.
//! Objects are read before the clock starts; only the verb's requests are timed.
use std::path::Path;
use std::time::Instant;

use certop::api::{ClusterCertificate, IssuerRef, meta};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

/// certop's field manager (src/operator/runtime/context.rs `FIELD_MANAGER`).
const FIELD_MANAGER: &str = "certop";
const NAMESPACE: &str = "bench";
const TLS_CERT_KEY: &str = "tls.crt";

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Templates {
    secrets: [Secret; 2],
    certificate: ClusterCertificate,
}

impl Templates {
    fn read(dir: &Path) -> Result<Self, Error> {
        let read = |file: &str| -> Result<String, Error> {
            std::fs::read_to_string(dir.join(file))
                .map_err(|e| format!("{}: {e}", dir.join(file).display()).into())
        };
        let certificate: ClusterCertificate = serde_json::from_str(&read("certificate.json")?)?;
        if certificate.status.is_none() {
            return Err("certificate.json has no status: take a Ready ClusterCertificate".into());
        }
        Ok(Self {
            secrets: [
                serde_json::from_str(&read("secret-a.json")?)?,
                serde_json::from_str(&read("secret-b.json")?)?,
            ],
            certificate,
        })
    }

    /// The Secret certop would write under `name`: template `variant`'s type,
    /// data, labels and annotations (naming its certificate `name`).
    fn secret(&self, name: &str, variant: usize) -> Secret {
        let template = &self.secrets[variant];
        let mut annotations = template.annotations().clone();
        annotations.insert(meta::CERTIFICATE.into(), name.into());
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NAMESPACE.into()),
                labels: Some(template.labels().clone()),
                annotations: Some(annotations),
                ..Default::default()
            },
            type_: template.type_.clone(),
            data: template.data.clone(),
            ..Default::default()
        }
    }

    /// What a renewal writes over `stored`: the other key pair, the next revision.
    fn renewal(&self, stored: &Secret) -> Secret {
        let crt = |s: &Secret| s.data.as_ref().and_then(|d| d.get(TLS_CERT_KEY)).cloned();
        let variant = usize::from(crt(stored) == crt(&self.secrets[0]));
        let mut secret = self.secret(&stored.name_any(), variant);
        let revision = stored
            .annotations()
            .get(meta::REVISION)
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(1);
        secret
            .annotations_mut()
            .insert(meta::REVISION.into(), (revision + 1).to_string());
        secret
    }

    /// The ClusterCertificate `name`, of a CA that does not exist.
    fn certificate(&self, name: &str) -> ClusterCertificate {
        let mut spec = self.certificate.spec.clone();
        spec.issuer_ref = IssuerRef {
            name: "absent".into(),
        };
        spec.secret_name = name.into();
        spec.secret_namespace = NAMESPACE.into();
        ClusterCertificate::new(name, spec)
    }

    /// The status after a renewal of `stored`: the next revision and serial,
    /// a day later, the Ready message naming the new serial.
    fn renewed_status(&self, stored: &ClusterCertificate) -> certop::api::ClusterCertificateStatus {
        let mut status = stored
            .status
            .clone()
            .or_else(|| self.certificate.status.clone())
            .unwrap_or_default();
        let revision = status.revision.unwrap_or(1) + 1;
        let day = chrono::Duration::days(1);
        status.revision = Some(revision);
        status.serial_number = Some(format!("{revision:040x}"));
        status.not_before = status.not_before.map(|t| t + day);
        status.not_after = status.not_after.map(|t| t + day);
        status.renewal_time = status.renewal_time.map(|t| t + day);
        for condition in &mut status.conditions {
            let message = condition
                .message
                .split(" (revision ")
                .next()
                .unwrap_or_default();
            condition.message = format!("{message} (revision {revision})");
        }
        status
    }
}

/// CPU clock ticks (user + system) the process `pid` has used so far.
fn cpu_ticks(pid: u32) -> Result<u64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses: state is
    // the first of them (field 3), utime and stime fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("unreadable /proc stat")?
        .1
        .split_whitespace()
        .collect();
    let field = |n: usize| -> Result<u64, Error> {
        Ok(fields.get(n - 3).ok_or("short /proc stat")?.parse()?)
    };
    Ok(field(14)? + field(15)?)
}

/// Runs `requests` with `concurrency` in flight; the first failure stops it.
async fn run<F>(requests: Vec<F>, concurrency: usize) -> Result<(), Error>
where
    F: std::future::Future<Output = Result<(), Error>>,
{
    futures::stream::iter(requests.into_iter().map(Ok))
        .try_for_each_concurrent(concurrency, |request| request)
        .await
}

/// Reads `names` (concurrently, untimed): what the writes start from.
async fn get_all(
    api: &Api<Secret>,
    names: &[String],
    concurrency: usize,
) -> Result<Vec<Secret>, Error> {
    futures::stream::iter(names.iter().map(|name| async move {
        api.get(name)
            .await
            .map_err(|e| Error::from(format!("{name}: {e}")))
    }))
    .buffered(concurrency)
    .try_collect()
    .await
}

fn params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

fn context(name: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |e| format!("{name}: {e}").into()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: verb_cost VERB N ROUND TEMPLATES [CONCURRENCY]";
    let verb = args.next().ok_or(usage)?;
    let n: usize = args.next().ok_or(usage)?.parse()?;
    let round: usize = args.next().ok_or(usage)?.parse()?;
    let templates = Templates::read(Path::new(&args.next().ok_or(usage)?))?;
    let concurrency: usize = args.next().map(|c| c.parse()).transpose()?.unwrap_or(16);
    let pid: Option<u32> = std::env::var("VERB_COST_PID")
        .ok()
        .map(|p| p.parse())
        .transpose()?;
    let client = Client::try_default().await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let certificates: Api<ClusterCertificate> = Api::all(client);
    let names = |prefix: &str| -> Vec<String> { (1..=n).map(|i| format!("{prefix}{i}")).collect() };
    let (secrets, certificates, templates) = (&secrets, &certificates, &templates);

    // Each arm prepares (untimed) and returns the requests to time.
    let requests: Vec<futures::future::BoxFuture<'_, Result<(), Error>>> = match verb.as_str() {
        "setup-secrets" | "secret-create" => {
            let prefix = if verb == "setup-secrets" {
                "w".to_string()
            } else {
                format!("c{round}-")
            };
            names(&prefix)
                .into_iter()
                .map(|name| -> futures::future::BoxFuture<'_, _> {
                    Box::pin(async move {
                        let secret = templates.secret(&name, 0);
                        secrets
                            .create(&params(), &secret)
                            .await
                            .map_err(context(&name))?;
                        Ok(())
                    })
                })
                .collect()
        }
        "secret-apply-create" => names(&format!("a{round}-"))
            .into_iter()
            .map(|name| -> futures::future::BoxFuture<'_, _> {
                Box::pin(async move {
                    let secret = templates.secret(&name, 0);
                    secrets
                        .patch(&name, &apply_params(), &Patch::Apply(&secret))
                        .await
                        .map_err(context(&name))?;
                    Ok(())
                })
            })
            .collect(),
        "secret-get" => names("w")
            .into_iter()
            .map(|name| -> futures::future::BoxFuture<'_, _> {
                Box::pin(async move {
                    secrets.get(&name).await.map_err(context(&name))?;
                    Ok(())
                })
            })
            .collect(),
        "secret-update" | "secret-merge" | "secret-apply" => {
            let stored = get_all(secrets, &names("w"), concurrency).await?;
            let verb = verb.clone();
            stored
                .into_iter()
                .map(|stored| -> futures::future::BoxFuture<'_, _> {
                    let verb = verb.clone();
                    Box::pin(async move {
                        let name = stored.name_any();
                        let mut renewal = templates.renewal(&stored);
                        let written = match verb.as_str() {
                            "secret-update" => {
                                let mut object = stored;
                                object.data = renewal.data;
                                object
                                    .annotations_mut()
                                    .extend(renewal.metadata.annotations.unwrap_or_default());
                                secrets.replace(&name, &params(), &object).await
                            }
                            "secret-merge" => {
                                let patch = serde_json::json!({
                                    "metadata": {
                                        "resourceVersion": stored.resource_version(),
                                        "annotations": renewal.metadata.annotations,
                                    },
                                    "data": renewal.data,
                                });
                                secrets
                                    .patch(&name, &merge_params(), &Patch::Merge(&patch))
                                    .await
                            }
                            _ => {
                                renewal.metadata.resource_version = stored.resource_version();
                                secrets
                                    .patch(&name, &apply_params(), &Patch::Apply(&renewal))
                                    .await
                            }
                        };
                        written.map_err(context(&name))?;
                        Ok(())
                    })
                })
                .collect()
        }
        "setup-certificates" => names("v")
            .into_iter()
            .map(|name| -> futures::future::BoxFuture<'_, _> {
                Box::pin(async move {
                    let created = certificates
                        .create(&params(), &templates.certificate(&name))
                        .await
                        .map_err(context(&name))?;
                    let patch = status_patch(&templates.renewed_status(&created));
                    certificates
                        .patch_status(&name, &apply_params(), &Patch::Apply(&patch))
                        .await
                        .map_err(context(&name))?;
                    Ok(())
                })
            })
            .collect(),
        "status-apply" | "status-merge" | "status-replace" => {
            let wanted: std::collections::BTreeSet<String> = names("v").into_iter().collect();
            let stored: Vec<ClusterCertificate> = certificates
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|c| wanted.contains(&c.name_any()))
                .collect();
            if stored.len() != n {
                return Err(format!(
                    "{} of v1..v{n} exist: run setup-certificates first",
                    stored.len()
                )
                .into());
            }
            let verb = verb.clone();
            stored
                .into_iter()
                .map(|stored| -> futures::future::BoxFuture<'_, _> {
                    let verb = verb.clone();
                    Box::pin(async move {
                        let name = stored.name_any();
                        let status = templates.renewed_status(&stored);
                        let written = match verb.as_str() {
                            "status-apply" => {
                                certificates
                                    .patch_status(
                                        &name,
                                        &apply_params(),
                                        &Patch::Apply(&status_patch(&status)),
                                    )
                                    .await
                            }
                            "status-merge" => {
                                let patch = serde_json::json!({ "status": status });
                                certificates
                                    .patch_status(&name, &merge_params(), &Patch::Merge(&patch))
                                    .await
                            }
                            _ => {
                                let mut object = stored;
                                object.status = Some(status);
                                certificates.replace_status(&name, &params(), &object).await
                            }
                        };
                        written.map_err(context(&name))?;
                        Ok(())
                    })
                })
                .collect()
        }
        other => return Err(format!("unknown verb {other}; {usage}").into()),
    };
    let count = requests.len();
    let before = pid.map(cpu_ticks).transpose()?;
    let start = Instant::now();
    run(requests, concurrency).await?;
    let wall = start.elapsed().as_secs_f64();
    let after = pid.map(cpu_ticks).transpose()?;
    let ticks = before.zip(after).map(|(b, a)| a - b);
    println!(
        "verb={verb} requests={count} wall_s={wall:.3} cpu_ticks={} rate={:.0}/s in_flight={concurrency}",
        ticks.map_or_else(|| "-".to_string(), |t| t.to_string()),
        count as f64 / wall
    );
    Ok(())
}

/// certop's status apply body (src/operator/runtime/context.rs `apply_status`).
fn status_patch(status: &certop::api::ClusterCertificateStatus) -> serde_json::Value {
    use kube::Resource;
    serde_json::json!({
        "apiVersion": ClusterCertificate::api_version(&()),
        "kind": ClusterCertificate::kind(&()),
        "status": status,
    })
}
