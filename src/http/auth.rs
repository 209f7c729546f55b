//! Bearer-token authentication for the API: the tokens a server accepts, each read-only or
//! read-write, and the tower layer that checks every request against them.
//!
//! A request that reads (`GET`, `HEAD`) needs any accepted token; one that changes something
//! (`POST`, `DELETE`, …) needs a read-write one. No token, or one not accepted, is a 401
//! (with `WWW-Authenticate: Bearer`); a read-only token asking to change something is a 403.
//! Both answer with an [`ErrorBody`](super::ErrorBody). Tokens are compared in constant time,
//! against every accepted token each time, and never appear in a log or a `Debug` output.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use subtle::ConstantTimeEq;

use super::api_error::ApiError;
use crate::{Error, Result};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read runs, stages, decisions, states and the contract.
    ReadOnly,
    /// Everything: also execute, cancel, resume, delete, answer and send messages.
    ReadWrite,
}

/// The shortest token accepted: shorter ones are too easy to guess.
pub const MIN_TOKEN_LEN: usize = 16;

/// The bearer tokens a server accepts. Build it with [`BearerTokens::parse`] (the format of
/// a token file) or [`BearerTokens::with`], then give it to
/// [`HttpApi::auth`](super::HttpApi::auth), or use its [`layer`](BearerTokens::layer) on a
/// router of your own.
///
/// ```
/// use workflows::http::{Access, BearerTokens};
/// let tokens = BearerTokens::parse("# who may do what\nrw:0123456789abcdef0123\nro:fedcba9876543210fedc\n")?;
/// assert_eq!(tokens.len(), 2);
/// assert_eq!(format!("{tokens:?}"), "BearerTokens { read_write: 1, read_only: 1 }");
/// let short = BearerTokens::new().with("short", Access::ReadOnly).unwrap_err();
/// assert!(short.to_string().contains("at least 16 characters"));
/// # Ok::<(), workflows::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct BearerTokens {
    tokens: Arc<Vec<(Vec<u8>, Access)>>,
}

impl BearerTokens {
    /// No token yet (a server given none accepts no request).
    pub fn new() -> Self {
        BearerTokens::default()
    }

    /// These tokens and `token` with `access`. A token shorter than [`MIN_TOKEN_LEN`], or
    /// with a character outside visible ASCII, or given twice, is refused.
    pub fn with(self, token: &str, access: Access) -> Result<Self> {
        let refuse = |reason: String| {
            Err(Error::invalid_input(
                "token",
                format!("({} characters, not shown)", token.chars().count()),
                reason,
            ))
        };
        if token.len() < MIN_TOKEN_LEN {
            return refuse(format!(
                "a token must have at least {MIN_TOKEN_LEN} characters; make one with `openssl rand -hex 32`"
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return refuse(
                "a token may hold only visible ASCII characters other than a comma".to_owned(),
            );
        }
        if self.tokens.iter().any(|(t, _)| t == token.as_bytes()) {
            return refuse("this token is given twice".to_owned());
        }
        let mut tokens = (*self.tokens).clone();
        tokens.push((token.as_bytes().to_vec(), access));
        Ok(BearerTokens {
            tokens: Arc::new(tokens),
        })
    }

    /// Tokens from text: entries `rw:TOKEN` (read-write) or `ro:TOKEN` (read-only),
    /// separated by newlines or commas; blank lines and lines starting with `#` are ignored.
    /// The format of a token file and of the `WORKFLOWS_API_TOKENS` variable.
    pub fn parse(text: &str) -> Result<Self> {
        let mut tokens = BearerTokens::new();
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (i, entry) in entries.enumerate() {
            let (access, token) = match entry.split_once(':') {
                Some(("rw", token)) => (Access::ReadWrite, token),
                Some(("ro", token)) => (Access::ReadOnly, token),
                _ => {
                    return Err(Error::invalid_input(
                        "token entry",
                        format!("#{} (not shown)", i + 1),
                        "expected `rw:TOKEN` or `ro:TOKEN`",
                    ));
                }
            };
            tokens = tokens.with(token, access)?;
        }
        Ok(tokens)
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tower layer that checks every request against these tokens.
    pub fn layer(&self) -> BearerAuthLayer {
        BearerAuthLayer {
            tokens: self.clone(),
        }
    }

    /// The access of `presented`, if it is one of the tokens: compared with every token, in
    /// constant time for tokens of one length.
    fn access_of(&self, presented: &[u8]) -> Option<Access> {
        let mut found = None;
        for (token, access) in self.tokens.iter() {
            if bool::from(token.as_slice().ct_eq(presented)) {
                found = Some(*access);
            }
        }
        found
    }

    /// The answer to a request with `method` and `headers` that may not go on; `None` if it
    /// may.
    fn refusal(&self, method: &Method, headers: &HeaderMap) -> Option<Response> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(presented) = presented else {
            return Some(unauthorized(
                "this API needs a bearer token: send `Authorization: Bearer <token>`",
                None,
            ));
        };
        match self.access_of(presented.as_bytes()) {
            None => Some(unauthorized(
                "the bearer token is not one this server accepts",
                Some("invalid_token"),
            )),
            Some(Access::ReadOnly) if !reads(method) => Some(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("this token is read-only: {method} needs a read-write token"),
                )
                .into_response(),
            ),
            Some(_) => None,
        }
    }
}

impl fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let read_write = self
            .tokens
            .iter()
            .filter(|(_, a)| *a == Access::ReadWrite)
            .count();
        f.debug_struct("BearerTokens")
            .field("read_write", &read_write)
            .field("read_only", &(self.tokens.len() - read_write))
            .finish()
    }
}

