//! The `#[workflow]` attribute and `#[derive(WorkflowState)]` of the `workflows` crate. Use
//! them through `workflows::workflow` and `workflows::WorkflowState`; their documentation is
//! there.

use proc_macro::TokenStream;

mod state;
mod workflow;

/// Registers a workflow factory at compile time. See `workflows::workflow`.
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    workflow::expand(attr.into(), item.into()).into()
}

/// Derives a workflow state's update type and how it applies. See `workflows::WorkflowState`.
#[proc_macro_derive(WorkflowState, attributes(state))]
pub fn derive_workflow_state(item: TokenStream) -> TokenStream {
    state::expand(item.into()).into()
}
