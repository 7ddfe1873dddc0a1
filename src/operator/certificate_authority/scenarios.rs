//! The CA controller against the in-memory API server.
