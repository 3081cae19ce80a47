//! The command line: `check`, `openapi`, `--help`/`--version`, config discovery, env overrides.

use std::process::{Command, Output};

fn proxyfn(args: &[&str], dir: &std::path::Path, envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_proxyfn"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("PROXYFN_CONFIG")
        .env_remove("PORT");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn dir_with_config(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxyfn.toml"), toml).unwrap();
    dir
}

#[test]
fn check_accepts_the_shipped_example_config() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = proxyfn(&["check"], root, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("proxyfn.toml: OK"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn check_lists_every_problem_with_its_key_path_and_exits_2() {
    let dir = dir_with_config(
        r#"
        [upstreams.users]
        url = "http://127.0.0.1:9001"
        [upstreams.orders]
        url = "http://127.0.0.1:9002"
        [[routes]]
        path = "/a"
        upstream = "users"
        [[routes]]
        path = "/b"
        response = { status = 700 }
        [[routes]]
        path = "/c"
        upstream = "userz"
        "#,
    );
    let output = proxyfn(&["check"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(r#"routes[2].upstream: unknown upstream "userz" (known: orders, users)"#),
        "{stderr}"
    );
    assert!(stderr.contains("routes[1].response.status"), "{stderr}");
}

#[test]
fn an_unknown_key_is_an_error_not_a_silently_ignored_setting() {
    let dir = dir_with_config("[[routes]]\npath = \"/a\"\nresponse = {}\nauht = [\"jwt:main\"]\n");
    let output = proxyfn(&["check"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("routes[0].auht") && stderr.contains("unknown field"),
        "{stderr}"
    );
}

#[test]
fn environment_variables_override_file_keys() {
    let dir = dir_with_config("[server]\ntimeout = \"5s\"\n");
    let output = proxyfn(
        &["check"],
        dir.path(),
        &[("PROXYFN_SERVER__TIMEOUT", "soon")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("server.timeout") && stderr.contains("PROXYFN_SERVER__TIMEOUT"),
        "{stderr}"
    );

    let output = proxyfn(
        &["check"],
        dir.path(),
        &[("PROXYFN_SERVER__TIMEOUT", "10s")],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn config_is_found_by_flag_then_env_then_working_directory_then_built_in() {
    let empty = tempfile::tempdir().unwrap();
    let output = proxyfn(&["check"], empty.path(), &[]);
    assert!(output.status.success());
    assert!(
        text(&output.stdout).contains("built-in default"),
        "{}",
        text(&output.stdout)
    );

    let elsewhere = dir_with_config("[[routes]]\npath = \"/x\"\nresponse = {}\n");
    let path = elsewhere.path().join("proxyfn.toml");
    let output = proxyfn(
        &["check"],
        empty.path(),
        &[("PROXYFN_CONFIG", path.to_str().unwrap())],
    );
    assert!(
        text(&output.stdout).contains("(1 routes"),
        "{}",
        text(&output.stdout)
    );

    let output = proxyfn(
        &["check", "--config", "/nonexistent/proxyfn.toml"],
        empty.path(),
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("does not exist"));
}

#[test]
fn serve_with_an_invalid_config_exits_2_without_serving() {
    let dir = dir_with_config("[server]\nlisten = \"nowhere\"\n");
    let output = proxyfn(&["serve"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("server.listen"));
}

#[test]
fn help_and_version_answer_as_users_expect() {
    let dir = tempfile::tempdir().unwrap();
    let output = proxyfn(&["--version"], dir.path(), &[]);
    assert_eq!(
        text(&output.stdout).trim(),
        format!("proxyfn {}", env!("CARGO_PKG_VERSION"))
    );
    let output = proxyfn(&["--help"], dir.path(), &[]);
    let help = text(&output.stdout);
    for word in ["serve", "check", "openapi", "--config"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn openapi_prints_a_document_with_the_configured_routes() {
    let dir =
        dir_with_config("[[routes]]\npath = \"/items/{id}\"\nmethods = [\"GET\"]\nresponse = {}\n");
    let output = proxyfn(&["openapi"], dir.path(), &[]);
    assert!(output.status.success());
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["paths"]["/items/{id}"]["get"]["parameters"][0]["name"],
        "id"
    );
    assert!(document["paths"]["/health"]["get"].is_object());
}

#[test]
fn the_checked_in_openapi_document_matches_proxyfn_toml() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = proxyfn(&["openapi"], root, &[]);
    let generated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let checked_in: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("openapi/openapi.json")).unwrap())
            .unwrap();
    assert_eq!(
        generated, checked_in,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
    crate::docs::assert_valid_openapi_31(&checked_in);
}

/// The `cargo lambda build` command of the README, as one line.
fn readme_lambda_build() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme
        .find("cargo lambda build")
        .expect("the README shows how to build the function");
    readme[start..]
        .lines()
        .scan(true, |more, line| {
            let keep = *more;
            *more = line.trim_end().ends_with('\\');
            keep.then(|| line.trim_end().trim_end_matches('\\').trim().to_owned())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn flag_values<'c>(command: &'c str, flag: &str) -> Vec<&'c str> {
    let words: Vec<&str> = command.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == flag)
        .map(|pair| pair[1])
        .collect()
}

#[test]
fn the_documented_lambda_package_holds_what_proxyfn_toml_needs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let command = readme_lambda_build();
    let includes = flag_values(&command, "--include");
    assert!(includes.contains(&"proxyfn.toml"), "{command}");

    // serverless.yml deploys the artifact the command writes.
    let lambda_dir = flag_values(&command, "--lambda-dir");
    assert_eq!(lambda_dir, ["target/lambda/arm64"], "{command}");
    let serverless = std::fs::read_to_string(root.join("serverless.yml")).unwrap();
    assert!(
        serverless.contains("arch: arm64")
            && serverless
                .contains("artifact: target/lambda/${self:custom.arch}/proxyfn/bootstrap.zip"),
        "serverless.yml's artifact is not the README's target/lambda/arm64/proxyfn/bootstrap.zip"
    );
    assert!(
        serverless.contains(&format!("--include {}", includes.join(" --include "))),
        "serverless.yml's build comment includes the same files as the README"
    );

    // What the zip holds, laid out as Lambda does in /var/task, initializes.
    let task = tempfile::tempdir().unwrap();
    for include in &includes {
        let from = root.join(include);
        let to = task.path().join(include);
        if from.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            for entry in std::fs::read_dir(&from).unwrap() {
                let entry = entry.unwrap().path();
                std::fs::copy(&entry, to.join(entry.file_name().unwrap())).unwrap();
            }
        } else {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    let config = task.path().join("proxyfn.toml");
    let output = proxyfn(
        &["check"],
        task.path(),
        &[("PROXYFN_CONFIG", config.to_str().unwrap())],
    );
    assert!(
        output.status.success(),
        "a function packaged as the README says fails its init: {}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn health_answers_0_for_a_healthy_gateway_and_1_for_none() {
    let gateway = crate::helpers::Process::start("").await;
    let dir = dir_with_config(&format!(
        "[server]\nlisten = \"0.0.0.0:{}\"\n",
        gateway.port
    ));
    let output = proxyfn(&["health"], dir.path(), &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let closed = crate::helpers::closed_port().await;
    let dir = dir_with_config(&format!("[server]\nlisten = \"127.0.0.1:{closed}\"\n"));
    let output = proxyfn(&["health"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("cannot connect"),
        "{}",
        text(&output.stderr)
    );
}
