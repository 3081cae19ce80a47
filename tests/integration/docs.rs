//! The OpenAPI document at /openapi.json (valid OpenAPI 3.1, listing the configured routes with
//! their security) and Swagger UI at /docs, served from the binary with no network.

use serde_json::Value;

use crate::helpers::*;

/// Validates `document` against the OpenAPI Initiative's schema for 3.1 documents.
pub fn assert_valid_openapi_31(document: &Value) {
    let schema: Value =
        serde_json::from_str(include_str!("../fixtures/openapi-3.1-schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid OpenAPI 3.1 document: {errors:#?}"
    );
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."));
}

fn config(upstream: &Upstream, schema_path: &str) -> String {
    format!(
        "[docs]\ntitle = \"Shop API\"\nversion = \"2.0.0\"\n\
         [upstreams.backend]\nurl = \"{}\"\n\
         [auth.jwt.main]\njwks_url = \"http://127.0.0.1:9/jwks.json\"\nalgorithms = [\"RS256\"]\n\
         [auth.api_keys.partners]\nheader = \"x-partner-key\"\nkeys = []\n\
         [rate_limits.per_ip]\nkey = \"ip\"\nlimit = 10\nper = \"1s\"\n\
         [[routes]]\npath = \"/orders/{{id}}\"\nmethods = [\"GET\"]\nupstream = \"backend\"\n\
         auth = [\"jwt:main\", \"api_key:partners\"]\nscopes = [\"orders:read\"]\nrate_limit = \"per_ip\"\n\
         [[routes]]\npath = \"/orders\"\nmethods = [\"POST\"]\nupstream = \"backend\"\nrequest_schema = {schema_path:?}\n\
         [[routes]]\npath = \"/files/{{*rest}}\"\nresponse = {{ body = \"file\" }}\n",
        upstream.url()
    )
}

async fn gateway() -> (Gateway, Upstream, tempfile::TempDir) {
    let upstream = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("order.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","required":["item"],"properties":{"item":{"type":"string"}}}"#,
    )
    .unwrap();
    let gateway = Gateway::start(&config(&upstream, &schema.display().to_string())).await;
    (gateway, upstream, dir)
}

