//! What the controllers keep in the API server besides their own objects:
//! the sharded ledger of what each CA issued and revoked, CRLs (signed,
//! verified, published, served), the cache of CA keys, and the copies of
//! the certificate Secrets certop just wrote.

pub(crate) mod authority_cache;
pub(crate) mod crl;
pub(crate) mod ledger_store;
pub(crate) mod written_secrets;
