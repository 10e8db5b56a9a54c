//! The one reader of request bodies. Every route that takes a document — queries,
//! drill-through, analyses, searches, the Cube API's POSTs, definitions — reads it here, so
//! that a body is checked in one order everywhere:
//!
//! 1. a body the route may leave out ([`Accepts::optional`]) that is empty is no body, whatever
//!    its content type;
//! 2. its content type (415 `unsupported_media_type`), so that a client sending the wrong kind
//!    of document hears so first;
//! 3. whether it was read whole within the size limit (413 `body_too_large`; the server's
//!    `DefaultBodyLimit` stops the read, this names the error);
//! 4. whether it is UTF-8 text (400, in the route's own words: [`Accepts::not_text`]).
//!
//! A route calls [`read`] where it needs the body, after the checks of its path (an unknown
//! cube is 404 before a wrong body is 415), not as an extractor that would run first.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use lattice_engine::query::QueryError;

use crate::error::ApiError;

/// A body as axum hands it to a route: the bytes, or why they could not be read.
pub(crate) type RawBody = Result<Bytes, BytesRejection>;

/// What a route takes as its body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accepts {
    /// Content types accepted (the part before any `;`, in any case); empty: any.
    pub types: &'static [&'static str],
    /// Whether an empty body stands for none (read as empty text).
    pub optional: bool,
    /// The error of a body that is not UTF-8 text.
    pub not_text: fn(std::str::Utf8Error) -> ApiError,
}

/// A JSON document: queries, drill-through, analyses, searches.
pub(crate) const JSON: Accepts = Accepts {
    types: &["application/json"],
    optional: false,
    not_text: malformed,
};

/// A JSON document the route may go without (a named search's run options).
pub(crate) const OPTIONAL_JSON: Accepts = Accepts {
    optional: true,
    ..JSON
};

/// Media types a definition may be sent as.
pub const YAML_TYPES: &[&str] = &[
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "text/x-yaml",
];

/// A definition, as YAML.
pub(crate) const YAML: Accepts = Accepts {
    types: YAML_TYPES,
    optional: false,
    not_text: |e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("the definition is not UTF-8 text ({e})"),
        )
    },
};

/// A Cube API query document: Cube's clients are not held to a content type.
pub(crate) const ANY_JSON: Accepts = Accepts { types: &[], ..JSON };

fn malformed(e: std::str::Utf8Error) -> ApiError {
    QueryError::Malformed {
        message: format!("the body is not UTF-8 text ({e})"),
    }
    .into()
}

/// The body's text, checked in the order of the module docs; `limit` is the body limit the
/// server reads under (for the 413's message).
pub(crate) fn read(
    headers: &HeaderMap,
    body: RawBody,
    accepts: Accepts,
    limit: usize,
) -> Result<String, ApiError> {
    if accepts.optional && body.as_ref().is_ok_and(Bytes::is_empty) {
        return Ok(String::new());
    }
    check_content_type(headers, accepts.types)?;
    let bytes = body.map_err(|e| unreadable(&e, limit))?;
    String::from_utf8(Vec::from(bytes)).map_err(|e| (accepts.not_text)(e.utf8_error()))
}

/// The content type's essence must be one of `accepted` (any, when it is empty).
fn check_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    if accepted.is_empty() {
        return Ok(());
    }
    let found = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let essence = found
        .map(|f| {
            f.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if accepted.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(accepted, found))
    }
}

/// The error of a body that could not be read: 413 when it is over the limit.
fn unreadable(e: &BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::body_too_large(limit)
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("the request body could not be read: {e}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn typed(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(ct).expect("ascii"),
        );
        h
    }

    #[test]
    fn the_content_type_is_checked_before_the_text() {
        let ok = read(
            &typed("Application/JSON; charset=utf-8"),
            Ok("{}".into()),
            JSON,
            9,
        );
        assert_eq!(ok.expect("json"), "{}");
        let e = read(
            &typed("text/plain"),
            Ok(Bytes::from_static(b"\xff")),
            JSON,
            9,
        );
        assert_eq!(e.expect_err("415").code, "unsupported_media_type");
        let e = read(
            &typed("application/json"),
            Ok(Bytes::from_static(b"\xff")),
            JSON,
            9,
        );
        assert_eq!(e.expect_err("400").code, "malformed_query");
        let e = read(
            &typed("text/yaml"),
            Ok(Bytes::from_static(b"\xff")),
            YAML,
            9,
        );
        assert_eq!(e.expect_err("400").code, "bad_body");
    }

    #[test]
    fn an_optional_body_may_be_empty_without_a_type_but_not_wrong() {
        let none = read(&HeaderMap::new(), Ok(Bytes::new()), OPTIONAL_JSON, 9);
        assert_eq!(none.expect("no body"), "");
        let e = read(&HeaderMap::new(), Ok("{}".into()), OPTIONAL_JSON, 9);
        assert_eq!(e.expect_err("415").code, "unsupported_media_type");
        let any = read(&HeaderMap::new(), Ok("{}".into()), ANY_JSON, 9);
        assert_eq!(any.expect("any type"), "{}");
    }
}
