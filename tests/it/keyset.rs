//! Cursor (keyset) pages of runs: walking them returns every run once, in order, with the
//! filters applied; a cursor that is not one is a 400.

use http::StatusCode;
use workflows::testing;
use workflows::{
    Error, KeysetPage, PageConfig, PageRequest, Run, RunCursor, RunFilters, RunId, RunStatus,
    repository,
};

use crate::fixtures::{at, insert_run, t0};

type Conn = diesel_async::AsyncPgConnection;

/// Twelve runs: three workflows, alternating statuses, four of them created at one instant.
async fn twelve_runs(conn: &mut Conn) -> Vec<Run> {
    let mut runs = Vec::new();
    for i in 0..12i64 {
        let workflow = ["summarize", "classify", "reasoning"][i as usize % 3];
        let status = [RunStatus::Completed, RunStatus::Failed][i as usize % 2];
        // Runs 4 to 7 share one created_at: only their ids order them.
        let created = if (4..8).contains(&i) { at(4) } else { at(i) };
        let id = insert_run(conn, workflow, status, created).await;
        runs.push(repository::find_run(conn, id).await.unwrap());
    }
    runs
}

async fn page(
    conn: &mut Conn,
    query: &str,
    after: Option<&RunCursor>,
) -> workflows::Result<KeysetPage<Run>> {
    repository::list_runs_keyset(
        conn,
        &PageConfig::default(),
        PageRequest::from_query(query)?,
        &RunFilters::from_query(query)?,
        after,
    )
    .await
}

/// Every page of a query, following the cursors through their text form, as a client does.
async fn walk(conn: &mut Conn, query: &str) -> (Vec<RunId>, usize) {
    let (mut ids, mut pages, mut after) = (Vec::new(), 0, None::<RunCursor>);
    loop {
        let page = page(conn, query, after.as_ref()).await.unwrap();
        pages += 1;
        ids.extend(page.data.iter().map(|r| r.id));
        match page.next_cursor {
            Some(cursor) => after = Some(cursor.to_string().parse().unwrap()),
            None => return (ids, pages),
        }
    }
}

/// What the same query orders by, computed in Rust: `key` then id in the same direction.
fn expected(
    runs: &[Run],
    keep: impl Fn(&Run) -> bool,
    key: impl Fn(&Run) -> (chrono::DateTime<chrono::Utc>, RunId),
    descending: bool,
) -> Vec<RunId> {
    let mut kept: Vec<&Run> = runs.iter().filter(|r| keep(r)).collect();
    kept.sort_by_key(|r| key(r));
    if descending {
        kept.reverse();
    }
    kept.iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn walking_the_pages_returns_every_run_once_newest_first() {
    let mut conn = testing::connection().await.unwrap();
    let runs = twelve_runs(&mut conn).await;
    let (ids, pages) = walk(&mut conn, "page_size=5").await;
    assert_eq!(
        ids,
        expected(&runs, |_| true, |r| (r.created_at, r.id), true)
    );
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn runs_created_at_one_instant_are_ordered_by_id_across_pages() {
    let mut conn = testing::connection().await.unwrap();
    let mut tied = Vec::new();
    for _ in 0..7 {
        tied.push(insert_run(&mut conn, "summarize", RunStatus::Completed, t0()).await);
    }
    tied.sort();
    // Pages of two cut the tie at every page boundary.
    let (ids, pages) = walk(&mut conn, "page_size=2&sort=created_at").await;
    assert_eq!(ids, tied);
    assert_eq!(pages, 4);
    let (ids, _) = walk(&mut conn, "page_size=2").await;
    assert_eq!(ids, tied.iter().rev().copied().collect::<Vec<_>>());
}

#[tokio::test]
async fn filters_and_search_apply_to_every_page() {
    let mut conn = testing::connection().await.unwrap();
    let runs = twelve_runs(&mut conn).await;
    let newest = |r: &Run| (r.created_at, r.id);
    let (ids, _) = walk(&mut conn, "page_size=2&status=failed").await;
    assert_eq!(
        ids,
        expected(&runs, |r| r.status == RunStatus::Failed, newest, true)
    );
    let (ids, _) = walk(
        &mut conn,
        "page_size=1&workflow_name=classify&sort=created_at",
    )
    .await;
    assert_eq!(
        ids,
        expected(&runs, |r| r.workflow_name == "classify", newest, false)
    );
    let (ids, _) = walk(&mut conn, "page_size=3&search=SUM&status=completed").await;
    assert_eq!(
        ids,
        expected(
            &runs,
            |r| r.workflow_name == "summarize" && r.status == RunStatus::Completed,
            newest,
            true
        )
    );
}

#[tokio::test]
async fn runs_page_by_id_in_either_direction() {
    let mut conn = testing::connection().await.unwrap();
    let runs = twelve_runs(&mut conn).await;
    let by_id = |r: &Run| (t0(), r.id);
    let (ids, pages) = walk(&mut conn, "page_size=4&sort=id").await;
    assert_eq!(ids, expected(&runs, |_| true, by_id, false));
    assert_eq!(pages, 3);
    let (ids, _) = walk(&mut conn, "page_size=5&sort=-id&workflow_name=reasoning").await;
    assert_eq!(
        ids,
        expected(&runs, |r| r.workflow_name == "reasoning", by_id, true)
    );
}

#[tokio::test]
async fn the_last_page_has_no_cursor_and_an_empty_list_is_one_page() {
    let mut conn = testing::connection().await.unwrap();
    let first = page(&mut conn, "workflow_name=nothing-has-this-name", None)
        .await
        .unwrap();
    assert!(first.data.is_empty());
    assert_eq!(first.next_cursor, None);
    let json = serde_json::to_value(&first).unwrap();
    assert_eq!(json, serde_json::json!({"data": []}));

    twelve_runs(&mut conn).await;
    // Exactly one page's worth: the page says there is no next one.
    let full = page(&mut conn, "page_size=12", None).await.unwrap();
    assert_eq!((full.data.len(), full.next_cursor), (12, None));
}

#[tokio::test]
async fn a_malformed_cursor_is_a_400_naming_it() {
    for bad in [
        "",
        "page-2",
        "desc.created_at.yesterday.x",
        "desc.status.1.2",
    ] {
        let err = bad.parse::<RunCursor>().unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(
            matches!(&err, Error::InvalidInput { parameter, value, .. }
            if parameter == "cursor" && value == bad),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("pass back the next_cursor"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_cursor_continues_only_the_sort_it_was_made_for() {
    let mut conn = testing::connection().await.unwrap();
    twelve_runs(&mut conn).await;
    let first = page(&mut conn, "page_size=2&sort=id", None).await.unwrap();
    let cursor = first.next_cursor.unwrap();
    // Without a sort, the cursor's own sort applies.
    let second = page(&mut conn, "page_size=2", Some(&cursor)).await.unwrap();
    assert!(second.data[0].id > first.data[1].id);

    let err = page(&mut conn, "page_size=2&sort=-created_at", Some(&cursor))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(
        err.to_string().starts_with(&format!(
            "invalid cursor \"{cursor}\": it was made for another sort"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn sorts_a_cursor_cannot_serve_are_a_400() {
    let mut conn = testing::connection().await.unwrap();
    for sort in ["workflow_name", "-completed_at", "-created_at,id"] {
        let err = page(&mut conn, &format!("sort={sort}"), None)
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{sort}");
        assert!(err.to_string().contains("use page numbers"), "{err}");
    }
}
