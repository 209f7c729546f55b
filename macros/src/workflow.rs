//! Parsing `#[workflow(name = "...", description = "...", params = Type)]` and emitting the
//! registration, for each of the three kinds of factory:
//!
//! - `fn(graph: &mut GraphBuilder<S, D>) -> Result<(), E>`: a typed graph built once, when the
//!   registry is built; a run's initial state is `S::from(params)` with `params = P`, or
//!   `S::default()` without (and the workflow takes no params);
//! - `(async) fn(graph: &mut GraphBuilder<S, D>, params: P) -> Result<S, E>`: a typed graph
//!   built for each run from its params;
//! - `(async) fn(graph: &mut GraphBuilder, runtime: &Runtime, params: Params) -> Result<State,
//!   E>`: a JSON workflow.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Error, FnArg, ItemFn, LitStr, Result, Type};

/// The attribute's arguments, checked.
struct Args {
    name: LitStr,
    description: LitStr,
    /// The params type of a graph built once.
    params: Option<Type>,
}

/// The kinds of factory, told apart by their arguments.
enum Kind<'a> {
    /// One argument: the builder, whose type (behind `&mut`) is given.
    BuiltOnce { builder: &'a Type },
    /// Two: the builder, and the params' type.
    PerRun { builder: &'a Type, params: &'a Type },
    /// Three: a JSON workflow.
    Json,
}

const SHAPES: &str = "`fn(graph: &mut GraphBuilder<S, D>) -> Result<(), E>` (a graph built once), `(async) fn(graph: &mut GraphBuilder<S, D>, params: P) -> Result<S, E>` (a graph built for each run) or `(async) fn(graph: &mut GraphBuilder, runtime: &Runtime, params: Params) -> Result<State, E>` (a JSON workflow)";

/// Expands the attribute. On an error, the function is still emitted, so that the error is
/// the only one reported.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let err = Error::new(
                Span::call_site(),
                format!("#[workflow] goes on a function: {SHAPES}"),
            );
            let err = err.to_compile_error();
            return quote!(#err #item);
        }
    };
    let checked = parse_args(attr).and_then(|args| {
        let kind = check_fn(&func, &args)?;
        Ok(registration(&func, &args, &kind))
    });
    match checked {
        Ok(tokens) => tokens,
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#err #func)
        }
    }
}

fn parse_args(attr: TokenStream) -> Result<Args> {
    let mut name: Option<LitStr> = None;
    let mut description: Option<LitStr> = None;
    let mut params: Option<Type> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("params") {
            if params.is_some() {
                return Err(meta.error("this key is given twice in #[workflow(...)]"));
            }
            params = Some(meta.value()?.parse().map_err(|e| {
                Error::new(e.span(), "expected a type, like params = SummarizeParams")
            })?);
            return Ok(());
        }
        let slot = if meta.path.is_ident("name") {
            &mut name
        } else if meta.path.is_ident("description") {
            &mut description
        } else {
            return Err(meta.error(
                "unknown key in #[workflow(...)]; expected `name = \"...\"`, `description = \"...\"` and, for a graph built once, `params = Type`",
            ));
        };
        if slot.is_some() {
            return Err(meta.error("this key is given twice in #[workflow(...)]"));
        }
        let value = meta.value()?;
        let lit: LitStr = value.parse().map_err(|e| {
            Error::new(
                e.span(),
                "expected a string literal, like name = \"summarize\"",
            )
        })?;
        *slot = Some(lit);
        Ok(())
    });
    parser.parse2(attr)?;

    let name = name.ok_or_else(|| {
        Error::new(
            Span::call_site(),
            "missing `name = \"...\"` in #[workflow(...)]: every workflow needs a unique name",
        )
    })?;
    if let Some(problem) = name_problem(&name.value()) {
        return Err(Error::new(
            name.span(),
            format!(
                "invalid workflow name: {problem}; use a name like \"summarize\" or \"doc-review.v2\""
            ),
        ));
    }
    let description = description.ok_or_else(|| {
        Error::new(
            Span::call_site(),
            "missing `description = \"...\"` in #[workflow(...)]: say what the workflow does",
        )
    })?;
    if description.value().trim().is_empty() {
        return Err(Error::new(
            description.span(),
            "the description is empty: say what the workflow does",
        ));
    }
    Ok(Args {
        name,
        description,
        params,
    })
}

