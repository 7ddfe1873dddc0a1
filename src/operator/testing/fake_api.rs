//! An in-memory Kubernetes API server for reconciler tests: objects by
//! path, resourceVersions and their preconditions, label selectors, merge
//! and (as a merge) server-side apply, status subresources (with field
//! managers owning top-level status fields), missing
//! namespaces, and injected faults: the n-th write answers 500, 409 or 422,
//! or the connection drops. Events are accepted and kept, not counted as
//! writes. SubjectAccessReviews are answered from grants a test makes
//! (`grant`), and are not writes either. Real semantics are tested against a real API server elsewhere;
//! this is for "every write of a pass fails in turn, and the next pass
//! converges".

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// What an injected fault does to a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Status(u16),
    /// The connection drops before an answer (the write is not applied).
    Drop,
}

impl Fault {
    /// Every way a write fails that a pass must survive: a server error,
    /// a conflict, a refusal, and a connection dropped without an answer.
    pub const EVERY: [Fault; 4] = [
        Fault::Status(500),
        Fault::Status(409),
        Fault::Status(422),
        Fault::Drop,
    ];
}

/// The longest object name the API server accepts.
const MAX_NAME: usize = 253;

#[derive(Default)]
struct State {
    /// (prefix, plural, namespace, name) -> object.
    objects: BTreeMap<(String, String, String, String), Value>,
    namespaces: BTreeSet<String>,
    version: u64,
    writes: usize,
    reads: usize,
    read_log: Vec<String>,
    faults: BTreeMap<usize, Fault>,
    events: Vec<Value>,
    log: Vec<String>,
    /// (user or group, "verb resource[/subresource or name]") allowed.
    grants: BTreeSet<(String, String)>,
    /// Server-side apply of a status, at the grain of its top-level
    /// fields: object -> field manager -> the fields it applied last.
    status_owners: BTreeMap<ObjectKey, FieldOwners>,
}

/// (prefix, plural, namespace, name) of an object.
type ObjectKey = (String, String, String, String);

/// Field manager -> the top-level status fields it applied last.
type FieldOwners = BTreeMap<String, BTreeSet<String>>;

/// The field manager taken to own status fields nobody applied (put by a
/// test, or merged): certop's controllers'.
const DEFAULT_STATUS_MANAGER: &str = crate::operator::runtime::context::FIELD_MANAGER;

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

struct Path {
    prefix: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Path> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match *segs.first()? {
        "api" => (format!("/api/{}", segs.get(1)?), &segs[2..]),
        "apis" => (
            format!("/apis/{}/{}", segs.get(1)?, segs.get(2)?),
            &segs[3..],
        ),
        _ => return None,
    };
    let owned = |s: Option<&&str>| s.map(|s| s.to_string());
    Some(match rest {
        ["namespaces", ns, plural, tail @ ..] => Path {
            prefix,
            plural: plural.to_string(),
            namespace: Some(ns.to_string()),
            name: owned(tail.first()),
            subresource: owned(tail.get(1)),
        },
        [plural, tail @ ..] => Path {
            prefix,
            plural: plural.to_string(),
            namespace: None,
            name: owned(tail.first()),
            subresource: owned(tail.get(1)),
        },
        [] => return None,
    })
}

fn status(code: u16, reason: &str, message: String) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

/// A status after `manager` applied `sent` (always forced, as certop's
/// writers do), at the grain of top-level fields, as the real server
/// does it: the fields it sends are set and become its own; those it
/// applied before and no longer sends are gone; other managers' fields
/// stay. Fields nobody applied count as `DEFAULT_STATUS_MANAGER`'s.
fn applied_status(owners: &mut FieldOwners, manager: &str, current: &Value, sent: &Value) -> Value {
    let sent_fields: BTreeSet<String> = sent
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    for (m, fields) in owners.iter_mut() {
        if m != manager {
            fields.retain(|f| !sent_fields.contains(f));
        }
    }
    let others: BTreeSet<String> = owners
        .iter()
        .filter(|(m, _)| m.as_str() != manager)
        .flat_map(|(_, f)| f.iter().cloned())
        .collect();
    let previous = owners.get(manager).cloned().unwrap_or_default();
    let mut status = current.as_object().cloned().unwrap_or_default();
    status.retain(|field, _| {
        let mine = previous.contains(field)
            || (manager == DEFAULT_STATUS_MANAGER && !others.contains(field));
        sent_fields.contains(field) || !mine
    });
    for field in &sent_fields {
        status.insert(field.clone(), sent[field].clone());
    }
    owners.insert(manager.to_string(), sent_fields);
    Value::Object(status)
}

