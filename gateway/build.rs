//! Release links lay the code out by use (`link-layout/mod.rs` says why).
#[path = "../link-layout/mod.rs"]
mod link_layout;

fn main() {
    link_layout::apply("gateway");
}
