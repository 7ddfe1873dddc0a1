//! Secrets and ConfigMaps encrypted at rest through `certop kms serve`: a
//! control plane of its own (kept data, so kube-apiserver can restart)
//! whose EncryptionConfiguration points at the plugin's socket; what etcd
//! stores is read raw (its JSON gateway, with curl), not through certop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;

use crate::objects::apply;
use crate::support::{ControlPlane, KeptControlPlane, stderr, stdout, unique, wait_for};

const MARKER: &str = "kms-plaintext-marker-7f3a";

struct Plugin {
    child: Child,
}

impl Plugin {
    fn start(socket: &Path, keys: &Path, log: &Path) -> Plugin {
        let _ = std::fs::remove_file(socket);
        let child = Command::new(env!("CARGO_BIN_EXE_certop"))
            .args(["kms", "serve", "--socket"])
            .arg(socket)
            .arg("--key-dir")
            .arg(keys)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("certop kms serve");
        assert!(
            wait_for(Duration::from_secs(10), || socket.exists()),
            "the plugin did not listen: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Plugin { child }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// What etcd stores under `key`, read with curl from its JSON gateway.
fn etcd_raw(cp: &ControlPlane, key: &str) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = format!("{{\"key\":\"{}\"}}", b64.encode(key));
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "-d", &body])
        .arg(format!("{}/v3/kv/range", cp.etcd))
        .output()
        .expect("curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcd JSON");
    v["kvs"][0]["value"]
        .as_str()
        .and_then(|s| b64.decode(s).ok())
        .unwrap_or_else(|| panic!("etcd has no {key}: {v}"))
}

/// The KEK id an encrypted value names (the plugin's key id, which the API
/// server records in its envelope in plain text).
fn stored_under(raw: &[u8], keks: &[String]) -> Option<String> {
    keks.iter()
        .find(|id| raw.windows(id.len()).any(|w| w == id.as_bytes()))
        .cloned()
}

fn keks(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .expect("key dir")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".kek"))
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    ids
}

fn current(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("current"))
        .expect("current")
        .trim()
        .to_string()
}

fn certop(args: &[&str], kubeconfig: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certop"))
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("certop")
}

#[test]
fn a_missing_key_directory_stops_the_plugin_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_certop"))
        .args([
            "kms",
            "serve",
            "--socket",
            "/tmp/certop-kms-never.sock",
            "--key-dir",
            "/nonexistent/keys",
        ])
        .output()
        .expect("certop");
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("/nonexistent/keys") && said.lines().count() == 1,
        "{said}"
    );
}

