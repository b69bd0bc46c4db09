//! The Lua scripts, compiled into the binary. Each job script is `lua/lib.lua` (shared helpers
//! and the calling convention) followed by its own file; each file's header says what it
//! takes and returns. `redis::Script` sends EVALSHA and loads the script on NOSCRIPT, so a
//! restarted or failed-over Redis needs nothing from us.

use redis::Script;
use std::sync::LazyLock;

macro_rules! job_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/lib.lua"),
                "\n",
                include_str!($file)
            ))
        });
    };
}

macro_rules! plain_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!($file)));
    };
}

job_script!(ENQUEUE, "lua/enqueue.lua");
job_script!(CLAIM, "lua/claim.lua");
job_script!(RENEW, "lua/renew.lua");
job_script!(PROGRESS, "lua/progress.lua");
job_script!(COMPLETE, "lua/complete.lua");
job_script!(FAIL, "lua/fail.lua");
job_script!(RELEASE, "lua/release.lua");
job_script!(CANCEL, "lua/cancel.lua");
job_script!(REPLAY, "lua/replay.lua");
job_script!(PROMOTE, "lua/promote.lua");
job_script!(REAP, "lua/reap.lua");
job_script!(SWEEP, "lua/sweep.lua");
job_script!(DELETE, "lua/delete.lua");
job_script!(STATS, "lua/stats.lua");
job_script!(LIST, "lua/list.lua");
job_script!(IMPORT, "lua/import.lua");
job_script!(EVENT, "lua/event.lua");
job_script!(CTL, "lua/ctl.lua");
job_script!(SCHEDULE, "lua/schedule.lua");

/// A cache script: `lua/cache_lib.lua` (the entry, the expiry hash and the namespace's
/// account, given as KEYS) followed by its own file; none of lib.lua.
macro_rules! cache_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/cache_lib.lua"),
                "\n",
                include_str!($file)
            ))
        });
    };
}

cache_script!(CACHE_GET, "lua/cache_get.lua");
cache_script!(CACHE_SET, "lua/cache_set.lua");
cache_script!(CACHE_DELETE, "lua/cache_delete.lua");
cache_script!(CACHE_INCR, "lua/cache_incr.lua");
cache_script!(CACHE_USAGE, "lua/cache_usage.lua");
plain_script!(CACHE_PURGE, "lua/cache_purge.lua");
