//! Empty: this crate only names the adapter crate as a dependency (see Cargo.toml).