/// RFC 7386 merge of `patch` into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// RFC 6902 for what controllers send (finalizers): add, replace, remove;
/// `test` is taken as passing.
fn json_patch(target: &mut Value, ops: &Value) {
    for op in ops.as_array().into_iter().flatten() {
        let path = op["path"].as_str().unwrap_or("");
        let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
        let Some(parent) = target.pointer_mut(parent) else {
            continue;
        };
        match (op["op"].as_str(), parent) {
            (Some("remove"), Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < a.len()
                {
                    a.remove(i);
                }
            }
            (Some("remove"), Value::Object(o)) => {
                o.remove(last);
            }
            (Some("add" | "replace"), Value::Array(a)) => match last.parse::<usize>() {
                Ok(i) if i <= a.len() => a.insert(i, op["value"].clone()),
                _ => a.push(op["value"].clone()),
            },
            (Some("add" | "replace"), Value::Object(o)) => {
                o.insert(last.to_string(), op["value"].clone());
            }
            _ => {}
        }
    }
}

fn selector_matches(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let label = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = term.split_once("!=") {
            label(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            label(k.trim_end_matches('=')) == Some(v.trim_start_matches('=').trim())
        } else if let Some(k) = term.strip_prefix('!') {
            label(k).is_none()
        } else {
            label(term).is_some()
        }
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let decoded = std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(decoded.unwrap_or(b'?'));
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeApi {
    pub fn new(namespaces: &[&str]) -> Self {
        let api = FakeApi::default();
        if let Ok(mut s) = api.state.lock() {
            s.namespaces = namespaces.iter().map(|n| n.to_string()).collect();
        }
        api
    }

    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move { api.handle(req).await }
        });
        kube::Client::new(service, "default")
    }

    /// The write with this number (1-based, counted from now) fails.
    pub fn fail_write(&self, n: usize, fault: Fault) {
        if let Ok(mut s) = self.state.lock() {
            let at = s.writes + n;
            s.faults.insert(at, fault);
        }
    }

    /// Lets `subject` (a user or group) do `action`, e.g. "create
    /// certificatesigningrequests/selfnodeclient" or "use
    /// certificatepolicies/web", in the SubjectAccessReviews answered.
    pub fn grant(&self, subject: &str, action: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.grants.insert((subject.to_string(), action.to_string()));
        }
    }

    pub fn writes(&self) -> usize {
        self.state.lock().map(|s| s.writes).unwrap_or(0)
    }

    /// GETs and LISTs so far (watches are not served here).
    pub fn reads(&self) -> usize {
        self.state.lock().map(|s| s.reads).unwrap_or(0)
    }

    /// The path of every GET and LIST so far.
    pub fn read_log(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.read_log.clone())
            .unwrap_or_default()
    }

    /// Every write so far, as "METHOD path".
    pub fn log(&self) -> Vec<String> {
        self.state.lock().map(|s| s.log.clone()).unwrap_or_default()
    }

    pub fn event_reasons(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| {
                s.events
                    .iter()
                    .filter_map(|e| e.get("reason").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An object, by its API path (`/api/v1/namespaces/ns/secrets/name`).
    pub fn get<K: serde::de::DeserializeOwned>(&self, path: &str) -> Option<K> {
        let p = parse_path(path)?;
        let s = self.state.lock().ok()?;
        let v = s
            .objects
            .get(&(p.prefix, p.plural, p.namespace.unwrap_or_default(), p.name?))?;
        serde_json::from_value(v.clone()).ok()
    }

    /// Objects of one kind in one namespace (or all).
    pub fn list(&self, prefix: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        self.state
            .lock()
            .map(|s| {
                s.objects
                    .iter()
                    .filter(|((p, pl, ns, _), _)| {
                        p == prefix && pl == plural && namespace.is_none_or(|n| n == ns)
                    })
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Puts an object in place, as if someone else wrote it.
    pub fn put(&self, path: &str, mut object: Value) {
        let Some(p) = parse_path(path) else { return };
        if let Ok(mut s) = self.state.lock() {
            s.version += 1;
            object["metadata"]["resourceVersion"] = json!(s.version.to_string());
            let key = (
                p.prefix,
                p.plural,
                p.namespace.unwrap_or_default(),
                p.name.unwrap_or_default(),
            );
            s.objects.insert(key, object);
        }
    }

    pub fn remove(&self, path: &str) {
        let Some(p) = parse_path(path) else { return };
        if let Ok(mut s) = self.state.lock() {
            let key = (
                p.prefix,
                p.plural,
                p.namespace.unwrap_or_default(),
                p.name.unwrap_or_default(),
            );
            s.objects.remove(&key);
        }
    }

    async fn handle(
        &self,
        req: Request<kube::client::Body>,
    ) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or("").to_string();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let method = parts.method.clone();
        let (code, value) = {
            let mut s = self.state.lock().map_err(|_| "poisoned")?;
            let too_long = method == http::Method::POST
                && body["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.len() > MAX_NAME);
            if too_long {
                // As the real API server: a name is a DNS subdomain.
                status(
                    422,
                    "Invalid",
                    format!("metadata.name: must be no more than {MAX_NAME} characters"),
                )
            } else if path.ends_with("/subjectaccessreviews") {
                s.reads += 1;
                (201, s.access_review(body))
            } else if path.contains("/events.k8s.io/") || path.ends_with("/events") {
                s.events.push(body.clone());
                (201, body)
            } else if method == http::Method::GET {
                s.reads += 1;
                s.read_log.push(path.clone());
                s.read(&path, &query)
            } else {
                s.writes += 1;
                let n = s.writes;
                s.log.push(format!("{method} {path}"));
                match s.faults.remove(&n) {
                    Some(Fault::Drop) => return Err("connection dropped (injected)".into()),
                    Some(Fault::Status(code)) => status(
                        code,
                        "Injected",
                        format!("injected failure {code} of write {n}"),
                    ),
                    None => s.write(&method, &path, &query, &content_type, body),
                }
            }
        };
        let response = Response::builder()
            .status(StatusCode::from_u16(code)?)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&value)?)))?;
        Ok(response)
    }
}

impl State {
    /// A SubjectAccessReview answered from the grants: allowed when the
    /// user or one of the groups holds the action.
    fn access_review(&self, mut review: Value) -> Value {
        let spec = &review["spec"];
        let attributes = &spec["resourceAttributes"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let detail = match (text(&attributes["subresource"]), text(&attributes["name"])) {
            (sub, _) if !sub.is_empty() => format!("/{sub}"),
            (_, name) if !name.is_empty() => format!("/{name}"),
            _ => String::new(),
        };
        let action = format!(
            "{} {}{detail}",
            text(&attributes["verb"]),
            text(&attributes["resource"])
        );
        let mut subjects = vec![text(&spec["user"])];
        subjects.extend(spec["groups"].as_array().into_iter().flatten().map(text));
        let allowed = subjects
            .into_iter()
            .any(|s| self.grants.contains(&(s, action.clone())));
        review["status"] = json!({"allowed": allowed});
        review
    }

    fn key(p: &Path) -> (String, String, String, String) {
        (
            p.prefix.clone(),
            p.plural.clone(),
            p.namespace.clone().unwrap_or_default(),
            p.name.clone().unwrap_or_default(),
        )
    }

    fn read(&self, path: &str, query: &str) -> (u16, Value) {
        let Some(p) = parse_path(path) else {
            return status(404, "NotFound", format!("no route {path}"));
        };
        if p.name.is_some() {
            return match self.objects.get(&Self::key(&p)) {
                Some(v) => (200, v.clone()),
                None => status(404, "NotFound", format!("{path} not found")),
            };
        }
        let selector = query_param(query, "labelSelector").unwrap_or_default();
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((prefix, plural, ns, _), _)| {
                *prefix == p.prefix
                    && *plural == p.plural
                    && p.namespace.as_ref().is_none_or(|n| n == ns)
            })
            .filter(|(_, v)| selector_matches(&selector, &v["metadata"]["labels"]))
            .map(|(_, v)| v.clone())
            .collect();
        (
            200,
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": self.version.to_string()}, "items": items}),
        )
    }

    fn write(
        &mut self,
        method: &http::Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: Value,
    ) -> (u16, Value) {
        let Some(mut p) = parse_path(path) else {
            return status(404, "NotFound", format!("no route {path}"));
        };
        if method == http::Method::POST && p.name.is_none() {
            p.name = body["metadata"]["name"].as_str().map(str::to_string);
        }
        let key = Self::key(&p);
        if let Some(ns) = &p.namespace
            && !self.namespaces.contains(ns)
        {
            return status(404, "NotFound", format!("namespaces \"{ns}\" not found"));
        }
        let existing = self.objects.get(&key).cloned();
        let wanted_version = body["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        let current_version = existing.as_ref().and_then(|e| {
            e["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string)
        });
        let conflict = || {
            status(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version"
                    .into(),
            )
        };
        let mut object = match (method.as_str(), existing) {
            ("POST", Some(_)) => {
                return status(409, "AlreadyExists", format!("{path} already exists"));
            }
            ("POST", None) => body,
            ("PUT", None) => return status(404, "NotFound", format!("{path} not found")),
            ("PUT", Some(mut e)) => {
                if wanted_version.is_some() && wanted_version != current_version {
                    return conflict();
                }
                if p.subresource.as_deref() == Some("status") {
                    e["status"] = body["status"].clone();
                    e
                } else {
                    let keep_status = e["status"].clone();
                    let mut b = body;
                    if !keep_status.is_null() {
                        b["status"] = keep_status;
                    }
                    b
                }
            }
            ("PATCH", existing) => {
                let apply = content_type.contains("apply-patch");
                // As kube-apiserver: an apply creates a missing object,
                // whatever resourceVersion it names.
                if existing.is_some()
                    && wanted_version.is_some()
                    && wanted_version != current_version
                {
                    return conflict();
                }
                let Some(mut e) = existing.or_else(|| apply.then(|| json!({}))) else {
                    return status(404, "NotFound", format!("{path} not found"));
                };
                if content_type.contains("json-patch") {
                    json_patch(&mut e, &body);
                    e
                } else {
                    let mut patch = body;
                    if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                    if p.subresource.as_deref() == Some("status") && apply {
                        let manager = query_param(query, "fieldManager").unwrap_or_default();
                        let owners = self.status_owners.entry(key.clone()).or_default();
                        e["status"] =
                            applied_status(owners, &manager, &e["status"], &patch["status"]);
                    } else if p.subresource.as_deref() == Some("status") {
                        merge(&mut e["status"], &patch["status"]);
                    } else {
                        merge(&mut e, &patch);
                    }
                    e
                }
            }
            ("DELETE", None) => return status(404, "NotFound", format!("{path} not found")),
            ("DELETE", Some(e)) => {
                // DeleteOptions.preconditions, as kube-apiserver checks them.
                let pre = &body["preconditions"];
                let differs = |field: &str| {
                    pre[field]
                        .as_str()
                        .is_some_and(|want| e["metadata"][field].as_str() != Some(want))
                };
                if differs("uid") || differs("resourceVersion") {
                    return status(
                        409,
                        "Conflict",
                        format!(
                            "Precondition failed for {path}: the object has been modified or replaced"
                        ),
                    );
                }
                self.objects.remove(&key);
                self.status_owners.remove(&key);
                return (200, e);
            }
            _ => return status(405, "MethodNotAllowed", format!("{method} {path}")),
        };
        self.version += 1;
        let meta = &mut object["metadata"];
        meta["name"] = json!(key.3);
        if let Some(ns) = &p.namespace {
            meta["namespace"] = json!(ns);
        }
        meta["resourceVersion"] = json!(self.version.to_string());
        if meta["uid"].is_null() {
            meta["uid"] = json!(format!("uid-{}", self.version));
            meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            meta["generation"] = json!(1);
        }
        self.objects.insert(key, object.clone());
        (
            if method == http::Method::POST {
                201
            } else {
                200
            },
            object,
        )
    }
}
