// @generated automatically by Diesel CLI.

diesel::table! {
    checkpoints (run_id) {
        run_id -> Uuid,
        state_data -> Jsonb,
        checkpoint_node -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    decisions (id) {
        id -> Uuid,
        run_id -> Uuid,
        from_node -> Text,
        to_node -> Nullable<Text>,
        predicate_name -> Nullable<Text>,
        predicate_result -> Nullable<Bool>,
        reason -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    interrupts (id) {
        id -> Uuid,
        run_id -> Uuid,
        key -> Text,
        node_name -> Text,
        iteration -> Int4,
        payload -> Jsonb,
        answer -> Nullable<Jsonb>,
        asked_at -> Timestamptz,
        answered_at -> Nullable<Timestamptz>,
        answer_schema -> Nullable<Jsonb>,
    }
}

diesel::table! {
    messages (id) {
        id -> Int8,
        run_id -> Uuid,
        topic -> Text,
        payload -> Jsonb,
        sent_at -> Timestamptz,
        received_step -> Nullable<Int4>,
    }
}

diesel::table! {
    runs (id) {
        id -> Uuid,
        workflow_name -> Text,
        status -> Text,
        params -> Nullable<Jsonb>,
        result -> Nullable<Jsonb>,
        error_message -> Nullable<Text>,
        started_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        idempotency_key -> Nullable<Text>,
        owner -> Nullable<Text>,
        lease_token -> Nullable<Uuid>,
        heartbeat_at -> Nullable<Timestamptz>,
        lease_expires_at -> Nullable<Timestamptz>,
        recoveries -> Int4,
        wake_at -> Nullable<Timestamptz>,
        wait_topic -> Nullable<Text>,
        wait_step -> Nullable<Int4>,
        submitted_by_library -> Bool,
    }
}

diesel::table! {
    stages (id) {
        id -> Uuid,
        run_id -> Uuid,
        node_name -> Text,
        iteration -> Int4,
        status -> Text,
        input_snapshot -> Nullable<Jsonb>,
        output_snapshot -> Nullable<Jsonb>,
        duration_ms -> Nullable<Int4>,
        error_message -> Nullable<Text>,
        created_at -> Timestamptz,
        state_update -> Nullable<Jsonb>,
        attempt -> Int4,
    }
}

diesel::joinable!(checkpoints -> runs (run_id));
diesel::joinable!(decisions -> runs (run_id));
diesel::joinable!(interrupts -> runs (run_id));
diesel::joinable!(messages -> runs (run_id));
diesel::joinable!(stages -> runs (run_id));

diesel::allow_tables_to_appear_in_same_query!(
    checkpoints,
    decisions,
    interrupts,
    messages,
    runs,
    stages,
);
