//! Embeds the bundled plugins (`target/plugins/{file,noop}.wasm`, built by
//! `make plugins`) so that `builtin:file` works from the binary alone.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = manifest.join("../target/plugins");
    let mut code = String::from(
        "/// Bundled plugins: (name, wasm bytes if built).\npub static BUILTINS: &[(&str, Option<&[u8]>)] = &[\n",
    );
    for name in ["file", "noop"] {
        let path = dir.join(format!("{name}.wasm"));
        println!("cargo:rerun-if-changed={}", path.display());
        if path.exists() {
            code.push_str(&format!(
                "    (\"{name}\", Some(include_bytes!({:?}))),\n",
                path.display().to_string()
            ));
        } else {
            code.push_str(&format!("    (\"{name}\", None),\n"));
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("builtin.rs");
    if let Err(e) = std::fs::write(&out, code) {
        panic!("cannot write {}: {e}", out.display());
    }
}
