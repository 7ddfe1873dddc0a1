//! certop's own writes, as they come back through the watches. A
//! ClusterCertificate pass that writes the Secret and the status would
//! start another pass when each write comes back; that pass can only find
//! what the first one left, and costs a Secret read per certificate. The
//! resourceVersion a write returned names exactly that event, so the
//! trigger skips it and nothing else: anybody else's change, a delete, or
//! a later write by certop comes with another resourceVersion and starts
//! a pass as before. Nothing a pass decides is read from here.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct Written {
    status: Option<String>,
    secret: Option<String>,
}

/// Per ClusterCertificate, the resourceVersions of certop's last status
/// write and last Secret write.
#[derive(Default)]
pub struct OwnWrites {
    last: Mutex<HashMap<String, Written>>,
}

impl OwnWrites {
    fn update(&self, certificate: &str, set: impl FnOnce(&mut Written)) {
        if let Ok(mut last) = self.last.lock() {
            set(last.entry(certificate.to_string()).or_default());
        }
    }

    fn matches(&self, certificate: &str, get: impl FnOnce(&Written) -> Option<&String>) -> bool {
        self.last
            .lock()
            .ok()
            .and_then(|last| last.get(certificate).and_then(get).cloned())
            .is_some()
    }

    pub fn wrote_status(&self, certificate: &str, resource_version: Option<String>) {
        self.update(certificate, |w| w.status = resource_version);
    }

    pub fn wrote_secret(&self, certificate: &str, resource_version: Option<String>) {
        self.update(certificate, |w| w.secret = resource_version);
    }

    /// The ClusterCertificate at this resourceVersion is certop's last status write.
    pub fn is_own_status(&self, certificate: &str, resource_version: Option<&str>) -> bool {
        resource_version
            .is_some_and(|rv| self.matches(certificate, |w| w.status.as_ref().filter(|s| *s == rv)))
    }

    /// The Secret at this resourceVersion is certop's last write of it.
    pub fn is_own_secret(&self, certificate: &str, resource_version: Option<&str>) -> bool {
        resource_version
            .is_some_and(|rv| self.matches(certificate, |w| w.secret.as_ref().filter(|s| *s == rv)))
    }

    /// The ClusterCertificate is gone.
    pub fn forget(&self, certificate: &str) {
        if let Ok(mut last) = self.last.lock() {
            last.remove(certificate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_write_of_each_kind_is_its_own() {
        let own = OwnWrites::default();
        assert!(!own.is_own_status("a", Some("5")));
        own.wrote_status("a", Some("5".into()));
        own.wrote_secret("a", Some("4".into()));
        assert!(own.is_own_status("a", Some("5")));
        assert!(own.is_own_secret("a", Some("4")));
        // Somebody else's later change, the other kind's version, another
        // certificate, an object without a version: not ours.
        assert!(!own.is_own_status("a", Some("6")));
        assert!(!own.is_own_status("a", Some("4")));
        assert!(!own.is_own_secret("a", Some("5")));
        assert!(!own.is_own_status("b", Some("5")));
        assert!(!own.is_own_status("a", None));
        own.wrote_status("a", Some("7".into()));
        assert!(!own.is_own_status("a", Some("5")));
        own.forget("a");
        assert!(!own.is_own_status("a", Some("7")));
        assert!(!own.is_own_secret("a", Some("4")));
    }
}
