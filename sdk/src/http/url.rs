//! Splitting a request URL into what wasi:http asks for (scheme, authority, path and query).
//! Deliberately small: the host parses the authority again and checks it against
//! `allowed_hosts`; this only refuses what could never be sent.

/// A URL split for wasi:http.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The URL without its fragment (fragments are never sent).
    pub url: String,
    pub https: bool,
    pub authority: String,
    pub path_with_query: String,
}

pub(crate) fn split(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an absolute http:// or https:// URL"))?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(format!(
            "`{url}`: only http:// and https:// URLs can be requested (got `{scheme}://`)"
        ));
    };
    let without_fragment = rest.split('#').next().unwrap_or_default();
    let end = without_fragment
        .find(['/', '?'])
        .unwrap_or(without_fragment.len());
    let (authority, path) = without_fragment.split_at(end);
    if authority.is_empty() {
        return Err(format!("`{url}` names no host"));
    }
    if authority.contains('@') {
        return Err(format!(
            "`{url}`: credentials in the URL are not supported; send them in a header \
             (for example `Authorization`)"
        ));
    }
    if let Some(bad) = without_fragment
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "`{url}` holds {bad:?}; percent-encode it (for example a space as %20)"
        ));
    }
    let path_with_query = match path.chars().next() {
        None => "/".to_owned(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_owned(),
    };
    Ok(Target {
        url: format!("{scheme}://{without_fragment}"),
        https,
        authority: authority.to_owned(),
        path_with_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scheme_authority_and_path() {
        let target = split("https://api.example.com:8443/v1/items?page=2#top").unwrap();
        assert!(target.https);
        assert_eq!(target.authority, "api.example.com:8443");
        assert_eq!(target.path_with_query, "/v1/items?page=2");
        assert_eq!(target.url, "https://api.example.com:8443/v1/items?page=2");

        let bare = split("HTTP://127.0.0.1:9000").unwrap();
        assert!(!bare.https);
        assert_eq!(bare.path_with_query, "/");
        assert_eq!(split("http://h?q=1").unwrap().path_with_query, "/?q=1");
        assert_eq!(split("http://[::1]:80/x").unwrap().authority, "[::1]:80");
    }

    #[test]
    fn refuses_what_cannot_be_sent() {
        for (url, says) in [
            ("example.com/x", "not an absolute"),
            ("file:///etc/passwd", "only http:// and https://"),
            ("https:///path", "names no host"),
            ("https://user:pw@example.com/", "credentials"),
            ("https://example.com/a b", "percent-encode"),
        ] {
            let error = split(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
        }
    }
}
