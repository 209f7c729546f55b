//! The PostgreSQL functions the library's statements call, declared for Diesel.
//!
//! **One clock.** Every timestamp the library writes is `clock_timestamp()`: the time the
//! row is written, the same clock as the columns' defaults, so that a run's `created_at`
//! comes before its `started_at` and its last decision before its `completed_at`. (A run
//! inserted already started, with its first stage, takes both its `created_at` and its
//! `started_at` from `statement_timestamp()`: one instant, before every row the statement
//! writes, where two calls of `clock_timestamp()` in one row could come out in either
//! order.) Lease
//! expiry is *compared* with `now()` (the statement's start, a little earlier): it is stable
//! within a statement, so the partial indexes on those columns can be searched with it, and
//! it errs on the side of a lease still holding.

use diesel::sql_types::Uuid as SqlUuid;

diesel::define_sql_function! {
    /// The database's current time, as each row is written.
    fn clock_timestamp() -> Timestamptz;
}

diesel::operator_allowed!(clock_timestamp, Add, add);

diesel::define_sql_function! {
    /// The time the current statement started.
    fn statement_timestamp() -> Timestamptz;
}

diesel::define_sql_function! {
    /// The time the current statement's transaction started, typed as a timestamp with time
    /// zone so that intervals can be subtracted from it: for comparisons.
    #[sql_name = "now"]
    fn db_now() -> Timestamptz;
}

diesel::operator_allowed!(db_now, Sub, sub);

diesel::define_sql_function! {
    /// A random UUID, made by the database: a fresh lease token per row.
    fn gen_random_uuid() -> SqlUuid;
}
