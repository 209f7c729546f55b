//! Compile-time behaviour of `#[workflow]`: what compiles, and the error for each mistake.
//! Regenerate the expected `.stderr` files with `TRYBUILD=overwrite cargo test --test ui`
//! and review them.

#[test]
fn workflow_attribute() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