/// Why `name` cannot name a workflow. The same rule as `Registry::register` in the library:
/// names appear in URLs and on command lines.
fn name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => Some("the name is empty"),
        Some(c) if !c.is_ascii_alphabetic() => Some("the name must start with an ASCII letter"),
        _ if name.len() > 64 => Some("the name is longer than 64 characters"),
        _ if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) => {
            Some("the name may hold only ASCII letters, digits, '-', '_' and '.'")
        }
        _ => None,
    }
}

/// Checks what the types cannot: the function's shape; tells which kind of factory it is.
fn check_fn<'a>(func: &'a ItemFn, args: &Args) -> Result<Kind<'a>> {
    let sig = &func.sig;
    if !sig.generics.params.is_empty() {
        return Err(Error::new(
            sig.generics.span(),
            "a workflow factory cannot be generic: the registry calls it with fixed types",
        ));
    }
    if let Some(receiver) = sig.receiver() {
        return Err(Error::new(
            receiver.span(),
            "#[workflow] goes on a free function, not a method",
        ));
    }
    let types: Vec<&Type> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(arg) => Some(&*arg.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let builder = |ty: &'a Type| match ty {
        Type::Reference(r) if r.mutability.is_some() => Ok(&*r.elem),
        other => Err(Error::new(
            other.span(),
            "the first argument of a workflow factory is the graph builder: `graph: &mut GraphBuilder<S, D>`",
        )),
    };
    let kind = match types.as_slice() {
        [graph] => {
            if let Some(asyncness) = sig.asyncness {
                return Err(Error::new(
                    asyncness.span(),
                    "a workflow whose graph is built once is a plain `fn`: it runs when the registry is built, outside any async runtime (a factory that also takes `params: P` is built for each run, and may be async)",
                ));
            }
            Kind::BuiltOnce {
                builder: builder(graph)?,
            }
        }
        [graph, params] => {
            if let Type::Reference(r) = params {
                return Err(Error::new(
                    r.span(),
                    format!(
                        "a typed factory takes its params by value (`params: P`, a type that deserializes and has a JSON Schema), not a reference; a JSON workflow takes three arguments: {SHAPES}"
                    ),
                ));
            }
            Kind::PerRun {
                builder: builder(graph)?,
                params,
            }
        }
        [_, _, _] => Kind::Json,
        _ => {
            return Err(Error::new(
                sig.paren_token.span.join(),
                format!(
                    "a workflow factory takes 1, 2 or 3 arguments, not {}: {SHAPES}",
                    sig.inputs.len()
                ),
            ));
        }
    };
    if let (Some(params), false) = (&args.params, matches!(kind, Kind::BuiltOnce { .. })) {
        return Err(Error::new(
            params.span(),
            "`params = Type` is for a graph built once (a factory taking only the builder); this factory takes its params as an argument",
        ));
    }
    Ok(kind)
}

