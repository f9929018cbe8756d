//! Embeds the gateway's published conformance resources (`profiles/*-*.json`: its
//! StructureDefinitions, ValueSets and CodeSystems) so the binary serves them offline, exactly
//! as the repository publishes them. The list is the directory itself: a profile added there is
//! served without another list to keep in step.

use std::fmt::Write;
use std::path::Path;

fn main() {
    // sqlx's migrate! embeds the migrations at compile time: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("profiles/ is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.ends_with(".json")
                && ["StructureDefinition-", "ValueSet-", "CodeSystem-"]
                    .iter()
                    .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort();
    let mut out = String::from(
        "/// `(file name, contents)` of every conformance resource in `profiles/`.\npub const EMBEDDED: &[(&str, &str)] = &[\n",
    );
    for n in &names {
        println!("cargo:rerun-if-changed={}", dir.join(n).display());
        writeln!(
            out,
            "    ({n:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/profiles/{n}\"))),"
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("conformance.rs");
    std::fs::write(dest, out).unwrap();
}
