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
        stderr.contains(
            r#"proxyfn.toml:14: routes[2] (/c).upstream: unknown upstream "userz" (known: orders, users)"#
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("proxyfn.toml:11: routes[1] (/b).response.status"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_key_is_an_error_not_a_silently_ignored_setting() {
    let dir = dir_with_config("[[routes]]\npath = \"/a\"\nresponse = {}\nauht = [\"jwt:main\"]\n");
    let output = proxyfn(&["check"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            r#"proxyfn.toml:4: routes[0] (/a).auht: unknown key "auht"; did you mean "auth"?"#
        ),
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

const MANY_PROBLEMS: &str = r#"[server]
timout = "5s"
workers = "two"

[upstreams.users]
url = "http://127.0.0.1:9001"
timeout = "soon"

[[routes]]
path = "/a/{x}"
response = {}

[[routes]]
path = "/a/{y}"
upstream = "userz"
methods = ["GET", "FETCH ME"]
"#;

#[test]
fn check_lists_every_problem_of_a_file_in_one_run_with_its_line() {
    let dir = dir_with_config(MANY_PROBLEMS);
    let output = proxyfn(&["check"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    for expected in [
        r#"proxyfn.toml:2: server.timout: unknown key "timout"; did you mean "timeout"?"#,
        r#"proxyfn.toml:3: server.workers: must be a whole number, not the string "two""#,
        r#"proxyfn.toml:7: upstreams.users.timeout: invalid duration "soon"; use e.g. "250ms", "30s", "1m""#,
        r#"proxyfn.toml:15: routes[1] (/a/{y}).upstream: unknown upstream "userz" (known: users)"#,
        r#"proxyfn.toml:16: routes[1] (/a/{y}).methods[1]: not an HTTP method: "FETCH ME""#,
        r#"proxyfn.toml:14: routes[1] (/a/{y}).path: overlaps routes[0] ("/a/{x}")"#,
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    for library_words in [
        "expected",
        "usize",
        "relative URL",
        "Insertion failed",
        "unknown field",
    ] {
        assert!(
            !stderr.contains(library_words),
            "{library_words:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_format_json_gives_every_problem_with_its_line_for_ci_and_editors() {
    let dir = dir_with_config(MANY_PROBLEMS);
    let output = proxyfn(&["check", "--format", "json"], dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 6, "{report:#}");
    let upstream = problems
        .iter()
        .find(|p| p["key"] == "routes[1].upstream")
        .unwrap();
    assert_eq!(upstream["line"], 15);
    assert_eq!(upstream["route"], "/a/{y}");
    assert_eq!(upstream["file"], "proxyfn.toml");

    let dir = dir_with_config("[server]\ntimeout = \"1s\"\n");
    let output = proxyfn(
        &["check", "--format", "json"],
        dir.path(),
        &[("PROXYFN_SERVER__TIMEOUT", "0s")],
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["problems"][0]["variable"], "PROXYFN_SERVER__TIMEOUT",
        "{report:#}"
    );
}

#[test]
fn without_secrets_a_missing_secret_env_is_a_note_not_a_problem() {
    let dir = dir_with_config(
        "[auth.jwt.main]\nsecret_env = \"PROXYFN_TEST_UNSET_SECRET\"\nalgorithms = [\"HS256\"]\n",
    );
    let strict = proxyfn(&["check"], dir.path(), &[]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(text(&strict.stderr).contains("$PROXYFN_TEST_UNSET_SECRET is not set"));

    let lint = proxyfn(&["check", "--without-secrets"], dir.path(), &[]);
    assert!(lint.status.success(), "{}", text(&lint.stderr));
    let stdout = text(&lint.stdout);
    assert!(
        stdout.contains(
            "note: proxyfn.toml:2: auth.jwt.main.secret_env: $PROXYFN_TEST_UNSET_SECRET is not set"
        ) || stdout
            .contains("note: auth.jwt.main.secret_env: $PROXYFN_TEST_UNSET_SECRET is not set"),
        "{stdout}"
    );
}

#[test]
fn config_prints_the_effective_configuration_with_passwords_masked() {
    let dir = dir_with_config(
        "[rate_limit]\nstore = \"redis\"\nredis_url = \"redis://:hunter2@127.0.0.1:6379\"\n",
    );
    let output = proxyfn(
        &["config"],
        dir.path(),
        &[("PROXYFN_SERVER__TIMEOUT", "9s")],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("timeout = \"9s\""),
        "the override: {stdout}"
    );
    assert!(
        stdout.contains("body_limit = \"10MB\""),
        "a default: {stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(stdout.contains("redis://:***@127.0.0.1:6379"), "{stdout}");

    // What it prints is a configuration that checks.
    let printed = dir_with_config(&stdout);
    let output = proxyfn(&["check"], printed.path(), &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

fn validate_with_schema(schema: &serde_json::Value, toml_text: &str) -> Vec<String> {
    let document: toml::Table = toml::from_str(toml_text).unwrap();
    let document = serde_json::to_value(document).unwrap();
    let validator = jsonschema::validator_for(schema).unwrap();
    validator
        .iter_errors(&document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_checked_in_schema_is_generated_and_validates_proxyfn_toml_and_every_template() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = proxyfn(&["schema"], root, &[]);
    assert!(output.status.success());
    let generated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let checked_in: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("proxyfn.schema.json")).unwrap())
            .unwrap();
    assert_eq!(
        generated, checked_in,
        "proxyfn.schema.json is stale: run `cargo run -- schema > proxyfn.schema.json`"
    );
    let example = std::fs::read_to_string(root.join("proxyfn.toml")).unwrap();
    assert!(example.starts_with("#:schema ./proxyfn.schema.json\n"));
    assert_eq!(
        validate_with_schema(&checked_in, &example),
        Vec::<String>::new()
    );
    for template in proxyfn::config::templates::TEMPLATES {
        assert_eq!(
            validate_with_schema(&checked_in, template.text),
            Vec::<String>::new(),
            "{}",
            template.name
        );
    }
    // It refuses what the gateway refuses.
    let errors = validate_with_schema(&checked_in, "[server]\ntimout = \"1s\"\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[tokio::test]
async fn every_init_template_checks_and_serves() {
    for template in proxyfn::config::templates::TEMPLATES {
        let dir = tempfile::tempdir().unwrap();
        let output = proxyfn(&["init", "--template", template.name], dir.path(), &[]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(dir.path().join("proxyfn.schema.json").is_file());
        let written = std::fs::read_to_string(dir.path().join("proxyfn.toml")).unwrap();
        assert_eq!(written, template.text);
        let output = proxyfn(&["check"], dir.path(), &[]);
        assert!(
            output.status.success(),
            "{}: {}",
            template.name,
            text(&output.stderr)
        );

        // Served by the real binary once.
        let gateway = crate::helpers::Process::start_unchanged(template.text).await;
        let status = crate::helpers::client()
            .get(gateway.url("/health"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{}", template.name);
    }
    // Not twice over an existing file.
    let dir = tempfile::tempdir().unwrap();
    assert!(proxyfn(&["init"], dir.path(), &[]).status.success());
    let again = proxyfn(&["init"], dir.path(), &[]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--force"));
    let unknown = proxyfn(&["init", "--template", "nope"], dir.path(), &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("shared-redis"));
}
