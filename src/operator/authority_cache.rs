use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::pki::{Authority, PkiError};

/// Parsed CAs, keyed by CertificateAuthority name and remembered with the
/// resourceVersion of the Secret they came from: a CA key is parsed once
/// per change of its Secret, not once per certificate.
#[derive(Default)]
pub struct AuthorityCache {
    entries: Mutex<HashMap<String, (String, Arc<Authority>)>>,
}

impl AuthorityCache {
    pub fn get_or_load(
        &self,
        ca_name: &str,
        secret_version: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Arc<Authority>, PkiError> {
        if let Ok(entries) = self.entries.lock()
            && let Some((version, authority)) = entries.get(ca_name)
            && version == secret_version
            && now < authority.certificate().not_after
        {
            return Ok(authority.clone());
        }
        let authority = Arc::new(Authority::load(cert_pem, key_pem, now)?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                ca_name.to_string(),
                (secret_version.to_string(), authority.clone()),
            );
        }
        Ok(authority)
    }

    pub fn forget(&self, ca_name: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(ca_name);
        }
    }
}
