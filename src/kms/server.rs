//! The gRPC server the API server talks to over a unix socket, and the
//! client `rewrite`, the tests and the benchmark use.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::KmsError;
use super::envelope::{self, EnvelopeError};
use super::key_dir::{KeyDir, Keys};
use super::proto::key_management_service_client::KeyManagementServiceClient;
use super::proto::key_management_service_server::{
    KeyManagementService, KeyManagementServiceServer,
};
use super::proto::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, StatusRequest, StatusResponse,
};

/// The KMS v2 API version the plugin speaks.
const API_VERSION: &str = "v2";

/// The plugin: the key directory and the KEKs last loaded from it.
pub struct Plugin {
    dir: KeyDir,
    keys: RwLock<Arc<Keys>>,
}

impl Plugin {
    /// Loads the key directory; an empty one gets its first KEK.
    pub fn new(dir: KeyDir) -> Result<Self, KmsError> {
        if dir.is_empty()? {
            let id = dir.rotate(chrono::Utc::now())?;
            info!(kek = %id, dir = %dir.path().display(), "created the first key-encryption key");
        }
        let keys = dir.load()?;
        Ok(Plugin {
            dir,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    fn keys(&self) -> Arc<Keys> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the directory again (a rotation, a retirement); on failure
    /// the keys in memory stay and the error is returned for Status.
    pub fn reload(&self) -> Result<Arc<Keys>, KmsError> {
        let keys = Arc::new(self.dir.load()?);
        let previous = self.keys().current.clone();
        if keys.current != previous {
            info!(kek = %keys.current, previous = %previous, "the current key-encryption key changed");
        }
        match self.keys.write() {
            Ok(mut k) => *k = keys.clone(),
            Err(poisoned) => *poisoned.into_inner() = keys.clone(),
        }
        Ok(keys)
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> Result<(Vec<u8>, String), Status> {
        let keys = self.keys();
        let kek = keys
            .current_kek()
            .ok_or_else(|| Status::unavailable("no current key-encryption key"))?;
        let sealed = envelope::seal(&keys.current, kek, plaintext).map_err(to_status)?;
        Ok((sealed, keys.current.clone()))
    }

    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, Status> {
        let id = envelope::key_id_of(ciphertext).map_err(to_status)?;
        let mut keys = self.keys();
        if keys.get(id).is_none() {
            // Perhaps rotated or restored since the last load.
            keys = self
                .reload()
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        let kek = keys.get(id).ok_or_else(|| {
            Status::not_found(format!(
                "key-encryption key {id} is not in {}: it was retired or never existed here",
                self.dir.path().display()
            ))
        })?;
        envelope::open(ciphertext, kek).map_err(to_status)
    }

    /// Health as Status reports it: the key directory loads and the
    /// current KEK seals and opens.
    pub fn health(&self) -> (String, String) {
        let reloaded = self.reload();
        let keys = self.keys();
        let healthz = match reloaded {
            Err(e) => e.to_string(),
            Ok(_) => match self.encrypt(b"healthz").and_then(|(c, _)| self.decrypt(&c)) {
                Ok(p) if p == b"healthz" => "ok".to_string(),
                Ok(_) => "the current KEK does not round-trip".to_string(),
                Err(e) => e.message().to_string(),
            },
        };
        (healthz, keys.current.clone())
    }
}

fn to_status(e: EnvelopeError) -> Status {
    match e {
        EnvelopeError::Random => Status::internal(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

#[tonic::async_trait]
impl KeyManagementService for Arc<Plugin> {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let (healthz, key_id) = self.health();
        if healthz != "ok" {
            warn!(%healthz, "unhealthy");
        }
        Ok(Response::new(StatusResponse {
            version: API_VERSION.into(),
            healthz,
            key_id,
        }))
    }

    async fn encrypt(
        &self,
        request: Request<EncryptRequest>,
    ) -> Result<Response<EncryptResponse>, Status> {
        let (ciphertext, key_id) = self.as_ref().encrypt(&request.get_ref().plaintext)?;
        Ok(Response::new(EncryptResponse {
            ciphertext,
            key_id,
            annotations: Default::default(),
        }))
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let plaintext = self.as_ref().decrypt(&request.get_ref().ciphertext)?;
        Ok(Response::new(DecryptResponse { plaintext }))
    }
}

/// Serves on `socket` until `shutdown` resolves. A stale socket from an
/// earlier run is replaced; anything else at that path (a file, a
/// directory, a symlink) is refused and left as it is. The socket is 0600.
pub async fn serve(
    socket: &Path,
    plugin: Arc<Plugin>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), KmsError> {
    let err = |source| KmsError::Socket {
        path: socket.to_path_buf(),
        source,
    };
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(socket).map_err(err)?;
        }
        Ok(_) => return Err(KmsError::NotASocket(socket.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(socket).map_err(err)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    info!(socket = %socket.display(), kek = %plugin.keys().current, "KMS v2 plugin serving");
    let result = Server::builder()
        .add_service(KeyManagementServiceServer::new(plugin))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| KmsError::Grpc(e.to_string()));
    let _ = std::fs::remove_file(socket);
    result
}

/// A client of a plugin's unix socket.
pub async fn connect(socket: &Path) -> Result<KeyManagementServiceClient<Channel>, KmsError> {
    let path: PathBuf = socket.to_path_buf();
    let channel = Endpoint::try_from("http://kms.local")
        .map_err(|e| KmsError::Grpc(e.to_string()))?
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| KmsError::Socket {
            path: socket.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(KeyManagementServiceClient::new(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_what_is_wrong_and_decrypt_refuses_what_it_cannot_open() {
        let tmp = tempfile::tempdir().expect("tmp");
        let plugin = Plugin::new(KeyDir::open(tmp.path()).expect("dir")).expect("plugin");
        let (healthz, first) = plugin.health();
        assert_eq!(healthz, "ok");
        let (sealed, id) = plugin.encrypt(b"seed").expect("encrypt");
        assert_eq!(id, first);
        assert_eq!(plugin.decrypt(&sealed).expect("decrypt"), b"seed");
        assert_eq!(
            plugin.decrypt(&sealed[..10]).expect_err("truncated").code(),
            tonic::Code::InvalidArgument
        );
        // A rotation is picked up by the next status check; old ciphertexts still open.
        let second = KeyDir::open(tmp.path())
            .expect("dir")
            .rotate(chrono::Utc::now())
            .expect("rotate");
        assert_eq!(plugin.health(), ("ok".to_string(), second.clone()));
        assert_eq!(plugin.decrypt(&sealed).expect("old KEK"), b"seed");
        // The current KEK's file lost: unhealthy, with the reason, and the
        // keys in memory keep serving.
        std::fs::remove_file(tmp.path().join(format!("{second}.kek"))).expect("remove");
        let (healthz, _) = plugin.health();
        assert!(
            healthz.contains(&second) && healthz.contains("not in"),
            "{healthz}"
        );
        // A retired KEK's ciphertext is refused by name.
        KeyDir::open(tmp.path()).expect("dir");
        std::fs::remove_file(tmp.path().join(format!("{first}.kek"))).expect("remove");
        std::fs::write(tmp.path().join(format!("{second}.kek")), [9u8; 32]).expect("restore");
        plugin.reload().expect("reload");
        let refused = plugin.decrypt(&sealed).expect_err("retired");
        assert_eq!(refused.code(), tonic::Code::NotFound);
        assert!(refused.message().contains(&first), "{}", refused.message());
    }

    #[tokio::test]
    async fn a_socket_path_that_is_not_a_socket_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().expect("tmp");
        let keys = tmp.path().join("keys");
        std::fs::create_dir(&keys).expect("keys");
        let plugin = Arc::new(Plugin::new(KeyDir::open(&keys).expect("dir")).expect("plugin"));
        let file = tmp.path().join("precious.txt");
        std::fs::write(&file, b"keep me").expect("write");
        let refused = serve(&file, plugin.clone(), async {})
            .await
            .expect_err("a regular file");
        assert!(matches!(refused, KmsError::NotASocket(_)), "{refused}");
        assert_eq!(std::fs::read(&file).expect("still there"), b"keep me");
        // A stale socket from an earlier run is replaced.
        let stale = tmp.path().join("kms.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        serve(&stale, plugin, async {})
            .await
            .expect("stale socket replaced");
    }
}
