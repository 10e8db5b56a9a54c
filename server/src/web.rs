//! The explorer: the web application of `web/` (built into `web/dist` by `npm run build`),
//! embedded in the binary and served at `/` (its `index.html`) and `/assets/<file>`.
//!
//! The assets carry no data: the page asks the API for everything, with the key a person
//! types, so these routes are open like `/health`. `serve --web-dir DIR` serves the files of
//! `DIR` instead (for working on the page without rebuilding the server).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;

/// `web/dist`, as built when the server was compiled.
#[derive(rust_embed::Embed)]
#[folder = "../web/dist"]
struct Assets;

/// Where the files come from.
#[derive(Debug, Clone)]
enum Source {
    Embedded,
    Folder(PathBuf),
}

/// `GET /` and `GET /assets/{file}`, from the embedded assets or from `dir`.
pub(crate) fn router(dir: Option<PathBuf>) -> Router {
    let source = Arc::new(dir.map_or(Source::Embedded, Source::Folder));
    Router::new()
        .route("/", get(index))
        .route("/assets/{*file}", get(asset))
        .with_state(source)
}

async fn index(State(source): State<Arc<Source>>) -> Response {
    serve(&source, "index.html")
}

async fn asset(State(source): State<Arc<Source>>, UrlPath(file): UrlPath<String>) -> Response {
    // index.html lives at `/`; every other file of the folder at `/assets/<file>`.
    serve(&source, &file)
}

/// Total bytes of the embedded assets, and how many files (the README states the size).
pub fn embedded_size() -> (usize, usize) {
    Assets::iter()
        .filter_map(|name| Assets::get(&name))
        .fold((0, 0), |(bytes, files), f| {
            (bytes + f.data.len(), files + 1)
        })
}

fn serve(source: &Source, name: &str) -> Response {
    let found = match source {
        Source::Embedded => Assets::get(name).map(|f| f.data.into_owned()),
        Source::Folder(dir) => safe_join(dir, name).and_then(|p| std::fs::read(p).ok()),
    };
    let Some(bytes) = found else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            if name == "index.html" {
                "the explorer was not built into this server (web/dist is empty): run `npm ci && npm run build` in web/ and build again".to_string()
            } else {
                format!("no asset {name:?}; the explorer's files are at /assets/")
            },
        )
        .into_response();
    };
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    // The page is small and changes with the server: browsers check again each time.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Everything the page loads comes from this server: no CDN, no inline script.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

/// `dir/name` when `name` is a plain relative path inside `dir` (no `..`, no root).
fn safe_join(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| dir.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_serves_only_paths_inside_it() {
        let dir = Path::new("/srv/web");
        assert_eq!(safe_join(dir, "app.js"), Some(dir.join("app.js")));
        assert_eq!(safe_join(dir, "img/a.png"), Some(dir.join("img/a.png")));
        assert_eq!(safe_join(dir, "../etc/passwd"), None);
        assert_eq!(safe_join(dir, "/etc/passwd"), None);
        assert_eq!(safe_join(dir, "a/../../b"), None);
    }
}
