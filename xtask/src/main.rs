//! Release chores that need the clap definitions or the package layout:
//!
//! - `xtask assets [DIR]`: man pages (clap_mangen) and bash/zsh/fish completions
//!   (clap_complete) for `musterd` and `muster-agent`, into DIR (default `target/assets`).
//! - `xtask deb [--bin-dir DIR] [--out DIR] [--fast]`: the assets, then the Debian package `muster`
//!   laid out from `[package.metadata.deb]` of server/Cargo.toml (the same metadata
//!   cargo-deb reads) and built with `dpkg-deb`; the binaries are taken from `--bin-dir`
//!   (default `target/release`, built first with `cargo build --release`). `--fast`
//!   compresses with gzip -1 instead of xz: seconds instead of minutes for the test that
//!   packages debug binaries.
//!
//! See docs/packaging.md.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::CommandFactory;
use clap_complete::Shell;
use serde::Deserialize;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("assets") => {
            let dir = args
                .get(1)
                .map_or_else(|| target().join("assets"), PathBuf::from);
            assets(&dir).map(|()| println!("{}", dir.display()))
        }
        Some("deb") => deb(&args[1..]).map(|p| println!("{}", p.display())),
        _ => {
            Err("usage: xtask assets [DIR] | xtask deb [--bin-dir DIR] [--out DIR] [--fast]".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", what.display())
}

/// Man pages into DIR/man, completions into DIR/completions.
fn assets(dir: &Path) -> Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    for cmd in [
        muster_server::cli::Cli::command(),
        muster_agent::cli::Cli::command(),
    ] {
        let name = cmd.get_name().to_string();
        clap_mangen::generate_to(cmd.clone(), &man).map_err(io(&man))?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut c = cmd.clone();
            clap_complete::generate_to(shell, &mut c, &name, &completions)
                .map_err(io(&completions))?;
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Manifest {
    package: Package,
}

#[derive(Deserialize)]
struct Package {
    description: String,
    metadata: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    deb: Deb,
}

/// The part of cargo-deb's `[package.metadata.deb]` this package uses.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Deb {
    name: String,
    maintainer: String,
    extended_description: String,
    depends: String,
    section: String,
    priority: String,
    conf_files: Vec<String>,
    /// [source, destination, octal mode]; a destination ending in `/` is a directory.
    assets: Vec<[String; 3]>,
}

fn deb(args: &[String]) -> Result<PathBuf> {
    let mut bin_dir = target().join("release");
    let mut out = target().join("debian");
    let mut compress = ["-Zxz", "-z6"];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--fast" {
            compress = ["-Zgzip", "-z1"];
            continue;
        }
        let value = it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--bin-dir" => bin_dir = PathBuf::from(value?),
            "--out" => out = PathBuf::from(value?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let server = root().join("server");
    let text = std::fs::read_to_string(server.join("Cargo.toml")).map_err(io(&server))?;
    let manifest: Manifest =
        toml::from_str(&text).map_err(|e| format!("server/Cargo.toml: {e}"))?;
    let meta = manifest.package.metadata.deb;
    assets(&target().join("assets"))?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let version = env!("CARGO_PKG_VERSION");
    let stage = out.join(format!("{}_{version}_{arch}", meta.name));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(io(&stage))?;
    }
    let mut size = 0u64;
    for [src, dest, mode] in &meta.assets {
        let src = match src.strip_prefix("target/release/") {
            Some(bin) => bin_dir.join(bin),
            None => server.join(src),
        };
        let mode = u32::from_str_radix(mode, 8).map_err(|e| format!("mode {mode}: {e}"))?;
        for file in expand(&src)? {
            let to = if dest.ends_with('/') {
                stage.join(dest).join(file.file_name().expect("a file"))
            } else {
                stage.join(dest)
            };
            size += install(&file, &to, mode)?;
        }
    }
    let debian = stage.join("DEBIAN");
    std::fs::create_dir_all(&debian).map_err(io(&debian))?;
    let control = format!(
        "Package: {}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {}\nInstalled-Size: {}\nDepends: {}\nSection: {}\nPriority: {}\nDescription: {}\n {}\n",
        meta.name,
        meta.maintainer,
        size.div_ceil(1024),
        meta.depends,
        meta.section,
        meta.priority,
        manifest.package.description,
        meta.extended_description,
    );
    write(&debian.join("control"), &control)?;
    write(
        &debian.join("conffiles"),
        &(meta.conf_files.join("\n") + "\n"),
    )?;
    let deb = out.join(format!("{}_{version}_{arch}.deb", meta.name));
    output(
        Command::new("dpkg-deb")
            .args(["--root-owner-group"])
            .args(compress)
            .arg("--build")
            .arg(&stage)
            .arg(&deb),
    )?;
    // Only the package stays: target/debian is the container build's context.
    std::fs::remove_dir_all(&stage).map_err(io(&stage))?;
    Ok(deb)
}

/// The files `src` names: itself, or with a `*` in its last component, the matches.
fn expand(src: &Path) -> Result<Vec<PathBuf>> {
    let name = src.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return if src.is_file() {
            Ok(vec![src.to_path_buf()])
        } else {
            Err(format!("{} is missing (build it first)", src.display()))
        };
    };
    let dir = src.parent().expect("a directory");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{} matches nothing", src.display()));
    }
    Ok(files)
}

/// Copies `from` to `to` with `mode`; gives its size.
fn install(from: &Path, to: &Path, mode: u32) -> Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    let dir = to.parent().expect("a directory");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let n = std::fs::copy(from, to).map_err(io(from))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).map_err(io(to))?;
    Ok(n)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(io(path))
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
