//! The systemd unit and `make install`, checked without a daemon and without systemd running:
//! `systemd-analyze verify` accepts the unit, `systemd-analyze security` rates it "OK", the Debian
//! package's copy matches it, and `make install` stages everything under DESTDIR.
//!
//! Needs `systemd-analyze` (Debian package `systemd`) and GNU make; a missing tool fails the test
//! with a message saying what to install, it never skips.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNIT: &str = "systemd/shotfarm.service";
const DEB_UNIT: &str = "systemd/deb/shotfarm.service";
/// Where the shipped unit expects the binary (`make install` rewrites it for other prefixes).
const UNIT_BINARY: &str = "/usr/local/bin/shotfarm";
/// Highest acceptable `systemd-analyze security` exposure: the top of its "OK" band. The unit
/// reaches 1.5 (see systemd/README.md, "Hardening"); what is left is what Chromium and the
/// captures need: the network (PrivateNetwork=, IPAddressDeny=, AF_INET/AF_INET6/AF_NETLINK
/// sockets), W^X memory for V8 (MemoryDenyWriteExecute=), /proc/cpuinfo for Debian's chromium
/// launcher (ProcSubset=), syscalls of @resources/@privileged (fd limits, thread priorities).
const MAX_EXPOSURE: f64 = 4.9;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command to completion; a tool that is not installed is a clear failure.
fn run(command: &mut Command, install_hint: &str) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed ({e}): {install_hint} \
             (scripts/install-deps.sh installs it on Debian)"
        ),
        Err(e) => panic!("cannot run `{program}`: {e}"),
    }
}

