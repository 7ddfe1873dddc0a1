//! Backup and restore of everything certop needs to resume: its resources
//! (spec and status), the CA keys, the ledger and the CRL state, and the
//! Secrets of the certificates it issued. `kubectl certop backup` and
//! `restore` (src/cli/backup.rs) do the reading and writing; what is
//! taken, the file's document, its encryption and the restore order are
//! decided here.

pub mod document;
pub mod restore_plan;
pub mod seal;
pub mod select;
#[cfg(test)]
mod written;

pub use document::{Backup, DocumentError, FORMAT, FORMAT_VERSION, Role};
