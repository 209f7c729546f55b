use serde::{Deserialize, Serialize};
use workflows::WorkflowState;

#[derive(Clone, Serialize, Deserialize, WorkflowState)]
enum Phase {
    Draft,
    Done,
}

fn main() {}