/// The function, plus a static in the `WORKFLOWS` slice declaring it.
fn registration(func: &ItemFn, args: &Args, kind: &Kind<'_>) -> TokenStream {
    let ident = &func.sig.ident;
    let static_name = format_ident!(
        "__WORKFLOWS_REGISTRATION_{}",
        ident.to_string().trim_start_matches("r#").to_uppercase()
    );
    let (name, description) = (&args.name, &args.description);
    // Spanned at the signature and the return type, so a wrong argument or return type is
    // reported there.
    let span = func.sig.span();
    let output_span = match &func.sig.output {
        syn::ReturnType::Default => func.sig.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    let awaited = |call: TokenStream| {
        if func.sig.asyncness.is_some() {
            quote_spanned!(span=> #call.await)
        } else {
            call
        }
    };
    let private = quote!(::workflows::__private);
    let make = match kind {
        Kind::BuiltOnce { builder } => {
            let call = quote_spanned!(span=> #ident(graph));
            let result =
                quote_spanned!(output_span=> #private::FactoryOutput::<()>::into_result(#call));
            let state = quote!(<#builder as #private::BuilderTypes>::State);
            let initial = match &args.params {
                Some(params) => quote! {
                    fn initial(params: #params) -> #state {
                        ::core::convert::From::from(params)
                    }
                },
                None => quote! {
                    fn initial(_: ::workflows::NoParams) -> #state {
                        ::core::default::Default::default()
                    }
                },
            };
            quote! {
                fn declare(graph: &mut #builder) -> ::core::result::Result<(), ::workflows::BoxError> {
                    #result
                }
                #initial
                #private::built_once(declare, initial)
            }
        }
        Kind::PerRun { builder, params } => {
            let call = awaited(quote_spanned!(span=> #ident(graph, params)));
            let result = quote_spanned!(output_span=>
                #private::FactoryOutput::<<#builder as #private::BuilderTypes>::State>::into_result(#call));
            quote! {
                fn factory<'a>(
                    graph: &'a mut #builder,
                    params: #params,
                ) -> ::workflows::BoxFuture<
                    'a,
                    ::core::result::Result<<#builder as #private::BuilderTypes>::State, ::workflows::BoxError>,
                > {
                    ::std::boxed::Box::pin(async move { #result })
                }
                #private::per_run(factory)
            }
        }
        Kind::Json => {
            let call = awaited(quote_spanned!(span=> #ident(graph, runtime, params)));
            let result = quote_spanned!(output_span=>
                #private::FactoryOutput::<::workflows::State>::into_result(#call));
            quote! {
                fn factory<'a>(
                    graph: &'a mut ::workflows::GraphBuilder,
                    runtime: &'a ::workflows::Runtime,
                    params: ::workflows::Params,
                ) -> ::workflows::BoxFuture<
                    'a,
                    ::core::result::Result<::workflows::State, ::workflows::BoxError>,
                > {
                    ::std::boxed::Box::pin(async move { #result })
                }
                #private::json(factory)
            }
        }
    };
    quote! {
        #func

        #[doc(hidden)]
        #[#private::linkme::distributed_slice(#private::WORKFLOWS)]
        #[linkme(crate = #private::linkme)]
        static #static_name: #private::WorkflowDecl = {
            fn make() -> #private::WorkflowImpl {
                #make
            }
            #private::WorkflowDecl::__at(#name, #description, make, ::core::file!(), ::core::line!())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(attr: &str, item: &str) -> String {
        expand(attr.parse().unwrap(), item.parse().unwrap()).to_string()
    }

    const FACTORY: &str = "async fn f(g: &mut GraphBuilder, r: &Runtime, p: Params) -> Result<State, BoxError> { todo!() }";

    #[test]
    fn each_kind_of_factory_is_told_by_its_arguments() {
        let once = expand_str(
            r#"name = "a", description = "b", params = P"#,
            "fn f(g: &mut GraphBuilder<S>) -> Result<(), BoxError> { todo!() }",
        );
        assert!(once.contains("built_once"), "{once}");
        assert!(once.contains("From :: from (params)"), "{once}");
        let per_run = expand_str(
            r#"name = "a", description = "b""#,
            "async fn f(g: &mut GraphBuilder<S>, p: P) -> Result<S, BoxError> { todo!() }",
        );
        assert!(per_run.contains("per_run"), "{per_run}");
        let json = expand_str(r#"name = "a", description = "b""#, FACTORY);
        assert!(json.contains(":: json (factory)"), "{json}");
    }

    #[test]
    fn a_graph_built_once_is_not_async_and_only_it_names_params() {
        let out = expand_str(
            r#"name = "a", description = "b""#,
            "async fn f(g: &mut GraphBuilder<S>) -> Result<(), BoxError> { todo!() }",
        );
        assert!(out.contains("plain `fn`"), "{out}");
        let out = expand_str(r#"name = "a", description = "b", params = P"#, FACTORY);
        assert!(out.contains("is for a graph built once"), "{out}");
    }

    #[test]
    fn a_valid_attribute_emits_the_function_and_its_registration() {
        let out = expand_str(r#"name = "summarize", description = "Sums up""#, FACTORY);
        assert!(out.contains("async fn f"), "{out}");
        assert!(out.contains("static __WORKFLOWS_REGISTRATION_F"), "{out}");
        assert!(out.contains("distributed_slice"), "{out}");
        assert!(out.contains(r#""summarize""#), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn errors_keep_the_function_and_report_once() {
        let out = expand_str(r#"description = "x""#, FACTORY);
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
        assert!(out.contains("missing `name"), "{out}");
        assert!(out.contains("async fn f"), "{out}");
        assert!(!out.contains("distributed_slice"), "{out}");
    }

    #[test]
    fn names_follow_the_registry_rule() {
        assert_eq!(name_problem("doc-review.v2"), None);
        for bad in ["", "1x", "a b", "a/b", &"x".repeat(65)] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
    }
}
