//! `sqlx::migrate!` embeds the migrations: rebuild when they change. Release
//! links lay the code out by use (`link-layout/mod.rs` says why).
#[path = "../link-layout/mod.rs"]
mod link_layout;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    link_layout::apply("backend");
}
