//! The committed `include/veil.h` is what cbindgen makes of this crate today. A stale
//! header fails here; `VEIL_BLESS_HEADER=1 cargo test -p veil-ffi --test header` rewrites
//! it.

use std::path::Path;

#[test]
fn committed_header_matches_the_source() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("bindings/c/cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_src(crate_dir.join("src/lib.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");

    let path = crate_dir.join("include/veil.h");
    if std::env::var_os("VEIL_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("writing include/veil.h");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "bindings/c/include/veil.h is stale: regenerate it with \
         `VEIL_BLESS_HEADER=1 cargo test -p veil-ffi --test header` and commit it"
    );
}
