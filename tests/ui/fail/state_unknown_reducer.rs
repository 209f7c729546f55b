use serde::{Deserialize, Serialize};
use workflows::WorkflowState;

#[derive(Clone, Serialize, Deserialize, WorkflowState)]
struct Totals {
    #[state(sum)]
    n: u64,
}

fn main() {}
