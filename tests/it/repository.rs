//! The read repository: listing, filtering, searching, sorting and paging runs; one run; its
//! stages and decisions.

use http::StatusCode;
use workflows::testing;
use workflows::{
    Error, PageConfig, PageRequest, RunFilters, RunId, RunStatus, SortField, repository,
};

use crate::fixtures::{at, insert_decision, insert_run, insert_stage, unknown_run};

/// Five runs of three workflows, created a minute apart (index = minutes after t0).
async fn five_runs(conn: &mut diesel_async::AsyncPgConnection) -> Vec<RunId> {
    let mut ids = Vec::new();
    for (i, (workflow, status)) in [
        ("summarize", RunStatus::Completed),
        ("classify", RunStatus::Failed),
        ("summarize", RunStatus::Running),
        ("reasoning", RunStatus::Completed),
        ("summarize", RunStatus::Failed),
    ]
    .into_iter()
    .enumerate()
    {
        ids.push(insert_run(conn, workflow, status, at(i as i64)).await);
    }
    ids
}

fn ids(page: &workflows::PageResult<workflows::Run>) -> Vec<RunId> {
    page.data.iter().map(|r| r.id).collect()
}

async fn list(
    conn: &mut diesel_async::AsyncPgConnection,
    query: &str,
) -> workflows::Result<workflows::PageResult<workflows::Run>> {
    repository::list_runs(
        conn,
        &PageConfig::default(),
        PageRequest::from_query(query)?,
        &RunFilters::from_query(query)?,
    )
    .await
}

