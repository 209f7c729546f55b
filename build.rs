//! Rebuilds the crate when a migration is added: `embed_migrations!` reads the `migrations`
//! folder at compile time but does not itself tell Cargo to watch it for new folders.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
