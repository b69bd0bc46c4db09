//! The web dashboard's static files, compiled into the binary (`host/ui/`: hand-written
//! HTML, CSS and JavaScript modules, no build step). `/` answers the page and `/ui/NAME` its
//! files. They hold no data and so need no token: the page asks for one and sends it with
//! its API calls, which `/api` checks as for any client.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (name under `/ui/`, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("../../ui/index.html")),
    ("style.css", CSS, include_bytes!("../../ui/style.css")),
    ("app.js", JS, include_bytes!("../../ui/app.js")),
    ("api.js", JS, include_bytes!("../../ui/api.js")),
    ("dom.js", JS, include_bytes!("../../ui/dom.js")),
    ("overview.js", JS, include_bytes!("../../ui/overview.js")),
    ("jobs.js", JS, include_bytes!("../../ui/jobs.js")),
    ("job.js", JS, include_bytes!("../../ui/job.js")),
    ("plugins.js", JS, include_bytes!("../../ui/plugins.js")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Scripts and styles come from these files only (no inline code, no other origin), so text
/// a job put in the page can never run; `connect-src 'self'` keeps the API calls same-origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Total size of the embedded files (reported by tests and the README's figure).
pub fn embedded_bytes() -> usize {
    FILES.iter().map(|(_, _, b)| b.len()).sum()
}

pub async fn index() -> Response {
    serve("index.html")
}

pub async fn asset(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some((_, mime, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return super::error::ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no dashboard file `{name}`"),
        )
        .into_response();
    };
    let mut response = (StatusCode::OK, *bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    // The files change with the binary: revalidate rather than run an old script against a
    // new API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_with_its_type_and_unknown_ones_are_not() {
        for (name, mime, _) in FILES {
            let r = serve(name);
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], *mime, "{name}");
        }
        assert_eq!(serve("../Cargo.toml").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_dashboard_stays_small() {
        // The budget is 2 MB added to the binary; hand-written files are far below.
        assert!(embedded_bytes() < 256 * 1024, "{} bytes", embedded_bytes());
    }
}