#[tokio::test]
async fn runs_are_listed_newest_first_by_default() {
    let mut conn = testing::connection().await.unwrap();
    let runs = five_runs(&mut conn).await;
    let page = list(&mut conn, "").await.unwrap();
    assert_eq!(ids(&page), runs.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(
        (page.total, page.page, page.page_size, page.total_pages),
        (5, 1, 20, 1)
    );
}

#[tokio::test]
async fn pages_split_the_list_and_count_the_whole() {
    let mut conn = testing::connection().await.unwrap();
    let runs = five_runs(&mut conn).await;
    let page = list(&mut conn, "page=2&page_size=2&sort=created_at")
        .await
        .unwrap();
    assert_eq!(ids(&page), [runs[2], runs[3]]);
    assert_eq!(
        (page.total, page.page, page.page_size, page.total_pages),
        (5, 2, 2, 3)
    );
}

#[tokio::test]
async fn a_page_past_the_end_is_empty_with_the_true_total() {
    let mut conn = testing::connection().await.unwrap();
    five_runs(&mut conn).await;
    let page = list(&mut conn, "page=9&page_size=2").await.unwrap();
    assert!(page.data.is_empty());
    assert_eq!((page.total, page.page, page.total_pages), (5, 9, 3));
}

#[tokio::test]
async fn out_of_range_page_numbers_are_normalised() {
    let mut conn = testing::connection().await.unwrap();
    five_runs(&mut conn).await;
    let page = list(&mut conn, "page=-3&page_size=100000").await.unwrap();
    assert_eq!((page.page, page.page_size, page.data.len()), (1, 100, 5));
    let page = list(&mut conn, "page=0&page_size=0").await.unwrap();
    assert_eq!((page.page, page.page_size), (1, 20));
    let page = list(&mut conn, &format!("page={}", i64::MAX))
        .await
        .unwrap();
    assert!(page.data.is_empty());
}

#[tokio::test]
async fn an_empty_table_gives_one_empty_page() {
    let mut conn = testing::connection().await.unwrap();
    let page = list(&mut conn, "workflow_name=nothing-has-this-name")
        .await
        .unwrap();
    assert!(page.data.is_empty());
    assert_eq!((page.total, page.total_pages), (0, 1));
    let json = serde_json::to_value(&page).unwrap();
    assert_eq!(json["data"], serde_json::json!([]));
}

#[tokio::test]
async fn filters_select_by_workflow_and_status() {
    let mut conn = testing::connection().await.unwrap();
    let runs = five_runs(&mut conn).await;
    let page = list(&mut conn, "workflow_name=summarize&sort=created_at")
        .await
        .unwrap();
    assert_eq!(ids(&page), [runs[0], runs[2], runs[4]]);
    let page = list(&mut conn, "status=failed&sort=created_at")
        .await
        .unwrap();
    assert_eq!(ids(&page), [runs[1], runs[4]]);
    let page = list(&mut conn, "status=failed&workflow_name=summarize")
        .await
        .unwrap();
    assert_eq!(ids(&page), [runs[4]]);
    assert_eq!(page.total, 1);
}

#[tokio::test]
async fn empty_filters_count_as_absent() {
    let mut conn = testing::connection().await.unwrap();
    five_runs(&mut conn).await;
    let page = list(&mut conn, "status=&workflow_name=&search=")
        .await
        .unwrap();
    assert_eq!(page.total, 5);
}

#[tokio::test]
async fn a_nul_character_in_filters_built_in_code_is_a_400_naming_it() {
    let mut conn = testing::connection().await.unwrap();
    let config = PageConfig::default();
    let filters = RunFilters {
        workflow_name: Some("sum\0marize".into()),
        ..RunFilters::default()
    };
    let err = repository::list_runs(&mut conn, &config, PageRequest::new(1, 20), &filters)
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(
        err.to_string().starts_with("invalid workflow_name"),
        "{err}"
    );
    let search = PageRequest {
        search: Some("a\0".into()),
        ..PageRequest::new(1, 20)
    };
    for keyset in [false, true] {
        let err = if keyset {
            repository::list_runs_keyset(
                &mut conn,
                &config,
                search.clone(),
                &RunFilters::default(),
                None,
            )
            .await
            .map(|_| ())
            .unwrap_err()
        } else {
            repository::list_runs(&mut conn, &config, search.clone(), &RunFilters::default())
                .await
                .map(|_| ())
                .unwrap_err()
        };
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{err}");
        assert!(err.to_string().starts_with("invalid search"), "{err}");
    }
    // The connection is still usable: nothing reached PostgreSQL.
    assert_eq!(list(&mut conn, "").await.unwrap().total, 0);
}

#[tokio::test]
async fn an_unknown_status_filter_is_a_400_naming_it() {
    let err = RunFilters::from_query("status=done;drop").unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains(r#""done;drop""#), "{err}");
}

#[tokio::test]
async fn sorting_by_several_fields_breaks_ties_in_order() {
    let mut conn = testing::connection().await.unwrap();
    let runs = five_runs(&mut conn).await;
    let page = list(&mut conn, "sort=workflow_name,-created_at")
        .await
        .unwrap();
    assert_eq!(ids(&page), [runs[1], runs[3], runs[4], runs[2], runs[0]]);
    let page = list(&mut conn, "sort=-status,created_at").await.unwrap();
    // running > failed > completed, as text.
    assert_eq!(ids(&page), [runs[2], runs[1], runs[4], runs[0], runs[3]]);
}

#[tokio::test]
async fn rows_with_equal_sort_keys_page_in_one_stable_order() {
    let mut conn = testing::connection().await.unwrap();
    let mut all = Vec::new();
    for _ in 0..7 {
        all.push(insert_run(&mut conn, "same", RunStatus::Pending, at(0)).await);
    }
    let mut seen = Vec::new();
    for page in 1..=4 {
        let q = format!("workflow_name=same&sort=created_at&page_size=2&page={page}");
        seen.extend(ids(&list(&mut conn, &q).await.unwrap()));
    }
    all.sort();
    assert_eq!(seen, all, "ties are ordered by id, each row exactly once");
}

#[tokio::test]
async fn unknown_sort_fields_are_a_400_and_never_reach_sql() {
    let mut conn = testing::connection().await.unwrap();
    for sort in ["id;drop table runs", "(select 1)", "params", "nope"] {
        let query = format!("sort={}", sort.replace(' ', "+"));
        let err = list(&mut conn, &query).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{sort}: {err:?}");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains(sort), "{err}");
    }
    // The connection is still usable: nothing was sent, so the transaction is not aborted.
    assert_eq!(list(&mut conn, "").await.unwrap().page, 1);
}

#[tokio::test]
async fn malformed_numbers_are_a_400_naming_the_value() {
    for query in ["page=abc", "page_size=ten", "page=1e3"] {
        let err = PageRequest::from_query(query).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let value = query.split('=').nth(1).unwrap();
        assert!(err.to_string().contains(value), "{err}");
    }
}

#[tokio::test]
async fn search_matches_workflow_names_case_insensitively() {
    let mut conn = testing::connection().await.unwrap();
    let runs = five_runs(&mut conn).await;
    let page = list(&mut conn, "search=SUMM&sort=created_at")
        .await
        .unwrap();
    assert_eq!(ids(&page), [runs[0], runs[2], runs[4]]);
    let page = list(&mut conn, "search=ass").await.unwrap();
    assert_eq!(ids(&page), [runs[1]]);
}

#[tokio::test]
async fn search_treats_like_wildcards_as_literal_text() {
    let mut conn = testing::connection().await.unwrap();
    let percent = insert_run(&mut conn, "100%-sure", RunStatus::Pending, at(0)).await;
    let underscore = insert_run(&mut conn, "snake_case", RunStatus::Pending, at(1)).await;
    let backslash = insert_run(&mut conn, r"back\slash", RunStatus::Pending, at(2)).await;
    insert_run(&mut conn, "plain", RunStatus::Pending, at(3)).await;
    insert_run(&mut conn, "snakeXcase", RunStatus::Pending, at(4)).await;

    let search = |text: &str| {
        let mut request = PageRequest::new(1, 100);
        request.search = Some(text.to_owned());
        request
    };
    let found = |page: workflows::PageResult<workflows::Run>| ids(&page);
    let config = PageConfig::default();
    let none = RunFilters::default();
    assert_eq!(
        found(
            repository::list_runs(&mut conn, &config, search("%"), &none)
                .await
                .unwrap()
        ),
        [percent]
    );
    assert_eq!(
        found(
            repository::list_runs(&mut conn, &config, search("_"), &none)
                .await
                .unwrap()
        ),
        [underscore]
    );
    assert_eq!(
        found(
            repository::list_runs(&mut conn, &config, search(r"\"), &none)
                .await
                .unwrap()
        ),
        [backslash]
    );
    // Through a query string too: %25 is an encoded '%'.
    assert_eq!(
        ids(&list(&mut conn, "search=%25").await.unwrap()),
        [percent]
    );
}

#[tokio::test]
async fn sort_fields_can_be_given_in_code() {
    let mut conn = testing::connection().await.unwrap();
    let runs = five_runs(&mut conn).await;
    let mut request = PageRequest::new(1, 2);
    request.sort = vec![SortField::asc("created_at")];
    let page = repository::list_runs(
        &mut conn,
        &PageConfig::default(),
        request,
        &RunFilters::default(),
    )
    .await
    .unwrap();
    assert_eq!(ids(&page), [runs[0], runs[1]]);
}

#[tokio::test]
async fn page_sizes_follow_the_configuration() {
    let mut conn = testing::connection().await.unwrap();
    five_runs(&mut conn).await;
    let config = PageConfig::default().default_page_size(2).max_page_size(3);
    let page = repository::list_runs(
        &mut conn,
        &config,
        PageRequest::default(),
        &RunFilters::default(),
    )
    .await
    .unwrap();
    assert_eq!((page.data.len(), page.page_size), (2, 2));
    let page = repository::list_runs(
        &mut conn,
        &config,
        PageRequest::new(1, 50),
        &RunFilters::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (page.data.len(), page.page_size, page.total_pages),
        (3, 3, 2)
    );
}

#[tokio::test]
async fn listing_outside_a_transaction_reads_one_snapshot() {
    // Not in a test transaction: list_runs opens its own read-only transaction.
    let schema = testing::IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let runs = five_runs(&mut conn).await;
    let page = list(&mut conn, "page_size=2").await.unwrap();
    assert_eq!(ids(&page), [runs[4], runs[3]]);
    assert_eq!(page.total, 5);
    drop(conn);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn find_run_returns_the_run() {
    let mut conn = testing::connection().await.unwrap();
    let runs = five_runs(&mut conn).await;
    let run = repository::find_run(&mut conn, runs[1]).await.unwrap();
    assert_eq!(run.id, runs[1]);
    assert_eq!(run.workflow_name, "classify");
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.created_at, at(1));
}

#[tokio::test]
async fn an_unknown_run_is_a_404_naming_it() {
    let mut conn = testing::connection().await.unwrap();
    let id = unknown_run();
    let err = repository::find_run(&mut conn, id).await.unwrap_err();
    assert!(matches!(err, Error::RunNotFound { id: missing } if missing == id));
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert_eq!(err.to_string(), format!("run {id} not found"));
}

#[tokio::test]
async fn a_malformed_run_id_is_a_400_naming_it() {
    let err = Error::from("not-a-uuid".parse::<RunId>().unwrap_err());
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        err.to_string(),
        r#"invalid run id "not-a-uuid": not a UUID"#
    );
}

#[tokio::test]
async fn stages_come_in_the_order_they_started() {
    let mut conn = testing::connection().await.unwrap();
    let run = insert_run(&mut conn, "summarize", RunStatus::Completed, at(0)).await;
    let other = insert_run(&mut conn, "summarize", RunStatus::Completed, at(0)).await;
    insert_stage(&mut conn, run, "summarize", 2, at(2)).await;
    insert_stage(&mut conn, run, "fetch", 1, at(1)).await;
    insert_stage(&mut conn, run, "publish", 3, at(3)).await;
    insert_stage(&mut conn, other, "fetch", 1, at(1)).await;

    let stages = repository::stages(&mut conn, run).await.unwrap();
    let order: Vec<_> = stages
        .iter()
        .map(|s| (s.node_name.as_str(), s.iteration))
        .collect();
    assert_eq!(order, [("fetch", 1), ("summarize", 2), ("publish", 3)]);
    assert!(stages.iter().all(|s| s.run_id == run));
    assert_eq!(
        stages[0].input_snapshot,
        Some(serde_json::json!({"i": 1}).into())
    );
    assert_eq!(stages[0].duration_ms, Some(5));
}

#[tokio::test]
async fn stages_started_at_one_instant_follow_their_iteration() {
    let mut conn = testing::connection().await.unwrap();
    let run = insert_run(&mut conn, "loop", RunStatus::Completed, at(0)).await;
    for (node, iteration) in [("c", 3), ("a", 1), ("b", 2)] {
        insert_stage(&mut conn, run, node, iteration, at(1)).await;
    }
    let stages = repository::stages(&mut conn, run).await.unwrap();
    let order: Vec<_> = stages.iter().map(|s| s.iteration).collect();
    assert_eq!(order, [1, 2, 3]);
}

#[tokio::test]
async fn decisions_come_in_the_order_they_were_made() {
    let mut conn = testing::connection().await.unwrap();
    let run = insert_run(&mut conn, "summarize", RunStatus::Completed, at(0)).await;
    insert_decision(&mut conn, run, "b", None, at(2)).await;
    insert_decision(&mut conn, run, "a", Some("b"), at(1)).await;
    let decisions = repository::decisions(&mut conn, run).await.unwrap();
    let order: Vec<_> = decisions
        .iter()
        .map(|d| (d.from_node.as_str(), d.to_node.as_deref()))
        .collect();
    assert_eq!(order, [("a", Some("b")), ("b", None)]);
    assert_eq!(decisions[0].predicate_name.as_deref(), Some("always"));
    assert_eq!(decisions[0].predicate_result, Some(true));
}

#[tokio::test]
async fn a_run_without_stages_or_decisions_has_empty_lists() {
    let mut conn = testing::connection().await.unwrap();
    let run = insert_run(&mut conn, "summarize", RunStatus::Pending, at(0)).await;
    assert!(repository::stages(&mut conn, run).await.unwrap().is_empty());
    assert!(
        repository::decisions(&mut conn, run)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn stages_and_decisions_of_an_unknown_run_are_a_404() {
    let mut conn = testing::connection().await.unwrap();
    let id = unknown_run();
    let err = repository::stages(&mut conn, id).await.unwrap_err();
    assert!(matches!(err, Error::RunNotFound { .. }), "{err:?}");
    let err = repository::decisions(&mut conn, id).await.unwrap_err();
    assert!(matches!(err, Error::RunNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn the_repository_works_through_a_pool() {
    let pool = testing::pool().await.unwrap();
    let run = {
        let mut conn = pool.get().await.unwrap();
        insert_run(&mut conn, "pooled", RunStatus::Pending, at(0)).await
    };
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        repository::find_run(&mut conn, run)
            .await
            .unwrap()
            .workflow_name,
        "pooled"
    );
}
