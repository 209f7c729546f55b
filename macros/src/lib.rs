//! The `#[workflow]` attribute of the `workflows` crate. Use it through `workflows::workflow`;
//! this crate's documentation is there.

use proc_macro::TokenStream;

mod workflow;

/// Registers a workflow factory at compile time. See `workflows::workflow`.
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    workflow::expand(attr.into(), item.into()).into()
}