/// Whether `method` only reads.
fn reads(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn unauthorized(message: &str, error: Option<&str>) -> Response {
    let challenge = match error {
        Some(error) => format!(r#"Bearer realm="workflows", error="{error}""#),
        None => r#"Bearer realm="workflows""#.to_owned(),
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message.to_owned()).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The tower layer of [`BearerTokens::layer`].
#[derive(Clone, Debug)]
pub struct BearerAuthLayer {
    tokens: BearerTokens,
}

impl<S> tower::Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// A service that lets through only requests with an accepted token (see the module).
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    inner: S,
    tokens: BearerTokens,
}

impl<S> tower::Service<Request> for BearerAuth<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<std::result::Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.tokens.refusal(request.method(), request.headers()) {
            None => Either::Left(self.inner.call(request)),
            Some(refusal) => Either::Right(ready(Ok(refusal))),
        }
    }
}

/// Adds the bearer scheme to the contract `spec`, and the 401 and 403 answers to each of its
/// operations (they come when the server was given tokens).
pub(super) fn document(spec: &mut serde_json::Value) {
    use serde_json::json;
    let refusal = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    if let Some(paths) = spec
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    {
        for operations in paths
            .values_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            for (method, operation) in operations.iter_mut() {
                let Some(responses) = operation
                    .get_mut("responses")
                    .and_then(serde_json::Value::as_object_mut)
                else {
                    continue;
                };
                responses.insert(
                    "401".to_owned(),
                    refusal("No bearer token, or one the server does not accept (when the server requires tokens)"),
                );
                if !matches!(method.as_str(), "get" | "head") {
                    responses.insert(
                        "403".to_owned(),
                        refusal("A read-only token: this needs a read-write one"),
                    );
                }
            }
        }
    }
    if let Some(root) = spec.as_object_mut() {
        let components = root.entry("components").or_insert_with(|| json!({}));
        if let Some(components) = components.as_object_mut() {
            components.insert(
                "securitySchemes".to_owned(),
                json!({"bearer": {"type": "http", "scheme": "bearer", "description": "A token given to the server (`workflows serve --tokens-file`): read-only tokens may read, read-write tokens may also execute, cancel, resume, delete, answer and send."}}),
            );
        }
        // Either a token, or none when the server runs without authentication.
        root.insert("security".to_owned(), json!([{"bearer": []}, {}]));
    }
}
