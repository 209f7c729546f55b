//! Parsing `#[workflow(name = "...", description = "...")]` and emitting the registration.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Error, ItemFn, LitStr, Result};

/// The attribute's arguments, checked.
struct Args {
    name: LitStr,
    description: LitStr,
}

/// Expands the attribute. On an error, the function is still emitted, so that the error is
/// the only one reported.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let err = Error::new(
                Span::call_site(),
                "#[workflow] goes on a function: `async fn name(graph: &mut GraphBuilder, runtime: &Runtime, params: Params) -> Result<State, E>`",
            );
            let err = err.to_compile_error();
            return quote!(#err #item);
        }
    };
    match parse_args(attr).and_then(|args| check_fn(&func).map(|()| args)) {
        Ok(args) => registration(&func, &args),
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#err #func)
        }
    }
}

fn parse_args(attr: TokenStream) -> Result<Args> {
    let mut name: Option<LitStr> = None;
    let mut description: Option<LitStr> = None;
    let parser = syn::meta::parser(|meta| {
        let slot = if meta.path.is_ident("name") {
            &mut name
        } else if meta.path.is_ident("description") {
            &mut description
        } else {
            return Err(meta.error(
                "unknown key in #[workflow(...)]; expected `name = \"...\"` and `description = \"...\"`",
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
    Ok(Args { name, description })
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

/// Checks what the types cannot: the function's shape.
fn check_fn(func: &ItemFn) -> Result<()> {
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
    if sig.inputs.len() != 3 {
        return Err(Error::new(
            sig.paren_token.span.join(),
            format!(
                "a workflow factory takes 3 arguments, not {}: `(graph: &mut GraphBuilder, runtime: &Runtime, params: Params)`",
                sig.inputs.len()
            ),
        ));
    }
    Ok(())
}

/// The function, plus a static in the `WORKFLOWS` slice pointing at a wrapper around it.
fn registration(func: &ItemFn, args: &Args) -> TokenStream {
    let ident = &func.sig.ident;
    let static_name = format_ident!(
        "__WORKFLOWS_REGISTRATION_{}",
        ident.to_string().trim_start_matches("r#").to_uppercase()
    );
    let (name, description) = (&args.name, &args.description);
    // Spanned at the signature and the return type, so a wrong argument or return type is
    // reported there.
    let span = func.sig.span();
    let call = if func.sig.asyncness.is_some() {
        quote_spanned!(span=> #ident(graph, runtime, params).await)
    } else {
        quote_spanned!(span=> #ident(graph, runtime, params))
    };
    let output_span = match &func.sig.output {
        syn::ReturnType::Default => func.sig.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    let result =
        quote_spanned!(output_span=> ::workflows::__private::FactoryOutput::into_result(#call));
    quote! {
        #func

        #[doc(hidden)]
        #[::workflows::__private::linkme::distributed_slice(::workflows::__private::WORKFLOWS)]
        #[linkme(crate = ::workflows::__private::linkme)]
        static #static_name: ::workflows::WorkflowDef = {
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
            ::workflows::WorkflowDef::__at(#name, #description, factory, ::core::file!(), ::core::line!())
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
