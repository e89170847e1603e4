//! The Debian package's asset list (`[package.metadata.deb]` in Cargo.toml)
//! against the tree: every file it packages from the repository exists, and
//! every generated one is written by scripts/build-deb.sh; and the package
//! that script builds (from the dev binary, with cargo-deb) installs what
//! the README says, checked with `dpkg-deb -c`.

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

/// Whether `cargo deb` runs here; without it the package test is skipped,
/// unless REEF_REQUIRE_DEB=1 (scripts/test.sh installs cargo-deb and sets it).
fn cargo_deb_available() -> bool {
    let ok = std::process::Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("REEF_REQUIRE_DEB").as_deref() != Ok("1"),
            "cargo-deb is not installed (scripts/test.sh installs it)"
        );
        eprintln!("cargo-deb not installed: skipping the package build (cargo install cargo-deb)");
    }
    ok
}

/// Builds the package with scripts/build-deb.sh from this checkout (the dev
/// binary, so the test waits for no release build) and checks what it
/// installs with `dpkg-deb`: the binary (which runs), the mount(8) helper
/// link, the man pages, the completions, the systemd unit and examples.
#[test]
fn build_deb_packages_the_binary_helper_link_man_pages_and_systemd_examples() {
    if !cargo_deb_available() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("tempdir");
    let run = std::process::Command::new("bash")
        .arg(root.join("scripts/build-deb.sh"))
        .arg("--fast")
        .arg("--output")
        .arg(out.path())
        .env("REEF_DEB_PROFILE", "dev")
        // The binary under test, which `cargo test` has built.
        .env("REEF_DEB_NO_BUILD", "1")
        .output()
        .expect("run build-deb.sh");
    assert!(
        run.status.success(),
        "build-deb.sh failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let debs: Vec<_> = std::fs::read_dir(out.path())
        .expect("output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(
        debs.len(),
        1,
        "one package in {}: {debs:?}",
        out.path().display()
    );
    let deb = &debs[0];
    let dpkg = |args: &[&str]| {
        let o = std::process::Command::new("dpkg-deb")
            .args(args)
            .arg(deb)
            .output()
            .expect("run dpkg-deb");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    // Each line of `dpkg-deb -c`: mode owner size date time path [-> target].
    let listing = dpkg(&["-c"]);
    let entries: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            Some((fields.first()?.to_string(), fields.get(5..)?.join(" ")))
        })
        .collect();
    let find = |path: &str| {
        entries
            .iter()
            .find(|(_, p)| *p == path || p.starts_with(&format!("{path} -> ")))
            .unwrap_or_else(|| panic!("the package lacks {path}:\n{listing}"))
    };
    let (mode, _) = find("./usr/bin/reef");
    assert_eq!(mode, "-rwxr-xr-x", "the binary is executable");
    let (mode, link) = find("./sbin/mount.fuse.reef");
    assert!(mode.starts_with('l'), "a symbolic link: {mode}");
    assert!(link.ends_with("-> mount.fuse3"), "{link}");
    for path in [
        "./usr/share/man/man1/reef.1.gz",
        "./usr/share/man/man1/reef-mount.1.gz",
        "./usr/share/man/man1/reef-import.1.gz",
        "./usr/share/bash-completion/completions/reef",
        "./usr/share/zsh/vendor-completions/_reef",
        "./usr/share/fish/vendor_completions.d/reef.fish",
        "./usr/lib/systemd/system/reef@.service",
        "./usr/share/doc/reef/examples/mnt-reef.mount",
        "./usr/share/doc/reef/examples/mnt-reef.automount",
        "./usr/share/doc/reef/examples/fstab.example",
    ] {
        let (mode, _) = find(path);
        assert_eq!(mode, "-rw-r--r--", "{path}");
    }

    let control = dpkg(&["-f"]);
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends in:\n{control}"));
    assert!(depends.contains("fuse3"), "{depends}");

    // What it installs runs: unpack it and ask the binary its version.
    let unpacked = tempfile::tempdir().expect("tempdir");
    let x = std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(unpacked.path())
        .status()
        .expect("dpkg-deb -x");
    assert!(x.success());
    let version = std::process::Command::new(unpacked.path().join("usr/bin/reef"))
        .arg("--version")
        .output()
        .expect("run the packaged reef");
    assert!(version.status.success());
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        String::from_utf8_lossy(&version.stdout)
    );
    let unit =
        std::fs::read_to_string(unpacked.path().join("usr/lib/systemd/system/reef@.service"))
            .expect("unit");
    assert!(unit.contains("ExecStart="), "{unit}");
}