#[test]
fn secrets_and_configmaps_are_encrypted_rotated_rewritten_and_survive_the_old_keks_retirement() {
    // A second control plane beside the shared one: alone, so neither
    // slows the other's timed waits.
    let _one = crate::ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tmp");
    let keys: PathBuf = tmp.path().join("keys");
    std::fs::create_dir(&keys).expect("key dir");
    let socket = tmp.path().join("kms.sock");
    let log = tmp.path().join("kms.log");
    let plugin = Plugin::start(&socket, &keys, &log);
    let config = tmp.path().join("encryption.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets, configmaps]\n    providers:\n      - kms:\n          apiVersion: v2\n          name: certop\n          endpoint: unix://{}\n          timeout: 3s\n      - identity: {{}}\n",
            socket.display()
        ),
    )
    .expect("config");
    let apiserver_args = [format!("--encryption-provider-config={}", config.display())];
    let kept = KeptControlPlane::new();
    let cp = kept.start_with(&apiserver_args);
    let first = current(&keys);

    // A Secret created through the API is stored encrypted and reads back.
    let ns = unique("kms");
    assert!(cp.kubectl(&["create", "namespace", &ns]).status.success());
    let made = cp.kubectl(&[
        "create",
        "secret",
        "generic",
        "plain",
        "-n",
        &ns,
        &format!("--from-literal=v={MARKER}"),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let raw = etcd_raw(&cp, &format!("/registry/secrets/{ns}/plain"));
    assert!(
        raw.starts_with(b"k8s:enc:kms:v2:certop:"),
        "{:?}",
        &raw[..raw.len().min(40)]
    );
    assert!(
        !raw.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
        "plaintext in etcd"
    );
    assert_eq!(stored_under(&raw, &keks(&keys)), Some(first.clone()));
    let read = |cp: &ControlPlane, name: &str| {
        let out = cp.kubectl(&["get", "secret", "-n", &ns, name, "-o", "jsonpath={.data.v}"]);
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(stdout(&out).trim())
                .unwrap_or_default(),
        )
        .unwrap_or_default()
    };
    assert_eq!(read(&cp, "plain"), MARKER);
    let made = cp.kubectl(&[
        "create",
        "configmap",
        "settings",
        "-n",
        &ns,
        &format!("--from-literal=v={MARKER}"),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let cm_raw = etcd_raw(&cp, &format!("/registry/configmaps/{ns}/settings"));
    assert!(cm_raw.starts_with(b"k8s:enc:kms:v2:certop:"));
    assert_eq!(stored_under(&cm_raw, &keks(&keys)), Some(first.clone()));
    let read_cm = |cp: &ControlPlane| {
        stdout(&cp.kubectl(&[
            "get",
            "configmap",
            "-n",
            &ns,
            "settings",
            "-o",
            "jsonpath={.data.v}",
        ]))
    };
    assert_eq!(read_cm(&cp), MARKER);

    // The operator's CA key is among the encrypted Secrets.
    cp.install_rbac();
    let op = cp.start_operator("kms", &[]);
    let ca = unique("kms-ca");
    apply(&cp, &crate::objects::ca_yaml(&ca, ""));
    assert!(
        wait_for(Duration::from_secs(60), || cp
            .kubectl(&["get", "secret", "-n", "certop-system", &format!("{ca}-ca")])
            .status
            .success()),
        "no CA key Secret: {}",
        op.log_text()
    );
    let ca_raw = etcd_raw(&cp, &format!("/registry/secrets/certop-system/{ca}-ca"));
    assert!(ca_raw.starts_with(b"k8s:enc:kms:v2:certop:"));
    assert!(
        !ca_raw.windows(11).any(|w| w == b"PRIVATE KEY"),
        "a CA key in plain text"
    );
    let ca_key = stdout(&cp.kubectl(&[
        "get",
        "secret",
        "-n",
        "certop-system",
        &format!("{ca}-ca"),
        "-o",
        "jsonpath={.data.tls\\.key}",
    ]));
    op.stop();

    // The API server survives a plugin restart: writes and reads go on.
    plugin.kill();
    let plugin = Plugin::start(&socket, &keys, &log);
    assert!(
        wait_for(Duration::from_secs(60), || cp
            .kubectl(&[
                "create",
                "secret",
                "generic",
                "after-restart",
                "-n",
                &ns,
                &format!("--from-literal=v={MARKER}")
            ])
            .status
            .success()),
        "no write after the plugin restarted"
    );
    assert_eq!(read(&cp, "after-restart"), MARKER);

    // Rotate: a new current KEK; the old one still decrypts.
    let rotated = certop(
        &["kms", "rotate", "--key-dir", keys.to_str().expect("utf-8")],
        &cp.kubeconfig,
    );
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let second = current(&keys);
    assert_ne!(second, first);
    assert_eq!(
        read(&cp, "plain"),
        MARKER,
        "a Secret under the old KEK still reads"
    );

    // Rewrite: every Secret and ConfigMap (the resources the
    // EncryptionConfiguration gives the plugin) stored again under the new
    // KEK, proven from all of etcd, then the old KEK retired.
    let rewrite = certop(
        &[
            "kms",
            "rewrite",
            "--key-dir",
            keys.to_str().expect("utf-8"),
            "--encryption-config",
            config.to_str().expect("utf-8"),
            "--etcd-endpoint",
            &cp.etcd,
            "--patience",
            "3m",
        ],
        &cp.kubeconfig,
    );
    assert!(
        rewrite.status.success(),
        "{}{}",
        stdout(&rewrite),
        stderr(&rewrite)
    );
    let said = stdout(&rewrite);
    assert!(said.contains(&format!("retired KEK {first}")), "{said}");
    assert_eq!(
        keks(&keys),
        vec![second.clone()],
        "only the current KEK is left"
    );

    // kube-apiserver restarted: its cache of data keys is gone, so each
    // object is read through the plugin, which holds only the new KEK.
    // A ConfigMap left under the retired KEK would be lost here.
    cp.kill();
    let cp = kept.start_with(&apiserver_args);
    assert_eq!(
        read_cm(&cp),
        MARKER,
        "the ConfigMap reads after the restart"
    );
    assert_eq!(
        read(&cp, "plain"),
        MARKER,
        "the Secret reads after the restart"
    );
    let listed = cp.kubectl(&["get", "configmaps,secrets", "-A"]);
    assert!(
        listed.status.success(),
        "every ConfigMap and Secret decrypts: {}",
        stderr(&listed)
    );

    // Both resources were stored again, and etcd holds them under the new KEK.
    assert!(
        said.contains(" configmaps\n") && said.contains(" secrets\n"),
        "{said}"
    );
    for key in [
        format!("/registry/secrets/{ns}/plain"),
        format!("/registry/secrets/{ns}/after-restart"),
        format!("/registry/secrets/certop-system/{ca}-ca"),
        format!("/registry/configmaps/{ns}/settings"),
    ] {
        let raw = etcd_raw(&cp, &key);
        assert!(
            raw.windows(second.len()).any(|w| w == second.as_bytes()),
            "{key} under the new KEK"
        );
        assert!(
            !raw.windows(first.len()).any(|w| w == first.as_bytes()),
            "{key} still names the old KEK"
        );
    }
    assert_eq!(read(&cp, "plain"), MARKER);
    let ca_key_after = stdout(&cp.kubectl(&[
        "get",
        "secret",
        "-n",
        "certop-system",
        &format!("{ca}-ca"),
        "-o",
        "jsonpath={.data.tls\\.key}",
    ]));
    assert_eq!(ca_key_after, ca_key, "the CA key survived intact");
    // New writes use the new KEK.
    assert!(
        cp.kubectl(&[
            "create",
            "secret",
            "generic",
            "new",
            "-n",
            &ns,
            "--from-literal=v=x"
        ])
        .status
        .success()
    );
    assert_eq!(
        stored_under(
            &etcd_raw(&cp, &format!("/registry/secrets/{ns}/new")),
            std::slice::from_ref(&second)
        ),
        Some(second)
    );

    drop(plugin);
}