#[tokio::test]
async fn openapi_json_is_a_valid_31_document_of_the_configured_routes_and_their_security() {
    let (gateway, _upstream, _dir) = gateway().await;
    let response = client()
        .get(gateway.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_valid_openapi_31(&document);
    let mut broken = document.clone();
    broken["paths"]["/health"]["get"]["responses"]["200"] = Value::from(200);
    assert!(
        !jsonschema::is_valid(
            &serde_json::from_str(include_str!("../fixtures/openapi-3.1-schema.json")).unwrap(),
            &broken
        ),
        "the schema check is not vacuous"
    );

    assert_eq!(document["info"]["title"], "Shop API");
    assert_eq!(document["info"]["version"], "2.0.0");
    assert_eq!(document["servers"][0]["url"], "/");

    let get = &document["paths"]["/orders/{id}"]["get"];
    assert_eq!(get["parameters"][0]["name"], "id");
    assert_eq!(get["parameters"][0]["in"], "path");
    // Any one provider suffices: one requirement object each, with the route's scopes.
    assert_eq!(
        get["security"],
        serde_json::json!([{ "jwt_main": ["orders:read"] }, { "api_key_partners": ["orders:read"] }])
    );
    for status in ["401", "403", "429", "502", "503", "504"] {
        assert!(
            get["responses"][status]["$ref"].is_string(),
            "{status}: {get}"
        );
    }
    assert!(get["responses"]["default"]["headers"]["RateLimit"].is_object());

    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["jwt_main"]["type"], "http");
    assert_eq!(schemes["jwt_main"]["scheme"], "bearer");
    assert_eq!(schemes["jwt_main"]["bearerFormat"], "JWT");
    assert_eq!(schemes["api_key_partners"]["type"], "apiKey");
    assert_eq!(schemes["api_key_partners"]["in"], "header");
    assert_eq!(schemes["api_key_partners"]["name"], "x-partner-key");

    let responses = &document["components"]["responses"];
    assert_eq!(
        responses["TooManyRequests"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    assert!(responses["TooManyRequests"]["headers"]["Retry-After"].is_object());

    // The request schema is the request body, as written.
    let post = &document["paths"]["/orders"]["post"];
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/order"
    );
    assert_eq!(
        document["components"]["schemas"]["order"]["required"][0],
        "item"
    );
    assert!(post["responses"]["400"].is_object());
    assert!(post.get("security").is_none(), "a public route");

    // Wildcards are plain parameters; a route without methods lists every method.
    let files = &document["paths"]["/files/{rest}"];
    for method in ["get", "post", "put", "delete", "patch"] {
        assert!(files[method].is_object(), "{method}");
    }
    assert!(document["paths"]["/health"]["get"].is_object());
    assert!(document["paths"]["/metrics"]["get"].is_object());
}

/// The body of a response that must be gzip-encoded (the assets are embedded compressed).
async fn gunzip(response: reqwest::Response) -> Vec<u8> {
    use std::io::Read;
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["vary"], "accept-encoding");
    let compressed = response.bytes().await.unwrap();
    let mut plain = vec![];
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

#[tokio::test]
async fn docs_serves_swagger_ui_and_its_assets_from_the_binary() {
    let (gateway, _upstream, _dir) = gateway().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = no_redirects.get(gateway.url("/docs")).send().await.unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        redirect.headers()["location"],
        "docs/",
        "relative, so stages keep working"
    );

    let page = client().get(gateway.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(gunzip(page).await).unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every script and stylesheet is local: the page works offline.
    for line in html
        .lines()
        .filter(|l| l.contains("src=") || l.contains("href="))
    {
        assert!(
            !line.contains("http://") && !line.contains("https://"),
            "{line}"
        );
    }
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
    ] {
        let response = client()
            .get(gateway.url(&format!("/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert!(gunzip(response).await.len() > 10_000, "{asset}");
    }
    let initializer = client()
        .get(gateway.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("../openapi.json"), "{initializer}");
    assert_eq!(gateway.status("/docs/no-such-file.js").await, 404);
}

#[tokio::test]
async fn docs_and_metrics_can_be_turned_off_and_their_paths_routed() {
    let gateway = Gateway::start(
        "[docs]\nenabled = false\n[metrics]\nenabled = false\n\
         [[routes]]\npath = \"/docs\"\nresponse = { body = \"my docs\" }\n\
         [[routes]]\npath = \"/metrics\"\nresponse = { body = \"my metrics\" }\n",
    )
    .await;
    assert_eq!(gateway.text("/docs").await, "my docs");
    assert_eq!(gateway.text("/metrics").await, "my metrics");
    assert_eq!(gateway.status("/openapi.json").await, 404);
}

#[test]
fn a_route_on_a_builtin_path_is_refused_while_the_builtin_is_on() {
    let file = ConfigFile::new(
        "[[routes]]\npath = \"/docs/{*rest}\"\nresponse = { body = \"x\" }\n\
         [[routes]]\npath = \"/metrics\"\nresponse = { body = \"x\" }\n",
    );
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("routes[0] (/docs/{*rest}).path"),
        "{stderr}"
    );
    assert!(stderr.contains("routes[1] (/metrics).path"), "{stderr}");
}

#[tokio::test]
async fn swagger_ui_assets_are_sent_uncompressed_to_clients_that_do_not_accept_gzip() {
    let gateway = Gateway::start("").await;
    let gzipped = client()
        .get(gateway.url("/docs/swagger-ui.css"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let expected = gunzip(gzipped).await;

    for accept in ["identity", "gzip;q=0, identity", ""] {
        let plain = client()
            .get(gateway.url("/docs/swagger-ui.css"))
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), 200);
        assert!(
            plain.headers().get("content-encoding").is_none(),
            "{accept:?}: {:?}",
            plain.headers()
        );
        assert_eq!(plain.headers()["vary"], "accept-encoding");
        assert_eq!(
            plain.bytes().await.unwrap().as_ref(),
            expected.as_slice(),
            "{accept:?}"
        );
    }
}

/// The document `proxyfn openapi` prints for `config`.
fn document_of(config: &str) -> Value {
    let file = ConfigFile::new(config);
    let output = file.run(&["openapi"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_valid_openapi_31(&document);
    document
}

const TWO_ROUTES: [&str; 2] = [
    "[[routes]]\npath = \"/orders/{id}\"\nmethods = [\"GET\", \"DELETE\"]\nupstream = \"backend\"\n\
     name = \"order\"\nsummary = \"One order\"\ndescription = \"The order with its lines.\"\ntags = [\"orders\"]\n",
    "[[routes]]\npath = \"/users/{*rest}\"\nmethods = [\"GET\"]\nupstream = \"backend\"\n",
];

#[test]
fn operation_ids_come_from_names_or_paths_and_survive_reordering_routes() {
    let upstream = "[upstreams.backend]\nurl = \"http://10.0.0.7:9001\"\n";
    let forward = document_of(&format!("{upstream}{}{}", TWO_ROUTES[0], TWO_ROUTES[1]));
    let reversed = document_of(&format!("{upstream}{}{}", TWO_ROUTES[1], TWO_ROUTES[0]));
    for document in [&forward, &reversed] {
        let order = &document["paths"]["/orders/{id}"];
        assert_eq!(order["get"]["operationId"], "order_get");
        assert_eq!(order["delete"]["operationId"], "order_delete");
        assert_eq!(order["get"]["summary"], "One order");
        assert!(
            order["get"]["description"]
                .as_str()
                .unwrap()
                .starts_with("The order with its lines.")
        );
        assert_eq!(order["get"]["tags"], serde_json::json!(["orders"]));
        let users = &document["paths"]["/users/{rest}"]["get"];
        assert_eq!(users["operationId"], "get_users_rest");
        assert_eq!(users["tags"], serde_json::json!(["routes"]));
        let rest = &users["parameters"][0];
        let pattern = rest["schema"]["pattern"].as_str().unwrap();
        let segment = segment_matcher(pattern);
        assert!(segment("a.b~c"));
        for refused in ["a/b", "a\\b", ".", "..", ""] {
            assert!(!segment(refused), "{refused:?} would be 400 invalid-path");
        }
        assert!(
            rest["description"].as_str().unwrap().contains("%2F"),
            "a catch-all says what cannot be sent: {rest}"
        );
        for operation in [&order["get"], users] {
            assert_eq!(
                operation["responses"]["400"]["$ref"], "#/components/responses/BadRequest",
                "every route can answer invalid-path"
            );
        }
    }
    assert_eq!(forward["paths"], reversed["paths"]);
}

#[test]
fn upstream_names_and_aws_resources_are_published_only_with_show_upstreams() {
    let config = |show: bool| {
        format!(
            "[docs]\nshow_upstreams = {show}\n\
             [upstreams.billing-internal]\nurl = \"http://10.0.0.7:9001\"\n\
             [[routes]]\npath = \"/bills\"\nupstream = \"billing-internal\"\n\
             [[routes]]\npath = \"/orders\"\nsqs = {{ queue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/orders-internal\" }}\n"
        )
    };
    let hidden = document_of(&config(false)).to_string();
    assert!(!hidden.contains("billing-internal"), "{hidden}");
    assert!(!hidden.contains("orders-internal"), "{hidden}");
    assert!(!hidden.contains("10.0.0.7"));
    let shown = document_of(&config(true)).to_string();
    assert!(shown.contains("billing-internal"));
    assert!(shown.contains("orders-internal"));
}

#[test]
fn a_mock_route_documents_its_status_content_type_and_body() {
    let document = document_of(
        "[[routes]]\npath = \"/status\"\nmethods = [\"GET\"]\n\
         response = { status = 202, body = '{\"ok\":true}', headers = { \"content-type\" = \"application/json\" } }\n",
    );
    let responses = &document["paths"]["/status"]["get"]["responses"];
    assert!(responses.get("default").is_none(), "{responses}");
    let answer = &responses["202"]["content"]["application/json"];
    assert_eq!(answer["example"], serde_json::json!({ "ok": true }));
}

#[test]
fn check_refuses_a_route_name_that_is_taken_or_not_an_identifier() {
    let file = ConfigFile::new(
        "[[routes]]\npath = \"/a\"\nname = \"same\"\nresponse = {}\n\
         [[routes]]\npath = \"/b\"\nname = \"same\"\nresponse = {}\n\
         [[routes]]\npath = \"/c\"\nname = \"has space\"\nresponse = {}\n\
         [[routes]]\npath = \"/d\"\ntags = [\" \"]\nresponse = {}\n",
    );
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "routes[1] (/b).name",
        "routes[2] (/c).name",
        "routes[3] (/d).tags[0]",
    ] {
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    assert!(!stderr.contains("routes[0] (/a).name"), "{stderr}");
}

/// `pattern` as JSON Schema reads it (ECMA-262), through the same validator the gateway uses.
fn segment_matcher(pattern: &str) -> impl Fn(&str) -> bool {
    let validator = jsonschema::validator_for(
        &serde_json::json!({ "type": "string", "minLength": 1, "pattern": pattern }),
    )
    .unwrap();
    move |value: &str| validator.is_valid(&Value::String(value.to_owned()))
}
