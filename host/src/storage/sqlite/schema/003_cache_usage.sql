-- Schema version 3: entries and bytes per cache namespace, kept by triggers, so that a cache
-- write checks its plugin's quota in O(1).

-- Bytes are key plus value, as stored (UTF-8).
CREATE TABLE cache_usage (
    ns      TEXT    PRIMARY KEY,
    entries INTEGER NOT NULL,
    bytes   INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO cache_usage (ns, entries, bytes)
    SELECT ns, count(*), sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)))
    FROM cache GROUP BY ns;

CREATE TRIGGER cache_usage_insert AFTER INSERT ON cache
BEGIN
    INSERT INTO cache_usage (ns, entries, bytes)
        VALUES (new.ns, 1, length(CAST(new.key AS BLOB)) + length(CAST(new.value AS BLOB)))
        ON CONFLICT (ns) DO UPDATE SET entries = entries + 1, bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER cache_usage_delete AFTER DELETE ON cache
BEGIN
    UPDATE cache_usage
        SET entries = entries - 1,
            bytes = bytes - length(CAST(old.key AS BLOB)) - length(CAST(old.value AS BLOB))
        WHERE ns = old.ns;
END;

CREATE TRIGGER cache_usage_update AFTER UPDATE OF value ON cache
BEGIN
    UPDATE cache_usage
        SET bytes = bytes - length(CAST(old.value AS BLOB)) + length(CAST(new.value AS BLOB))
        WHERE ns = new.ns;
END;
