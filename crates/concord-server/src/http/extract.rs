//! What handlers take from a request (bodies with the API's errors, query strings) and the
//! URL escaping of what they put in answers, as jupyter_server (tornado, Python) writes it.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;

/// A request body read whole, with the API's JSON errors: 413 past `--max-body-size` or
/// the memory budget, 503 while the budget is taken, 400 when the connection fails.
pub struct BodyBytes(pub axum::body::Bytes);

impl<S> FromRequest<S> for BodyBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let charge = req
            .extensions()
            .get::<std::sync::Arc<crate::bodies::BodyCharge>>()
            .cloned();
        axum::body::Bytes::from_request(req, state)
            .await
            .map(BodyBytes)
            .map_err(|e| {
                if let Some(failure) = charge.and_then(|c| c.failure()) {
                    return failure.to_api_error();
                }
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Request body is larger than the server accepts (--max-body-size)",
                    )
                } else {
                    ApiError::bad_request(format!("Could not read the request body: {e}"))
                }
            })
    }
}

/// A JSON request body, parsed whatever `Content-Type` the client sent (JupyterLab sends
/// `text/plain;charset=UTF-8`), with jupyter_server's errors: 400 for bad JSON, 413 when
/// the body is larger than the configured limit.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let BodyBytes(bytes) = BodyBytes::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON in body of request: {e}")))
    }
}

/// The raw query string's parameters, decoded; absent query → empty.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// What Python's `urllib.parse.quote` leaves alone in a segment: letters, digits, `_.-~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// A path for a URL (a `Location`, a link) as jupyter_server's `url_escape` writes it: each
/// `/`-separated segment percent-encoded (UTF-8) except letters, digits and `_.-~`, so
/// `my-dir/Untitled.ipynb` stays as it is and clients comparing paths agree.
pub fn url_escape(path: &str) -> String {
    path.split('/')
        .map(|segment| utf8_percent_encode(segment, UNRESERVED).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A query-string value as Python's `urlencode` (tornado's `url_concat`) writes it: like
/// [`url_escape`], with `/` encoded too and spaces as `+`.
pub fn query_escape(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED)
        .to_string()
        .replace("%20", "+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_what_python_keeps() {
        // Expected strings from Python: "/".join(quote(p) for p in path.split("/")) and
        // urlencode({"next": value})[5:].
        assert_eq!(url_escape("my-dir/Untitled.ipynb"), "my-dir/Untitled.ipynb");
        assert_eq!(
            url_escape("a b/c~d_e*f%/é?#+&"),
            "a%20b/c~d_e%2Af%25/%C3%A9%3F%23%2B%26"
        );
        assert_eq!(
            query_escape("/lab/tree/a b-c.ipynb?x=1&y=~*"),
            "%2Flab%2Ftree%2Fa+b-c.ipynb%3Fx%3D1%26y%3D~%2A"
        );
    }
}
