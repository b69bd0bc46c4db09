//! Log lines, kept with the job (the last few hundred) and written to the daemon's log.
//!
//! Each level is both a function taking a message and a `format!`-style macro:
//!
//! ```
//! use spool_sdk::log;
//!
//! log::info("starting");
//! log::warn!("image is {}x{}, larger than expected", 4000, 3000);
//! ```
//!
//! Anything a plugin prints to stdout or stderr (including a panic message) is captured by
//! the host too, but only these calls carry a level.

use std::fmt;

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Details useful when debugging the plugin.
    Debug,
    /// Something happened that an operator may want to know.
    Info,
    /// Something looks wrong but the job goes on.
    Warn,
    /// Something failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Log `message` at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    crate::sys::log(level, message.as_ref());
}

/// Log at [`Level::Trace`].
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Log at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Log at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Log at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Log at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

// The macros are `#[macro_export]`ed under hidden names and re-exported here, so that they are
// used as `log::info!(..)` beside the functions of the same name (macros and functions live
// in different namespaces).
pub use crate::{
    __spool_log_debug as debug, __spool_log_error as error, __spool_log_info as info,
    __spool_log_trace as trace, __spool_log_warn as warn,
};

#[doc(hidden)]
#[macro_export]
macro_rules! __spool_log_trace {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Trace, ::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __spool_log_debug {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Debug, ::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __spool_log_info {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Info, ::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __spool_log_warn {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Warn, ::std::format!($($arg)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __spool_log_error {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Error, ::std::format!($($arg)+)) };
}

#[cfg(test)]
mod tests {
    use super::Level;
    use crate::testing::FakeHost;

    #[test]
    fn functions_and_macros_log_with_their_level() {
        let host = FakeHost::install();
        crate::log::info("plain");
        crate::log::error!("formatted {}", 42);
        assert_eq!(
            host.logs(),
            vec![
                (Level::Info, "plain".to_owned()),
                (Level::Error, "formatted 42".to_owned())
            ]
        );
    }
}
