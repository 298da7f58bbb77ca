//! Mutual TLS end to end, with certificates made by `openssl` and curl through
//! `veil client`: an edge started with `--client-ca` lets in only clients whose `--cert`
//! chains to that CA, and its rules see the certificate's name as the client's identity.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::ensure;
use support::{Client, Edge, Origin, TempDir, curl, require_tool, run_bounded};

const REQUEST: Duration = Duration::from_secs(20);

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let tool = require_tool("openssl", "openssl")?;
    let mut command = Command::new(tool);
    command.current_dir(dir).args(args);
    let out = run_bounded(command, Duration::from_secs(60))?;
    ensure!(out.code() == 0, "openssl {args:?}: {}", out.stderr);
    Ok(())
}

/// A CA named `ca` (ca.pem, ca.key) in `dir`.
fn make_ca(dir: &Path, ca: &str) -> anyhow::Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ],
    )
}

/// A client certificate with common name `name`, signed by `ca` (NAME.pem, NAME.key).
fn make_client(dir: &Path, ca: &str, name: &str) -> anyhow::Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
        ],
    )
}

/// curl through `client`'s SOCKS5 listener: (exit code, body, error line).
fn fetch(client: &Client, url: &str) -> anyhow::Result<(i32, String, String)> {
    let proxy = format!("socks5h://{}", client.socks());
    let out = curl(&["--proxy", &proxy, url], REQUEST)?;
    Ok((out.code(), out.stdout, out.stderr.trim().to_owned()))
}

#[test]
fn only_certified_clients_get_in_and_rules_see_their_names() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("mtls")?;
    let origin = Origin::start(dir.path())?;
    std::fs::write(origin.root().join("hello.txt"), "hello\n")?;
    make_ca(dir.path(), "ca")?;
    make_ca(dir.path(), "other-ca")?;
    make_client(dir.path(), "ca", "alice")?;
    make_client(dir.path(), "ca", "bob")?;
    make_client(dir.path(), "other-ca", "mallory")?;
    std::fs::write(
        dir.join("edge.toml"),
        "[[rule]]\nidentity = [\"bob\"]\naction = \"deny\"\n",
    )?;
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let edge = Edge::start(
        dir.path(),
        &[
            "--client-ca",
            &path("ca.pem"),
            "--allow-target",
            "127.0.0.0/8",
            "--config",
            &path("edge.toml"),
        ],
    )?;
    let client_with = |name: Option<&str>| -> anyhow::Result<Client> {
        let mut args = vec!["--pin".to_owned(), edge.pin()?.to_owned()];
        if let Some(name) = name {
            args.extend([
                "--cert".to_owned(),
                path(&format!("{name}.pem")),
                "--key".to_owned(),
                path(&format!("{name}.key")),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Client::start(dir.path(), edge.addr(), &args)
    };
    let url = origin.url("hello.txt");
    let alice = client_with(Some("alice"))?;
    let (code, body, _) = fetch(&alice, &url)?;
    ensure!(
        code == 0 && body == "hello\n",
        "alice: exit {code}\n{}",
        alice.diagnostics()
    );
    // bob is certified, and denied by the rule on his name: SOCKS5 reply 2.
    let bob = client_with(Some("bob"))?;
    let (code, _, error) = fetch(&bob, &url)?;
    ensure!(
        code == 97 && error.ends_with("(2)"),
        "bob: exit {code}: {error}\n{}",
        bob.diagnostics()
    );
    // No certificate, or one from another CA: no connection, SOCKS5 general failure.
    for name in [None, Some("mallory")] {
        let client = client_with(name)?;
        let (code, _, error) = fetch(&client, &url)?;
        ensure!(
            code == 97 && error.ends_with("(1)"),
            "{name:?} got through: exit {code}: {error}\n{}",
            client.diagnostics()
        );
    }
    let log = origin.access_log();
    ensure!(
        log.lines()
            .filter(|line| line.contains("/hello.txt"))
            .count()
            == 1,
        "the origin saw other requests than alice's:\n{log}"
    );
    drop(edge);
    Ok(())
}
