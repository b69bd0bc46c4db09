//! Pool tests (being written).
