//! How a service's release binary is linked (included by each service's
//! `build.rs`): its code laid out in the order `link-layout/<service>.order`
//! gives, and its relative relocations packed.
//!
//! Why: much of a service's resident memory is its own code, and the kernel
//! maps a binary's code in 64 KiB runs around each page it touches. Left to
//! the linker, the functions a service runs are spread over the whole text,
//! so nearly all of it ends up resident. Placed together (the order file
//! lists them, hottest first), only about that much is. Packed relocations
//! (`DT_RELR`) shrink the table the dynamic loader reads at start-up from
//! about 600 KiB to a few KiB. BENCHMARKS.md (*Code laid out by use*) has
//! what each saves.
//!
//! Only for release builds on `x86_64-unknown-linux-gnu` with its default
//! linker, rust-lld (since Rust 1.90), which takes `--symbol-ordering-file`;
//! a build that names another linker (`RUSTC_LINKER`, `-C linker`,
//! `-fuse-ld`, `linker-features`) gets neither option. Packed relocations
//! also need glibc 2.36 or newer where the binary is built, and then where
//! it runs. `ASYNC_MICRO_LINK_LAYOUT=off` turns both off. An order file
//! that no longer matches the build (other dependency versions or
//! features, another toolchain: symbol names carry hashes of both) changes
//! nothing but the memory; `scripts/symbol-order.py` writes them afresh and
//! `--check` says how much of each still matches.

use std::{env, path::Path, process::Command};

/// Prints the link arguments for `service`'s binary (see the module's doc).
pub fn apply(service: &str) {
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let layout = Path::new(&manifest_dir).join("../link-layout");
    println!("cargo:rerun-if-changed={}", layout.join("mod.rs").display());
    println!("cargo:rerun-if-env-changed=ASYNC_MICRO_LINK_LAYOUT");

    let release = env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let target = env::var("TARGET").unwrap_or_default();
    let off = env::var("ASYNC_MICRO_LINK_LAYOUT").is_ok_and(|value| value == "off");
    if !release || target != "x86_64-unknown-linux-gnu" || off || another_linker() {
        return;
    }
    let order = layout.join(format!("{service}.order"));
    if order.exists() {
        println!("cargo:rerun-if-changed={}", order.display());
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names of functions this build does not have (another feature
        // set, or code since removed) are expected; lld would warn on each.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    } else {
        // A missing file would count as changed on every build: watch the
        // directory for it to appear instead.
        println!("cargo:rerun-if-changed={}", layout.display());
    }
    if env::var("HOST").is_ok_and(|host| host == target) && glibc_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the build names a linker of its own, which may not take
/// rust-lld's options (GNU ld has no `--symbol-ordering-file`).
fn another_linker() -> bool {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    env::var_os("RUSTC_LINKER").is_some()
        || flags.split('\x1f').any(|flag| {
            ["linker", "-fuse-ld", "link-self-contained"]
                .iter()
                .any(|option| flag.contains(option))
        })
}

/// Whether the build machine's glibc reads packed relocations (2.36+).
fn glibc_has_relr() -> bool {
    let Ok(output) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text
        .trim()
        .trim_start_matches("glibc ")
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (2, 36)
}
