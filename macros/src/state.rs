//! `#[derive(WorkflowState)]`: a state struct's update type and how it is applied.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, Ident, Path, Result, Type};

/// How one field is updated.
enum Reducer {
    /// The update's value replaces the field's.
    Replace,
    /// The update's items extend the field (`Vec`, sets, maps: anything `Extend`).
    Extend,
    /// The update's value is handed to a function with the field.
    Function(Path),
}

/// A field of the state, and how it is updated.
struct Field<'a> {
    ident: &'a Ident,
    ty: &'a Type,
    vis: &'a syn::Visibility,
    reducer: Reducer,
}

/// Expands the derive, or reports why it cannot apply.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    match syn::parse2::<DeriveInput>(input).and_then(|input| derive(&input)) {
        Ok(tokens) => tokens,
        Err(err) => err.to_compile_error(),
    }
}

fn derive(input: &DeriveInput) -> Result<TokenStream> {
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "a workflow state cannot be generic: a workflow's runs are stored with one state type",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(Error::new(
            Span::call_site(),
            "#[derive(WorkflowState)] goes on a struct with named fields: the state is stored as a JSON object",
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(Error::new(
            data.fields.span(),
            "#[derive(WorkflowState)] goes on a struct with named fields: the state is stored as a JSON object",
        ));
    };
    let extra_derives = update_derives(&input.attrs)?;
    let mut fields = Vec::new();
    for field in &named.named {
        let ident = field
            .ident
            .as_ref()
            .ok_or_else(|| Error::new(field.span(), "a state field needs a name"))?;
        if ident == "default" {
            return Err(Error::new(
                ident.span(),
                "a state field cannot be named `default`: its update setter would hide `Default::default`",
            ));
        }
        fields.push(Field {
            ident,
            ty: &field.ty,
            vis: &field.vis,
            reducer: reducer(field)?,
        });
    }

    let state = &input.ident;
    let vis = &input.vis;
    let update = format_ident!("{}Update", state);
    let update_doc = format!(
        "An update of [`{state}`]: what a node changes. Every field is optional (a collection \
         field extended rather than replaced is empty when unchanged); set them with the \
         setters, or with a struct literal and `..Default::default()`."
    );
    let update_fields = fields.iter().map(|f| {
        let (ident, ty, vis) = (f.ident, f.ty, f.vis);
        let doc = match &f.reducer {
            Reducer::Replace => format!("The new value of `{ident}`, if it changes."),
            Reducer::Extend => format!("What is added to `{ident}` (nothing when empty)."),
            Reducer::Function(path) => format!(
                "The value handed to `{}` with `{ident}`, if any.",
                quote!(#path).to_string().replace(' ', "")
            ),
        };
        match f.reducer {
            Reducer::Extend => quote! { #[doc = #doc] #vis #ident: #ty },
            _ => quote! { #[doc = #doc] #vis #ident: ::core::option::Option<#ty> },
        }
    });
    let setters = fields.iter().map(|f| {
        let (ident, ty, vis) = (f.ident, f.ty, f.vis);
        match f.reducer {
            Reducer::Extend => {
                let doc = format!("Adds `items` to what is added to `{ident}`.");
                quote! {
                    #[doc = #doc]
                    #[must_use]
                    #vis fn #ident(mut self, items: #ty) -> Self {
                        ::core::iter::Extend::extend(&mut self.#ident, items);
                        self
                    }
                }
            }
            _ => {
                let doc = format!("Sets `{ident}` in the update.");
                quote! {
                    #[doc = #doc]
                    #[must_use]
                    #vis fn #ident(mut self, value: #ty) -> Self {
                        self.#ident = ::core::option::Option::Some(value);
                        self
                    }
                }
            }
        }
    });
    let applies = fields.iter().map(|f| {
        let ident = f.ident;
        match &f.reducer {
            Reducer::Replace => quote! {
                if let ::core::option::Option::Some(value) = update.#ident {
                    self.#ident = value;
                }
            },
            Reducer::Extend => quote! {
                ::core::iter::Extend::extend(&mut self.#ident, update.#ident);
            },
            Reducer::Function(path) => quote! {
                if let ::core::option::Option::Some(value) = update.#ident {
                    #path(&mut self.#ident, value);
                }
            },
        }
    });
    Ok(quote! {
        #[doc = #update_doc]
        #[derive(::core::default::Default, ::core::clone::Clone #(, #extra_derives)*)]
        #vis struct #update {
            #(#update_fields,)*
        }

        #[allow(dead_code)]
        impl #update {
            #(#setters)*
        }

        impl ::workflows::WorkflowState for #state {
            type Update = #update;

            fn apply(&mut self, update: #update) {
                #(#applies)*
            }
        }
    })
}

/// The reducer a field's `#[state(...)]` attribute names.
fn reducer(field: &syn::Field) -> Result<Reducer> {
    let mut found: Option<Reducer> = None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("state")) {
        attr.parse_nested_meta(|meta| {
            let next = if meta.path.is_ident("append") || meta.path.is_ident("merge") {
                Reducer::Extend
            } else if meta.path.is_ident("replace") {
                Reducer::Replace
            } else if meta.path.is_ident("reduce") {
                Reducer::Function(meta.value()?.parse()?)
            } else {
                return Err(meta.error(
                    "unknown #[state(...)] on a field; expected `append`, `merge`, `replace` or `reduce = path::to::fn`",
                ));
            };
            if found.is_some() {
                return Err(meta.error("a field has one reducer; this one is given twice"));
            }
            found = Some(next);
            Ok(())
        })?;
    }
    Ok(found.unwrap_or(Reducer::Replace))
}

/// The traits the struct's `#[state(derive(...))]` asks the update type to derive too.
fn update_derives(attrs: &[syn::Attribute]) -> Result<Vec<Path>> {
    let mut derives = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("state")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("derive") {
                meta.parse_nested_meta(|inner| {
                    derives.push(inner.path);
                    Ok(())
                })
            } else {
                Err(meta.error(
                    "unknown #[state(...)] on a struct; expected `derive(...)`, the traits its update type derives too",
                ))
            }
        })?;
    }
    Ok(derives)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(item: &str) -> String {
        expand(item.parse().unwrap()).to_string()
    }

    #[test]
    fn a_struct_gets_an_update_type_and_an_apply() {
        let out = expand_str(
            "struct Chat { topic: String, #[state(append)] log: Vec<String>, #[state(reduce = add)] n: u64 }",
        );
        assert!(out.contains("struct ChatUpdate"), "{out}");
        assert!(
            out.contains("topic : :: core :: option :: Option < String >"),
            "{out}"
        );
        assert!(out.contains("log : Vec < String >"), "{out}");
        assert!(out.contains("add (& mut self . n , value)"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn enums_tuples_generics_and_unknown_reducers_are_refused() {
        for item in [
            "enum E { A }",
            "struct T(u32);",
            "struct G<T> { t: T }",
            "struct S { #[state(sum)] n: u32 }",
            "struct S { #[state(append, merge)] n: Vec<u32> }",
            "struct S { default: u32 }",
        ] {
            assert!(expand_str(item).contains("compile_error"), "{item}");
        }
    }
}
