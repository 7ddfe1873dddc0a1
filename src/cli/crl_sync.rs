//! `certop pki crl-sync`: keeps a CRL file current for consumers that read
//! a file, not a URL: etcd's `--client-crl-file` and `--peer-crl-file`
//! (re-read on every handshake). It fetches the CRL certop serves, accepts
//! it only if the CA signed it, never goes back to a lower CRL number (a
//! stale cache or a replayed CRL cannot un-revoke anything), and replaces
//! the file whole. Run it from the same timer as `pki renew`.

use std::path::PathBuf;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::CliError;
use crate::pki::{CertificateInfo, ParsedCrl, parse_crl, parse_pem_certificate};

#[derive(Debug, Args)]
pub struct CrlSyncArgs {
    /// Where certop serves the CRL: `http://certop.<namespace>.svc/crl/<ca>.crl`
    /// (plain HTTP, as RFC 5280 advises: the CRL is signed).
    #[arg(long)]
    pub url: String,
    /// The CA certificate (PEM) that must have signed the CRL.
    #[arg(long)]
    pub ca: PathBuf,
    /// The CRL file to keep (DER), e.g. /etc/kubernetes/pki/etcd/crl.der.
    #[arg(long)]
    pub out: PathBuf,
}

/// What to do with a fetched CRL, given the one the file holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The file is missing or older: write the fetched CRL.
    Replace,
    /// The file holds this CRL number already.
    Unchanged,
    /// The server offers an older CRL than the file holds: keep the file.
    Older { offered: u64, held: u64 },
}

/// Decides from the CRL numbers alone: a CRL without a number (certop
/// always writes one) counts as 0.
pub fn decide(fetched: &ParsedCrl, held: Option<&ParsedCrl>) -> Step {
    let offered = fetched.number.unwrap_or(0);
    match held.map(|h| h.number.unwrap_or(0)) {
        None => Step::Replace,
        Some(held) if held < offered => Step::Replace,
        Some(held) if held == offered => Step::Unchanged,
        Some(held) => Step::Older { offered, held },
    }
}

/// A CRL from bytes that are DER or PEM.
fn der_of(bytes: &[u8]) -> Vec<u8> {
    match pem::parse(bytes) {
        Ok(block) if block.tag() == "X509 CRL" => block.into_contents(),
        _ => bytes.to_vec(),
    }
}

async fn fetch(url: &str) -> Result<Vec<u8>, CliError> {
    if !url.starts_with("http://") {
        return Err(CliError::Invalid(format!(
            "--url {url}: only http:// is supported (the CRL is signed, so TLS adds nothing to its integrity)"
        )));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| CliError::Invalid(format!("--url {url}: {e}")))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(uri)
        .await
        .map_err(|e| CliError::Invalid(format!("cannot fetch {url}: {e}")))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| CliError::Invalid(format!("cannot read {url}: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(CliError::Invalid(format!("{url} answered {status}")));
    }
    Ok(body.to_vec())
}

pub async fn crl_sync(args: CrlSyncArgs) -> Result<(), CliError> {
    let ca_pem = std::fs::read(&args.ca).map_err(CliError::io(&args.ca))?;
    let ca: CertificateInfo = parse_pem_certificate(&ca_pem, &args.ca.display().to_string())?;
    let fetched_der = der_of(&fetch(&args.url).await?);
    let fetched = parse_crl(&fetched_der, Some(&ca)).map_err(|e| {
        CliError::Invalid(format!(
            "{}: not a CRL signed by {}: {e}; the file is left as it is",
            args.url,
            args.ca.display()
        ))
    })?;
    let held = match std::fs::read(&args.out) {
        Ok(bytes) => parse_crl(&der_of(&bytes), Some(&ca)).ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(CliError::io(&args.out)(e)),
    };
    let number = fetched.number.unwrap_or(0);
    match decide(&fetched, held.as_ref()) {
        Step::Replace => {
            super::files::write_atomically(&args.out, &fetched_der, false)?;
            println!(
                "{}: CRL number {number} ({} entries) written",
                args.out.display(),
                fetched.entries.len()
            );
            Ok(())
        }
        Step::Unchanged => {
            println!("{}: CRL number {number} is current", args.out.display());
            Ok(())
        }
        Step::Older { offered, held } => Err(CliError::Invalid(format!(
            "{} offers CRL number {offered}, older than the {held} that {} holds: kept the file (a stale cache or a replay cannot un-revoke)",
            args.url,
            args.out.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crl(number: Option<u64>) -> ParsedCrl {
        ParsedCrl {
            number,
            this_update: chrono::Utc::now(),
            next_update: None,
            entries: Vec::new(),
        }
    }

    #[test]
    fn a_crl_file_only_moves_forward() {
        assert_eq!(decide(&crl(Some(3)), None), Step::Replace);
        assert_eq!(decide(&crl(Some(3)), Some(&crl(Some(2)))), Step::Replace);
        assert_eq!(decide(&crl(Some(3)), Some(&crl(Some(3)))), Step::Unchanged);
        assert_eq!(
            decide(&crl(Some(2)), Some(&crl(Some(3)))),
            Step::Older {
                offered: 2,
                held: 3
            }
        );
        assert_eq!(
            decide(&crl(None), Some(&crl(Some(1)))),
            Step::Older {
                offered: 0,
                held: 1
            }
        );
    }

    #[test]
    fn pem_and_der_are_both_read() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let pem = pem::encode(&pem::Pem::new("X509 CRL", der.clone()));
        assert_eq!(der_of(pem.as_bytes()), der);
        assert_eq!(der_of(&der), der);
    }
}
