//! The Debian package's asset list (`[package.metadata.deb]` in Cargo.toml)
//! against the tree: every file it packages from the repository exists, and
//! every generated one is written by scripts/build-deb.sh. Building the
//! package itself needs a release build and cargo-deb, so it is not part of
//! the test run (`scripts/build-deb.sh`, `dpkg-deb -c`).

use std::path::Path;

fn asset_sources(manifest: &str) -> Vec<String> {
    let deb = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("Cargo.toml has [package.metadata.deb]");
    let assets = deb.split("assets = [").nth(1).expect("an assets list");
    let assets = &assets[..assets.find("\n]").expect("the end of the assets list")];
    assets
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("[\""))
        .map(|l| l[2..].split('"').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn every_packaged_file_exists_or_is_generated_by_build_deb() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let script = std::fs::read_to_string(root.join("scripts/build-deb.sh")).expect("build-deb.sh");
    let sources = asset_sources(&manifest);
    assert!(sources.len() >= 10, "assets: {sources:?}");
    for source in &sources {
        if source == "target/release/reef" {
            continue; // built by cargo, named by the convention cargo-deb requires
        }
        if let Some(generated) = source.strip_prefix("target/deb/") {
            let dir = generated.rsplit_once('/').map_or("", |(d, _)| d);
            assert!(
                script.contains(&format!("target/deb/{generated}"))
                    || (generated.ends_with("*.1")
                        && script.contains(&format!("--dir target/deb/{dir}"))),
                "build-deb.sh does not write {source}"
            );
            continue;
        }
        assert!(
            root.join(source).is_file(),
            "Cargo.toml packages {source}, which does not exist"
        );
    }
    for needed in [
        "mount-scripts/reef@.service",
        "mount-scripts/mnt-reef.mount",
        "target/deb/man/*.1",
    ] {
        assert!(
            sources.iter().any(|s| s == needed),
            "the package lacks {needed}"
        );
    }
    assert!(
        manifest.contains(r#"{ dest = "sbin/mount.fuse.reef", link_name = "mount.fuse3" }"#),
        "the package lacks the mount(8) helper link"
    );
}
