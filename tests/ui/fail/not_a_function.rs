use workflows::workflow;

#[workflow(name = "a-struct", description = "Not a function")]
struct NotAFunction;

fn main() {}
