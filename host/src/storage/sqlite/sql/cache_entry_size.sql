SELECT length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) FROM cache WHERE ns = ?1 AND key = ?2
