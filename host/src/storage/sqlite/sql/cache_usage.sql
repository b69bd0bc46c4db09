SELECT entries, bytes FROM cache_usage WHERE ns = ?1