fn systemd_analyze(args: &[&str]) -> Output {
    run(
        Command::new("systemd-analyze").args(args),
        "install the Debian package `systemd`",
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The unit with its ExecStartPre=/ExecStart= pointing at the binary cargo built for these tests
/// (`verify` checks that they exist and are executable), written to `dir/shotfarm.service`.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = read(&repo().join(UNIT));
    assert!(
        unit.contains(&format!("ExecStart={UNIT_BINARY} serve ")),
        "{UNIT} no longer runs {UNIT_BINARY} serve: update this test"
    );
    let path = dir.join("shotfarm.service");
    fs::write(
        &path,
        unit.replace(UNIT_BINARY, env!("CARGO_BIN_EXE_shotfarm")),
    )
    .unwrap();
    path
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let output = systemd_analyze(&["verify", "--man=no", unit.to_str().unwrap()]);
    let report = text(&output);
    println!("systemd-analyze verify {}:\n{report}", unit.display());
    assert!(
        output.status.success(),
        "systemd-analyze verify failed ({}):\n{report}",
        output.status
    );
    // verify exits 0 even for unknown keys and unparsable values: systemd logs those and
    // "ignores" them, which would silently drop a hardening setting. Any such line fails.
    let problems: Vec<&str> = report
        .lines()
        .filter(|line| {
            [
                "Unknown key",
                "Unknown section",
                "Invalid",
                "Failed to parse",
                "ignoring",
            ]
            .iter()
            .any(|marker| line.contains(marker))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "systemd-analyze verify complains about the unit:\n{}",
        problems.join("\n")
    );
}

/// The number in "→ Overall exposure level for shotfarm.service: 1.5 OK 🙂".
fn overall_exposure(report: &str) -> Option<(f64, String)> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let mut words = line.rsplit_once(": ")?.1.split_whitespace();
    let score = words.next()?.parse().ok()?;
    Some((score, words.next().unwrap_or("").to_string()))
}

#[test]
fn the_unit_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    // --threshold takes the exposure x 10: a non-zero exit means it is above MAX_EXPOSURE.
    let threshold = format!("--threshold={}", (MAX_EXPOSURE * 10.0).round() as u32);
    let output = systemd_analyze(&[
        "security",
        "--offline=yes",
        &threshold,
        "--no-pager",
        unit.to_str().unwrap(),
    ]);
    let report = text(&output);
    let Some((score, rating)) = overall_exposure(&report) else {
        panic!("no overall exposure level in systemd-analyze security's output:\n{report}");
    };
    println!("systemd-analyze security: overall exposure {score} {rating}");
    println!(
        "remaining exposures:\n{}",
        report
            .lines()
            .filter(|l| l.starts_with('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        score <= MAX_EXPOSURE,
        "the unit's exposure is {score} {rating}, above {MAX_EXPOSURE} (\"OK\"):\n{report}"
    );
    assert!(
        output.status.success(),
        "systemd-analyze security {threshold} failed ({}):\n{report}",
        output.status
    );
}

#[test]
fn the_deb_unit_is_the_unit_with_the_binary_in_usr_bin() {
    let unit = read(&repo().join(UNIT));
    let deb = read(&repo().join(DEB_UNIT));
    assert!(
        deb == unit.replace(UNIT_BINARY, "/usr/bin/shotfarm"),
        "{DEB_UNIT} is out of date; regenerate it:\n  \
         sed 's#{UNIT_BINARY}#/usr/bin/shotfarm#g' {UNIT} > {DEB_UNIT}"
    );
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{} was not installed: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn assert_mode(path: &Path, expected: u32) {
    let actual = mode(path);
    assert_eq!(
        actual,
        expected,
        "{} has mode {actual:o}, expected {expected:o}",
        path.display()
    );
}

/// `make <target> NOBUILD=1 DESTDIR=<root> PREFIX=/usr` with the binary cargo built. CARGO=false
/// makes any attempt to build fail loudly: NOBUILD must not run cargo.
fn make(target: &str, root: &Path) -> String {
    let output = run(
        Command::new("make")
            .current_dir(repo())
            .arg("--no-print-directory")
            .arg(target)
            .arg("NOBUILD=1")
            .arg(format!("DESTDIR={}", root.display()))
            .arg("PREFIX=/usr")
            .arg(format!("BIN={}", env!("CARGO_BIN_EXE_shotfarm")))
            .arg("CARGO=false"),
        "install GNU make (Debian package `make`)",
    );
    let report = text(&output);
    assert!(
        output.status.success(),
        "make {target} failed ({}):\n{report}",
        output.status
    );
    report
}

#[test]
fn make_install_puts_everything_under_destdir() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let report = make("install", root);
    println!("make install:\n{report}");
    assert!(
        !report.contains("systemctl daemon-reload &&"),
        "a staged install (DESTDIR) must not tell to start the service:\n{report}"
    );

    let bin = root.join("usr/bin/shotfarm");
    let etc = root.join("etc/shotfarm");
    let unit_path = root.join("lib/systemd/system/shotfarm.service");
    let data = root.join("usr/share/shotfarm");
    assert_mode(&bin, 0o755);
    assert_eq!(
        fs::read(&bin).unwrap(),
        fs::read(env!("CARGO_BIN_EXE_shotfarm")).unwrap(),
        "the installed binary is not the one given as BIN"
    );
    // World-readable: the daemon runs as a transient user (DynamicUser=yes); secrets are in
    // shotfarm.env, which systemd reads as root.
    assert_mode(&etc.join("shotfarm.toml"), 0o644);
    assert_eq!(
        read(&etc.join("shotfarm.toml")),
        read(&repo().join("config/shotfarm.toml"))
    );
    assert_mode(&etc.join("shotfarm.env.example"), 0o644);
    assert!(
        !etc.join("shotfarm.env").exists(),
        "secrets are the operator's to create"
    );
    assert!(!etc.join("shotfarm.toml.dist").exists());

    assert_mode(&unit_path, 0o644);
    let unit = read(&unit_path);
    assert!(
        unit.contains(
            "\nExecStartPre=/usr/bin/shotfarm check-config --config /etc/shotfarm/shotfarm.toml\n"
        ) && unit
            .contains("\nExecStart=/usr/bin/shotfarm serve --config /etc/shotfarm/shotfarm.toml\n"),
        "the installed unit does not run /usr/bin/shotfarm:\n{unit}"
    );
    assert!(
        !unit.contains(UNIT_BINARY),
        "the installed unit still names {UNIT_BINARY}"
    );

    // Dashboards and alerts; the Grafana provisioning files when the repository has them.
    assert_mode(&data.join("dashboards/shotfarm.json"), 0o644);
    for name in ["alerts.yml"] {
        if repo().join("dashboards").join(name).exists() {
            assert_mode(&data.join("dashboards").join(name), 0o644);
        }
    }
    let provisioning = repo().join("dashboards/provisioning");
    for kind in ["dashboards", "datasources"] {
        let Ok(entries) = fs::read_dir(provisioning.join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.unwrap().file_name();
            let installed = data.join("grafana-provisioning").join(kind).join(&name);
            assert_mode(&installed, 0o644);
            assert!(
                !read(&installed).contains("/usr/local/share"),
                "{} points outside DATADIR",
                installed.display()
            );
        }
    }

    // Nothing outside DESTDIR's layout.
    for top in fs::read_dir(root).unwrap() {
        let name = top.unwrap().file_name().into_string().unwrap();
        assert!(
            ["usr", "etc", "lib"].contains(&name.as_str()),
            "make install wrote {name} at the top of DESTDIR"
        );
    }

    // A second install keeps the operator's config and puts the shipped one beside it.
    let edited = format!(
        "{}\n# edited by the operator\n",
        read(&etc.join("shotfarm.toml"))
    );
    fs::write(etc.join("shotfarm.toml"), &edited).unwrap();
    let report = make("install", root);
    println!("make install (again):\n{report}");
    assert_eq!(
        read(&etc.join("shotfarm.toml")),
        edited,
        "make install overwrote an existing config"
    );
    assert_mode(&etc.join("shotfarm.toml.dist"), 0o644);
    assert_eq!(
        read(&etc.join("shotfarm.toml.dist")),
        read(&repo().join("config/shotfarm.toml"))
    );

    // uninstall removes what install put, never the config.
    let report = make("uninstall", root);
    println!("make uninstall:\n{report}");
    for gone in [
        bin,
        unit_path,
        etc.join("shotfarm.env.example"),
        etc.join("shotfarm.toml.dist"),
        data.clone(),
    ] {
        assert!(!gone.exists(), "make uninstall left {}", gone.display());
    }
    assert_eq!(read(&etc.join("shotfarm.toml")), edited);
}
