//! The plugin's connection to a cluster, and its errors in words: a missing
//! object is named, an unreachable server is named by its address, instead
//! of a library's struct.

use kube::{Client, Config};

use super::CliError;

/// A client and the address it talks to.
pub struct Cluster {
    pub client: Client,
    url: String,
}

impl Cluster {
    /// From the kubeconfig (or in-cluster configuration), as kubectl does.
    pub async fn connect() -> Result<Self, CliError> {
        let config = Config::infer().await.map_err(|e| {
            CliError::Invalid(format!(
                "no Kubernetes configuration: {e} (set KUBECONFIG or run inside a cluster)"
            ))
        })?;
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config)
            .map_err(|e| CliError::Invalid(format!("cannot set up a client for {url}: {e}")))?;
        Ok(Cluster { client, url })
    }

    /// A client made elsewhere (a test's fake API server), named by `url`.
    #[cfg(test)]
    pub fn with_client(client: Client, url: &str) -> Self {
        Cluster {
            client,
            url: url.to_string(),
        }
    }

    /// Turns an API error about `what` (e.g. "ClusterCertificate web") into words.
    pub fn error(&self, what: impl std::fmt::Display) -> impl FnOnce(kube::Error) -> CliError {
        let url = self.url.clone();
        move |e| describe(&url, &what.to_string(), e)
    }
}

fn describe(url: &str, what: &str, e: kube::Error) -> CliError {
    CliError::Invalid(match e {
        kube::Error::Api(s) if s.code == 404 => format!("{what} not found"),
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
            format!("{what}: not allowed ({}): {}", s.code, s.message)
        }
        kube::Error::Api(s) => format!("{what}: the API server said {} ({})", s.message, s.code),
        other => format!("cannot reach the Kubernetes API server at {url}: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_and_where() {
        let status = |code| {
            kube::Error::Api(
                kube::core::Status::failure("nope", "Reason")
                    .with_code(code)
                    .boxed(),
            )
        };
        let text = |e: CliError| e.to_string();
        assert_eq!(
            text(describe(
                "https://10.0.0.1:6443/",
                "ClusterCertificate web",
                status(404)
            )),
            "ClusterCertificate web not found"
        );
        assert!(text(describe("u", "x", status(403))).contains("not allowed (403)"));
        let unreachable = kube::Error::Service("connection refused".into());
        let message = text(describe("https://10.0.0.1:6443/", "x", unreachable));
        assert!(
            message.contains("https://10.0.0.1:6443/") && message.contains("connection refused"),
            "{message}"
        );
    }
}
