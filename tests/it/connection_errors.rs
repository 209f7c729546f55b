//! A database that cannot be reached gives a clear error (503) within the configured
//! timeouts, never a hang.

use std::time::Duration;

use http::StatusCode;

use crate::fixtures::HANG;
use workflows::{Config, DbConfig, Error};

async fn connect(config: DbConfig) -> Error {
    match tokio::time::timeout(HANG, config.connect()).await {
        Ok(Err(err)) => err,
        Ok(Ok(_)) => panic!("connect() succeeded"),
        Err(_) => panic!("connect() hung"),
    }
}

fn quick(url: &str) -> DbConfig {
    DbConfig::new(url)
        .connect_timeout(Duration::from_millis(500))
        .wait_timeout(Duration::from_millis(500))
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let err = connect(quick("postgres://postgres@127.0.0.1:1/x")).await;
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        err.to_string().contains("could not connect to PostgreSQL"),
        "{err}"
    );
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts connections and never says a word.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let err = connect(quick(&format!("postgres://postgres@127.0.0.1:{port}/x"))).await;
    silent.abort();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        err.to_string().contains("timed out opening a connection"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let url = workflows::testing::database_url().unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    let err = connect(quick(&format!("{base}/no_such_database_here"))).await;
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(err.to_string().contains("no_such_database_here"), "{err}");
}

#[tokio::test]
async fn a_malformed_url_is_reported() {
    let err = connect(quick("not a url")).await;
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        err.to_string().contains("invalid connection string"),
        "{err}"
    );
}

#[tokio::test]
async fn a_busy_pool_answers_unavailable_after_its_wait_timeout() {
    let config = DbConfig::new(workflows::testing::database_url().unwrap())
        .max_connections(1)
        .wait_timeout(Duration::from_millis(200));
    let pool = config.connect().await.unwrap();
    let _held = pool.get().await.unwrap();
    let err: Error = match tokio::time::timeout(HANG, pool.get()).await {
        Ok(Err(err)) => err.into(),
        Ok(Ok(_)) => panic!("a second connection was handed out"),
        Err(_) => panic!("get() hung"),
    };
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        err.to_string()
            .contains("timed out waiting for a connection"),
        "{err}"
    );
}

#[test]
fn a_missing_database_url_says_how_to_get_one() {
    let err = Config::from_lookup(|_| None).unwrap_err();
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    assert!(err.to_string().contains("./scripts/dev-db"), "{err}");
}

#[test]
fn malformed_settings_name_the_variable_and_value() {
    let lookup = |bad: &'static str, value: &'static str| {
        move |name: &str| match name {
            "DATABASE_URL" => Some("postgres://localhost/x".to_owned()),
            n if n == bad => Some(value.to_owned()),
            _ => None,
        }
    };
    for (variable, value) in [
        ("WORKFLOWS_DB_MAX_CONNECTIONS", "0"),
        ("WORKFLOWS_DB_CONNECT_TIMEOUT_MS", "soon"),
        ("WORKFLOWS_DB_WAIT_TIMEOUT_MS", "-5"),
        ("WORKFLOWS_PAGE_SIZE", "500"),
        ("WORKFLOWS_MAX_PAGE_SIZE", "x"),
    ] {
        let err = Config::from_lookup(lookup(variable, value)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(variable) && text.contains(value), "{text}");
    }
}
