//! `workflows runs` and `workflows show`: reading what runs recorded.

use chrono::{DateTime, Utc};
use clap::Args;
use workflows::{
    PageConfig, PageRequest, Pool, Run, RunCursor, RunFilters, RunId, SortField, repository,
};

use crate::Outcome;
use crate::output::{out, outln};
use crate::table;

/// Which runs to list.
#[derive(Args)]
pub(crate) struct RunsArgs {
    /// Only runs in this status (pending, running, waiting, completed, failed, cancelled).
    #[arg(long)]
    status: Option<String>,
    /// Only runs of this workflow.
    #[arg(long)]
    workflow: Option<String>,
    /// Only runs whose workflow name contains this text.
    #[arg(long)]
    search: Option<String>,
    /// Sort order, e.g. -created_at,workflow_name (default: newest first).
    #[arg(long)]
    sort: Option<String>,
    /// Page number, from 1.
    #[arg(long, default_value_t = 1, conflicts_with = "cursor")]
    page: i64,
    /// Page by cursor: alone, the first page; with the cursor a page printed, the page after
    /// it. Fast at any depth; sorts by created_at or id.
    #[arg(long, alias = "after", num_args = 0..=1, default_missing_value = "")]
    cursor: Option<String>,
    /// Runs per page (at most the configured maximum).
    #[arg(long, default_value_t = 20)]
    page_size: i64,
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn took(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    match (from, to) {
        (Some(from), Some(to)) => format!("{} ms", (to - from).num_milliseconds()),
        _ => "-".to_owned(),
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

/// Prints a page of runs.
pub(crate) async fn runs(
    pool: Pool,
    config: &PageConfig,
    args: RunsArgs,
) -> workflows::Result<Outcome> {
    let filters = RunFilters {
        workflow_name: args.workflow,
        status: args.status.as_deref().map(str::parse).transpose()?,
    };
    let request = PageRequest {
        page: args.page,
        page_size: args.page_size,
        search: args.search,
        sort: args
            .sort
            .as_deref()
            .map(SortField::parse_list)
            .transpose()?
            .unwrap_or_default(),
    };
    let mut conn = pool.get().await?;
    let Some(cursor) = args.cursor else {
        let page = repository::list_runs(&mut conn, config, request, &filters).await?;
        print_runs(&page.data);
        outln!(
            "page {} of {}, {} runs",
            page.page,
            page.total_pages,
            page.total
        );
        return Ok(Outcome::Success);
    };
    let after = match cursor.trim() {
        "" => None,
        text => Some(text.parse::<RunCursor>()?),
    };
    let page =
        repository::list_runs_keyset(&mut conn, config, request, &filters, after.as_ref()).await?;
    print_runs(&page.data);
    match page.next_cursor {
        Some(next) => outln!("next page: --cursor {next}"),
        None => outln!("last page"),
    }
    Ok(Outcome::Success)
}

fn print_runs(runs: &[Run]) {
    let rows = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.workflow_name.clone(),
                r.status.to_string(),
                when(Some(r.created_at)),
                took(r.started_at, r.completed_at),
                clip(r.error_message.as_deref().unwrap_or(""), 60),
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(
            &["ID", "WORKFLOW", "STATUS", "CREATED", "TOOK", "ERROR"],
            rows
        )
    );
}

/// Prints a run, its stages and its decisions.
pub(crate) async fn show(pool: Pool, run_id: RunId) -> workflows::Result<Outcome> {
    let mut conn = pool.get().await?;
    let run = repository::find_run(&mut conn, run_id).await?;
    let stages = repository::stages(&mut conn, run_id).await?;
    let decisions = repository::decisions(&mut conn, run_id).await?;
    let interrupts = repository::interrupts(&mut conn, run_id).await?;

    outln!("run       {}", run.id);
    outln!("workflow  {}", run.workflow_name);
    outln!("status    {}", run.status);
    outln!(
        "params    {}",
        run.params
            .as_ref()
            .map_or("-".to_owned(), ToString::to_string)
    );
    outln!("created   {}", when(Some(run.created_at)));
    outln!("started   {}", when(run.started_at));
    outln!("ended     {}", when(run.completed_at));
    outln!("took      {}", took(run.started_at, run.completed_at));
    if let Some(wake_at) = run.wake_at {
        outln!("due       {}", when(Some(wake_at)));
    }
    if let Some(error) = &run.error_message {
        outln!("error     {error}");
    }
    if let Some(result) = &run.result {
        outln!("result    {result}");
    }

    outln!("\nstages");
    let rows = stages
        .iter()
        .map(|s| {
            vec![
                s.iteration.to_string(),
                s.node_name.clone(),
                s.attempt.to_string(),
                s.status.to_string(),
                s.duration_ms.map_or("-".to_owned(), |d| format!("{d} ms")),
                clip(s.error_message.as_deref().unwrap_or(""), 60),
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(
            &["STEP", "NODE", "ATTEMPT", "STATUS", "TOOK", "ERROR"],
            rows
        )
    );

    outln!("\ndecisions");
    let rows = decisions
        .iter()
        .map(|d| {
            vec![
                d.from_node.clone(),
                d.to_node.clone().unwrap_or_else(|| "(end)".to_owned()),
                d.predicate_name.clone().unwrap_or_else(|| "-".to_owned()),
                d.predicate_result.map_or("-".to_owned(), |r| r.to_string()),
                clip(d.reason.as_deref().unwrap_or(""), 70),
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(&["FROM", "TO", "PREDICATE", "RESULT", "REASON"], rows)
    );

    if !interrupts.is_empty() {
        outln!("\ninterrupts");
        let rows = interrupts
            .iter()
            .map(|i| {
                vec![
                    i.iteration.to_string(),
                    i.node_name.clone(),
                    i.key.clone(),
                    clip(&i.payload.to_string(), 50),
                    i.answer
                        .as_ref()
                        .map_or("(waiting)".to_owned(), |a| clip(&a.to_string(), 30)),
                ]
            })
            .collect();
        out!(
            "{}",
            table::render(&["STEP", "NODE", "KEY", "QUESTION", "ANSWER"], rows)
        );
    }
    Ok(Outcome::Success)
}
