//! AWS service routes: the real binary in both runtimes against a real moto server, each
//! test reading back with the SDK what the service really received.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    app::{BOTH, Call, Running, Runtime, TestApp},
    helpers::ConfigFile,
    moto::{ACCOUNT, FaultProxy, Moto, REGION, Step},
};

/// A resource name of its own per runtime, so one moto serves both.
fn named(base: &str, runtime: Runtime) -> String {
    format!("{base}-{}", format!("{runtime:?}").to_lowercase())
}

async fn start(app: TestApp, runtime: Runtime) -> Running {
    let env = Moto::env();
    app.start_binary(runtime, &env).await
}

/// `[aws]` at moto, correlation ids from `X-Correlation-Id`, quick retries.
fn aws_section(moto: &Moto) -> String {
    Moto::section(
        &moto.url(),
        "correlation_id = [\"header:x-correlation-id\"]\n\
         [aws.retry]\nattempts = 3\ninitial_backoff = \"1ms\"\nmax_backoff = \"5ms\"",
    )
}

#[tokio::test]
async fn an_sqs_route_sends_the_body_with_its_correlation_id_and_attributes() {
    let moto = Moto::start().await;
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk());
    for runtime in BOTH {
        let queue = sqs
            .create_queue()
            .queue_name(named("orders", runtime))
            .send()
            .await
            .unwrap();
        let queue_url = queue.queue_url().unwrap();
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/orders/{customer}",
            &format!(
                "sqs = {{ queue_url = \"{queue_url}\", attributes = {{ customer = \"{{path.customer}}\", tenant = \"{{header.x-tenant}}\" }} }}"
            ),
        );
        let gateway = start(app, runtime).await;

        let answer = gateway
            .send(
                Call::post("/orders/c%2042", "{\"item\":\"book\"}")
                    .header("x-correlation-id", "corr-77")
                    .header("x-tenant", "acme"),
            )
            .await;
        assert_eq!(answer.status, 202, "{runtime:?}: {:?}", answer.body);
        let message_id = answer.json()["message_id"].as_str().unwrap().to_owned();

        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let message = &received.messages()[0];
        assert_eq!(message.message_id(), Some(message_id.as_str()));
        assert_eq!(message.body(), Some("{\"item\":\"book\"}"));
        let attribute = |name: &str| {
            message.message_attributes().unwrap()[name]
                .string_value()
                .unwrap()
                .to_owned()
        };
        assert_eq!(attribute("correlation_id"), "corr-77");
        assert_eq!(attribute("customer"), "c 42", "path parameters are decoded");
        assert_eq!(attribute("tenant"), "acme");

        let log = gateway.log_lines("\"aws call\"", 1).await;
        let line = &log[0];
        assert_eq!(line["service"], "sqs", "{line}");
        assert_eq!(line["action"], "SendMessage");
        assert_eq!(line["correlation_id"], "corr-77");
        assert_eq!(line["attempts"], 1);
        assert_eq!(line["status"], 202);

        let empty = gateway.send(Call::post("/orders/c1", "")).await;
        empty.problem(400, "invalid-body");
        let huge = "x".repeat((1 << 20) + 1);
        gateway
            .send(Call::post("/orders/c1", &huge))
            .await
            .problem(413, "payload-too-large");
    }
}

#[tokio::test]
async fn a_fifo_queue_gets_its_group_and_deduplication_ids_from_templates() {
    let moto = Moto::start().await;
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk());
    for runtime in BOTH {
        let queue = sqs
            .create_queue()
            .queue_name(named("payments", runtime) + ".fifo")
            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap();
        let queue_url = queue.queue_url().unwrap();
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/payments/{account}",
            &format!(
                "sqs = {{ queue_url = \"{queue_url}\", message_group_id = \"{{path.account}}\", deduplication_id = \"{{header.idempotency-key}}\" }}"
            ),
        );
        let gateway = start(app, runtime).await;

        for _ in 0..2 {
            let answer = gateway
                .send(Call::post("/payments/acc-1", "pay 10").header("idempotency-key", "k-1"))
                .await;
            assert_eq!(answer.status, 202, "{runtime:?}: {:?}", answer.body);
            assert!(answer.json()["sequence_number"].is_string());
        }
        let missing = gateway.send(Call::post("/payments/acc-1", "pay 10")).await;
        let problem = missing.problem(400, "missing-value");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("header.idempotency-key"),
            "{problem}"
        );

        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
            )
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        assert_eq!(messages.len(), 1, "the second send was deduplicated");
        let group = &messages[0].attributes().unwrap()
            [&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId];
        assert_eq!(group, "acc-1");
    }
}

#[tokio::test]
async fn a_dynamodb_route_puts_gets_and_deletes_items_as_plain_json() {
    let moto = Moto::start().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk());
    for runtime in BOTH {
        let table = named("orders", runtime);
        create_table(&dynamodb, &table, ("id", None)).await;
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/orders/{id}",
            &format!(
                "methods = [\"GET\", \"PUT\", \"DELETE\"]\ndynamodb = {{ table = \"{table}\", key = {{ id = \"{{path.id}}\" }} }}"
            ),
        );
        let gateway = start(app, runtime).await;

        let item = json!({ "id": "ignored", "total": 12.5, "count": 3, "paid": true,
            "lines": ["a", "b"], "customer": { "name": "Zoë" }, "note": null });
        let put = gateway
            .send(Call::new("PUT", "/orders/o-1").body(&item.to_string()))
            .await;
        assert_eq!(put.status, 201, "{runtime:?}: {:?}", put.body);

        let stored = dynamodb
            .get_item()
            .table_name(&table)
            .key(
                "id",
                aws_sdk_dynamodb::types::AttributeValue::S("o-1".into()),
            )
            .send()
            .await
            .unwrap();
        let stored = stored.item().unwrap();
        assert_eq!(stored["total"].as_n().unwrap(), "12.5");
        assert_eq!(stored["paid"].as_bool().unwrap(), &true);
        assert!(stored["note"].as_null().unwrap());
        assert_eq!(
            stored["customer"].as_m().unwrap()["name"].as_s().unwrap(),
            "Zoë"
        );

        let got = gateway.send(Call::get("/orders/o-1")).await;
        assert_eq!(got.status, 200, "{:?}", got.body);
        let mut expected = item.clone();
        expected["id"] = json!("o-1");
        assert_eq!(
            got.json(),
            expected,
            "the key comes from the route, not the body"
        );

        let deleted = gateway.send(Call::new("DELETE", "/orders/o-1")).await;
        assert_eq!(deleted.status, 204);
        gateway
            .send(Call::get("/orders/o-1"))
            .await
            .problem(404, "not-found");

        let not_json = gateway
            .send(Call::new("PUT", "/orders/o-2").body("total=3"))
            .await;
        not_json.problem(400, "invalid-json");
    }
}

#[tokio::test]
async fn a_dynamodb_query_pages_with_a_cursor_and_refuses_a_forged_one() {
    let moto = Moto::start().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk());
    for runtime in BOTH {
        let table = named("events", runtime);
        create_table(&dynamodb, &table, ("customer", Some("seq"))).await;
        for seq in 1..=3 {
            dynamodb
                .put_item()
                .table_name(&table)
                .item(
                    "customer",
                    aws_sdk_dynamodb::types::AttributeValue::S("c1".into()),
                )
                .item(
                    "seq",
                    aws_sdk_dynamodb::types::AttributeValue::N(seq.to_string()),
                )
                .send()
                .await
                .unwrap();
        }
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/customers/{customer}/events",
            &format!(
                "dynamodb = {{ table = \"{table}\", key = {{ customer = \"{{path.customer}}\" }}, action = \"query\", limit = 2 }}"
            ),
        );
        let gateway = start(app, runtime).await;

        let first = gateway.send(Call::get("/customers/c1/events")).await;
        assert_eq!(first.status, 200, "{runtime:?}: {:?}", first.body);
        let first = first.json();
        assert_eq!(first["items"].as_array().unwrap().len(), 2, "{first}");
        let cursor = first["cursor"].as_str().unwrap();

        let second = gateway
            .send(Call::get("/customers/c1/events").query("cursor", cursor))
            .await
            .json();
        assert_eq!(second["items"], json!([{ "customer": "c1", "seq": 3 }]));
        assert!(second.get("cursor").is_none(), "{second}");

        gateway
            .send(Call::get("/customers/c1/events").query("cursor", "not-a-cursor"))
            .await
            .problem(400, "invalid-body");
    }
}

#[tokio::test]
async fn an_s3_route_stores_serves_ranges_and_deletes_objects() {
    let moto = Moto::start().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk())
            .force_path_style(true)
            .build(),
    );
    for runtime in BOTH {
        let bucket = named("files", runtime);
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/files/{*path}",
            &format!("s3 = {{ bucket = \"{bucket}\", key = \"uploads/{{path.path}}\" }}"),
        );
        let gateway = start(app, runtime).await;
        let csv = "id,name\n1,Zoë\n2,Ana\n";

        let put = gateway
            .send(
                Call::new("PUT", "/files/2026/report.csv")
                    .header("content-type", "text/csv")
                    .body(csv),
            )
            .await;
        assert_eq!(put.status, 201, "{runtime:?}: {:?}", put.body);
        let etag = put.header("etag")[0].to_owned();

        let stored = s3
            .get_object()
            .bucket(&bucket)
            .key("uploads/2026/report.csv")
            .send()
            .await
            .unwrap();
        assert_eq!(stored.content_type(), Some("text/csv"));
        assert_eq!(stored.e_tag(), Some(etag.as_str()));
        let bytes = stored.body.collect().await.unwrap().into_bytes();
        assert_eq!(&bytes[..], csv.as_bytes());

        let got = gateway.send(Call::get("/files/2026/report.csv")).await;
        assert_eq!(got.status, 200);
        assert_eq!(&got.body[..], csv.as_bytes());
        assert_eq!(got.header("content-type"), ["text/csv"]);
        assert_eq!(got.header("etag"), [etag.as_str()]);
        assert!(!got.header("last-modified").is_empty());

        let head = gateway
            .send(Call::new("HEAD", "/files/2026/report.csv"))
            .await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("etag"), [etag.as_str()]);
        assert_eq!(head.header("content-type"), ["text/csv"]);

        let range = gateway
            .send(Call::get("/files/2026/report.csv").header("range", "bytes=0-6"))
            .await;
        assert_eq!(range.status, 206);
        assert_eq!(&range.body[..], b"id,name");
        assert_eq!(
            range.header("content-range"),
            [format!("bytes 0-6/{}", csv.len()).as_str()]
        );

        let unchanged = gateway
            .send(Call::get("/files/2026/report.csv").header("if-none-match", &etag))
            .await;
        assert_eq!(unchanged.status, 304);

        gateway
            .send(Call::get("/files/2026/missing.csv"))
            .await
            .problem(404, "not-found");
        gateway
            .send(Call::get("/files/2026/report.csv").header("range", "bytes=1000-2000"))
            .await
            .problem(416, "range-not-satisfiable");
        gateway
            .send(Call::get("/files/2026/report.csv").header("if-match", "\"not-the-etag\""))
            .await
            .problem(412, "precondition-failed");

        let deleted = gateway
            .send(Call::new("DELETE", "/files/2026/report.csv"))
            .await;
        assert_eq!(deleted.status, 204);
        let gone = s3
            .head_object()
            .bucket(&bucket)
            .key("uploads/2026/report.csv")
            .send()
            .await;
        assert!(gone.is_err(), "the object was deleted");
    }
}

/// Server mode streams objects both ways: a 64 MiB upload and download leave the gateway's
/// peak memory far below the object's size.
#[tokio::test]
async fn an_s3_object_streams_through_server_mode_without_being_buffered() {
    const SIZE: usize = 64 << 20;
    let moto = Moto::start().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk())
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket("big").send().await.unwrap();
    let app = TestApp::new().config(&aws_section(&moto)).route(
        "/big/{name}",
        "s3 = { bucket = \"big\", key = \"{path.name}\" }",
    );
    let mut env = Moto::env();
    env.extend([
        ("PROXYFN_SERVER__BODY_LIMIT", "128MB"),
        ("PROXYFN_SERVER__TIMEOUT", "60s"),
    ]);
    let gateway = crate::helpers::Process::start_with(&app.toml(), Some("info"), &env).await;
    let client = crate::helpers::client();
    let small = client
        .put(gateway.url("/big/warm-up"))
        .body("warm-up")
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 201);
    let before = gateway.peak_rss_kib();

    let object: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let put = client
        .put(gateway.url("/big/blob.bin"))
        .header("content-type", "application/octet-stream")
        .body(object.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{:?}", put.text().await);
    let mut got = client
        .get(gateway.url("/big/blob.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.content_length(), Some(SIZE as u64));
    let mut received = 0;
    let mut same = true;
    while let Some(chunk) = got.chunk().await.unwrap() {
        same &= chunk[..] == object[received..received + chunk.len()];
        received += chunk.len();
    }
    assert_eq!(received, SIZE);
    assert!(same, "the object came back byte for byte");

    let grown = gateway.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < (SIZE as u64 / 1024) / 4,
        "peak RSS grew by {grown} KiB for a {} KiB object",
        SIZE / 1024
    );
}

#[tokio::test]
async fn an_sns_route_publishes_what_a_subscribed_queue_receives() {
    let moto = Moto::start().await;
    let sdk = moto.sdk();
    let (sns, sqs) = (
        aws_sdk_sns::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    for runtime in BOTH {
        let topic = sns
            .create_topic()
            .name(named("orders", runtime))
            .send()
            .await
            .unwrap();
        let topic_arn = topic.topic_arn().unwrap();
        let queue_url = subscribed_queue(&sqs, &named("sns-orders", runtime), |queue_arn| {
            let sns = sns.clone();
            let topic_arn = topic_arn.to_owned();
            async move {
                sns.subscribe()
                    .topic_arn(topic_arn)
                    .protocol("sqs")
                    .endpoint(queue_arn)
                    .attributes("RawMessageDelivery", "false")
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/notify/{kind}",
            &format!("sns = {{ topic_arn = \"{topic_arn}\", subject = \"order {{path.kind}}\" }}"),
        );
        let gateway = start(app, runtime).await;

        let answer = gateway
            .send(
                Call::post("/notify/shipped", "order 7 shipped").header("x-correlation-id", "c-9"),
            )
            .await;
        assert_eq!(answer.status, 202, "{runtime:?}: {:?}", answer.body);
        let message_id = answer.json()["message_id"].as_str().unwrap().to_owned();

        let envelope = receive_json(&sqs, &queue_url).await;
        assert_eq!(envelope["MessageId"], message_id);
        assert_eq!(envelope["Message"], "order 7 shipped");
        assert_eq!(envelope["Subject"], "order shipped");
        assert_eq!(
            envelope["MessageAttributes"]["correlation_id"]["Value"],
            "c-9"
        );
    }
}

#[tokio::test]
async fn a_kinesis_route_puts_a_record_with_its_partition_key() {
    let moto = Moto::start().await;
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk());
    for runtime in BOTH {
        let stream = named("clicks", runtime);
        kinesis
            .create_stream()
            .stream_name(&stream)
            .shard_count(1)
            .send()
            .await
            .unwrap();
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/clicks/{user}",
            &format!(
                "kinesis = {{ stream = \"{stream}\", partition_key = \"user-{{path.user}}\" }}"
            ),
        );
        let gateway = start(app, runtime).await;

        let answer = gateway.send(Call::post("/clicks/u1", "{\"x\":1}")).await;
        assert_eq!(answer.status, 202, "{runtime:?}: {:?}", answer.body);
        let answer = answer.json();
        let shard = answer["shard_id"].as_str().unwrap();

        let iterator = kinesis
            .get_shard_iterator()
            .stream_name(&stream)
            .shard_id(shard)
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let records = kinesis
            .get_records()
            .shard_iterator(iterator.shard_iterator().unwrap())
            .send()
            .await
            .unwrap();
        let record = &records.records()[0];
        assert_eq!(record.partition_key(), Some("user-u1"));
        assert_eq!(record.data().as_ref(), b"{\"x\":1}");
        assert_eq!(
            Some(record.sequence_number()),
            answer["sequence_number"].as_str()
        );
    }
}

#[tokio::test]
async fn an_eventbridge_route_puts_an_event_that_a_rule_delivers_with_the_correlation_id() {
    let moto = Moto::start().await;
    let sdk = moto.sdk();
    let (events, sqs) = (
        aws_sdk_eventbridge::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    for runtime in BOTH {
        let rule = named("shop-orders", runtime);
        let source = format!("shop.{}", named("orders", runtime));
        events
            .put_rule()
            .name(&rule)
            .event_pattern(json!({ "source": [source] }).to_string())
            .send()
            .await
            .unwrap();
        let queue_url = subscribed_queue(&sqs, &named("bus-orders", runtime), |queue_arn| {
            let events = events.clone();
            let rule = rule.clone();
            async move {
                events
                    .put_targets()
                    .rule(rule)
                    .targets(
                        aws_sdk_eventbridge::types::Target::builder()
                            .id("queue")
                            .arn(queue_arn)
                            .build()
                            .unwrap(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/events/{kind}",
            &format!(
                "eventbridge = {{ source = \"{source}\", detail_type = \"order {{path.kind}}\" }}"
            ),
        );
        let gateway = start(app, runtime).await;

        let answer = gateway
            .send(Call::post("/events/placed", "{\"order\":7}").header("x-correlation-id", "c-1"))
            .await;
        assert_eq!(answer.status, 202, "{runtime:?}: {:?}", answer.body);
        assert!(answer.json()["event_id"].is_string());

        let event = receive_json(&sqs, &queue_url).await;
        assert_eq!(event["source"], source);
        assert_eq!(event["detail-type"], "order placed");
        assert_eq!(
            event["detail"],
            json!({ "order": 7, "correlation_id": "c-1" })
        );

        gateway
            .send(Call::post("/events/placed", "[1, 2]"))
            .await
            .problem(400, "invalid-body");
    }
}

#[tokio::test]
async fn a_step_functions_route_starts_an_execution_with_the_body_as_input() {
    let moto = Moto::start().await;
    let sfn = aws_sdk_sfn::Client::new(&moto.sdk());
    for runtime in BOTH {
        let machine = sfn
            .create_state_machine()
            .name(named("checkout", runtime))
            .definition(
                json!({ "StartAt": "Done", "States": { "Done": { "Type": "Succeed" } } })
                    .to_string(),
            )
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/sfn"))
            .send()
            .await
            .unwrap();
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/checkout/{order}",
            &format!(
                "step_functions = {{ state_machine_arn = \"{}\", name = \"order-{{path.order}}\" }}",
                machine.state_machine_arn()
            ),
        );
        let gateway = start(app, runtime).await;

        let answer = gateway
            .send(Call::post("/checkout/7", "{\"total\":3}").header("x-correlation-id", "c-5"))
            .await;
        assert_eq!(answer.status, 202, "{runtime:?}: {:?}", answer.body);
        let arn = answer.json()["execution_arn"].as_str().unwrap().to_owned();
        assert!(arn.ends_with(":order-7"), "{arn}");

        let execution = sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .unwrap();
        let input: Value = serde_json::from_str(execution.input().unwrap()).unwrap();
        assert_eq!(input, json!({ "total": 3, "correlation_id": "c-5" }));

        let again = gateway
            .send(Call::post("/checkout/7", "{\"total\":4}"))
            .await;
        again.problem(409, "aws-conflict");
    }
}

/// A fault injected below the SDK's retry loop is retried like a real one, then answered as
/// the route's fallback, or as a 503 with Retry-After when there is none.
#[tokio::test]
async fn throttling_is_retried_then_answered_by_the_fallback_or_as_503() {
    let moto = Moto::start().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk());
    for runtime in BOTH {
        let table = named("prices", runtime);
        create_table(&dynamodb, &table, ("sku", None)).await;
        let fault = "fault = { aws_error = \"ThrottlingException\", aws_error_percent = 100 }";
        let dynamo =
            format!("dynamodb = {{ table = \"{table}\", key = {{ sku = \"{{path.sku}}\" }} }}");
        let app = TestApp::new()
            .config(&aws_section(&moto))
            .route("/prices/{sku}", &format!("{dynamo}\n{fault}"))
            .route(
                "/cached-prices/{sku}",
                &format!(
                    "{dynamo}\n{fault}\nfallback = {{ status = 200, headers = {{ content-type = \"application/json\" }}, body = '{{\"price\":null}}' }}"
                ),
            );
        let gateway = start(app, runtime).await;

        let refused = gateway.send(Call::get("/prices/p1")).await;
        refused.problem(503, "aws-throttled");
        assert_eq!(refused.header("retry-after"), ["1"]);

        let fallback = gateway.send(Call::get("/cached-prices/p1")).await;
        assert_eq!(fallback.status, 200, "{runtime:?}: {:?}", fallback.body);
        assert_eq!(fallback.json(), json!({ "price": null }));
        assert_eq!(fallback.header("x-proxyfn-fallback"), ["true"]);

        let log = gateway.log_lines("\"aws call\"", 2).await;
        for line in &log {
            assert_eq!(line["attempts"], 3, "every attempt was made: {line}");
            assert_eq!(line["error_code"], "ThrottlingException", "{line}");
        }
    }
}

/// A dynamodb GET route to `endpoint` (moto or a proxy in front of it) on table `table`.
fn item_route(endpoint: &str, table: &str, aws_extra: &str) -> TestApp {
    TestApp::new()
        .config(&Moto::section(
            endpoint,
            &format!(
                "{aws_extra}\n[aws.retry]\nattempts = 3\ninitial_backoff = \"1ms\"\nmax_backoff = \"5ms\""
            ),
        ))
        .route(
            "/items/{id}",
            &format!("dynamodb = {{ table = \"{table}\", key = {{ id = \"{{path.id}}\" }} }}"),
        )
}

async fn put_item(dynamodb: &aws_sdk_dynamodb::Client, table: &str, id: &str) {
    dynamodb
        .put_item()
        .table_name(table)
        .item("id", aws_sdk_dynamodb::types::AttributeValue::S(id.into()))
        .item(
            "name",
            aws_sdk_dynamodb::types::AttributeValue::S("pen".into()),
        )
        .send()
        .await
        .unwrap();
}

/// An injected connection reset and an injected 500 are retried like real ones, then a 502.
#[tokio::test]
async fn injected_resets_and_500s_are_retried_then_a_502() {
    let moto = Moto::start().await;
    for runtime in BOTH {
        let route = |fault: &str| {
            format!(
                "dynamodb = {{ table = \"items\", key = {{ id = \"{{path.id}}\" }} }}\nfault = {{ {fault} }}"
            )
        };
        let app = TestApp::new()
            .config(&aws_section(&moto))
            .route("/reset/{id}", &route("reset_percent = 100"))
            .route(
                "/failing/{id}",
                &route("abort_status = 500, abort_percent = 100"),
            );
        let gateway = start(app, runtime).await;

        gateway
            .send(Call::get("/reset/i1"))
            .await
            .problem(502, "aws-failed");
        gateway
            .send(Call::get("/failing/i1"))
            .await
            .problem(502, "aws-failed");
        let log = gateway.log_lines("\"aws call\"", 2).await;
        let codes: Vec<_> = log.iter().map(|line| line["error_code"].clone()).collect();
        assert_eq!(codes, [json!("dispatch_failure"), json!("InternalFailure")]);
        for line in &log {
            assert_eq!(line["attempts"], 3, "{line}");
        }
    }
}

/// Real 5xx answers from the service are retried by the SDK, and the third attempt's answer
/// is the client's.
#[tokio::test]
async fn service_errors_are_retried_until_an_attempt_succeeds() {
    let moto = Moto::start().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk());
    for runtime in BOTH {
        let table = named("items-retried", runtime);
        create_table(&dynamodb, &table, ("id", None)).await;
        put_item(&dynamodb, &table, "i1").await;
        let failing = Step::AwsError {
            status: 500,
            code: "InternalServerError",
        };
        let proxy = FaultProxy::start(&moto, vec![failing.clone(), failing]).await;
        let gateway = start(item_route(&proxy.url(), &table, ""), runtime).await;

        let answer = gateway.send(Call::get("/items/i1")).await;
        assert_eq!(answer.status, 200, "{runtime:?}: {:?}", answer.body);
        assert_eq!(answer.json(), json!({ "id": "i1", "name": "pen" }));
        assert_eq!(
            proxy.requests(),
            3,
            "two failed attempts, then one that succeeded"
        );
        let log = gateway.log_lines("\"aws call\"", 1).await;
        assert_eq!(log[0]["attempts"], 3, "{}", log[0]);
    }
}

/// A refusal that no retry can fix (permissions) is not retried: 502, with the AWS code in
/// the log and AWS's message nowhere in the answer.
#[tokio::test]
async fn access_denied_is_not_retried_and_its_message_stays_in_the_log() {
    let moto = Moto::start().await;
    for runtime in BOTH {
        let proxy = FaultProxy::start(
            &moto,
            vec![Step::AwsError {
                status: 400,
                code: "AccessDeniedException",
            }],
        )
        .await;
        let gateway = start(item_route(&proxy.url(), "items", ""), runtime).await;

        let answer = gateway.send(Call::get("/items/i1")).await;
        let problem = answer.problem(502, "aws-failed");
        assert!(!problem.to_string().contains("secret detail"), "{problem}");
        assert_eq!(proxy.requests(), 1);
        let log = gateway.log_lines("\"aws call\"", 1).await;
        assert_eq!(log[0]["error_code"], "AccessDeniedException", "{}", log[0]);
        assert_eq!(log[0]["aws_request_id"], "proxy-request-id", "{}", log[0]);
        let refused = gateway.log_lines("check the IAM policy", 1).await;
        assert_eq!(refused[0]["resource"], "items", "{}", refused[0]);
    }
}

/// Each attempt is bounded by `attempt_timeout` and the whole call by the request's deadline:
/// after a timed-out attempt, a retry that could not finish before the deadline does not
/// start, and the client gets a 504 before the deadline instead of a hang.
#[tokio::test]
async fn a_retry_that_cannot_finish_before_the_deadline_does_not_start() {
    let moto = Moto::start().await;
    for runtime in BOTH {
        let proxy = FaultProxy::start(&moto, vec![Step::Delay(Duration::from_secs(5)); 3]).await;
        let app = item_route(&proxy.url(), "items", "attempt_timeout = \"600ms\"");
        let mut env = Moto::env();
        env.push(("PROXYFN_SERVER__TIMEOUT", "1s"));
        let gateway = app.start_binary(runtime, &env).await;

        let answer = gateway.send(Call::get("/items/i1")).await;
        answer.problem(504, "aws-timeout");
        assert_eq!(
            proxy.requests(),
            1,
            "a second 600ms attempt would end after the 1s deadline"
        );
    }
}

/// PutEvents answers 200 even when it refused the entry: a failed entry is a failure.
#[tokio::test]
async fn a_refused_eventbridge_entry_is_a_502_not_a_202() {
    let moto = Moto::start().await;
    for runtime in BOTH {
        let proxy = FaultProxy::start(
            &moto,
            vec![Step::Json(
                r#"{"FailedEntryCount":1,"Entries":[{"ErrorCode":"InternalFailure","ErrorMessage":"secret detail"}]}"#,
            )],
        )
        .await;
        let app = TestApp::new()
            .config(&Moto::section(&proxy.url(), ""))
            .route(
                "/events",
                "eventbridge = { source = \"shop\", detail_type = \"order\" }",
            );
        let gateway = start(app, runtime).await;
        let answer = gateway.send(Call::post("/events", "{\"order\":1}")).await;
        let problem = answer.problem(502, "aws-failed");
        assert!(!problem.to_string().contains("secret detail"), "{problem}");
        let log = gateway.log_lines("\"aws call\"", 1).await;
        assert_eq!(log[0]["error_code"], "InternalFailure", "{}", log[0]);
    }
}

/// A DynamoDB condition that fails is the client's 409, not retried.
#[tokio::test]
async fn a_failed_dynamodb_condition_is_a_409() {
    let moto = Moto::start().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk());
    for runtime in BOTH {
        let table = named("accounts", runtime);
        create_table(&dynamodb, &table, ("id", None)).await;
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/accounts/{id}",
            &format!(
                "methods = [\"PUT\"]\ndynamodb = {{ table = \"{table}\", key = {{ id = \"{{path.id}}\" }}, action = \"put\", condition = \"attribute_not_exists(id)\" }}"
            ),
        );
        let gateway = start(app, runtime).await;
        let first = gateway
            .send(Call::new("PUT", "/accounts/a1").body("{\"owner\":\"ana\"}"))
            .await;
        assert_eq!(first.status, 201, "{runtime:?}: {:?}", first.body);
        let second = gateway
            .send(Call::new("PUT", "/accounts/a1").body("{\"owner\":\"bob\"}"))
            .await;
        second.problem(409, "aws-conflict");
        let stored = dynamodb
            .get_item()
            .table_name(&table)
            .key(
                "id",
                aws_sdk_dynamodb::types::AttributeValue::S("a1".into()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(stored.item().unwrap()["owner"].as_s().unwrap(), "ana");
    }
}

/// What every route has applies to AWS routes unchanged: auth (and claims in templates),
/// request_schema, transform.response, the cache, and the OpenAPI document.
#[tokio::test]
async fn auth_schema_transform_and_cache_apply_to_aws_routes() {
    let moto = Moto::start().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk());
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("note.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","required":["text"],"properties":{"text":{"type":"string"}}}"#,
    )
    .unwrap();
    for runtime in BOTH {
        let table = named("notes", runtime);
        create_table(&dynamodb, &table, ("id", None)).await;
        let dynamo = format!(
            "dynamodb = {{ table = \"{table}\", key = {{ id = \"{{claims.sub}}/{{path.note}}\" }} }}\nauth = [\"api_key:partners\"]"
        );
        let app = TestApp::new()
            .config(&aws_section(&moto))
            .config(&format!(
                "[auth.api_keys.partners]\nkeys = [{{ id = \"acme\", sha256 = \"{}\" }}]",
                crate::helpers::sha256_hex("acme-key")
            ))
            .route(
                "/notes/{note}",
                &format!(
                    "methods = [\"PUT\"]\n{dynamo}\nrequest_schema = {:?}",
                    schema.display().to_string()
                ),
            )
            .route(
                "/notes/{note}",
                &format!(
                    "methods = [\"GET\"]\n{dynamo}\ncache = {{ ttl = \"60s\", per_principal = true }}\ntransform.response = {{ deny = [\"/internal\"] }}"
                ),
            );
        let gateway = start(app, runtime).await;
        let key = ("x-api-key", "acme-key");

        gateway
            .send(Call::get("/notes/n1"))
            .await
            .problem(401, "unauthorized");
        gateway
            .send(
                Call::new("PUT", "/notes/n1")
                    .header(key.0, key.1)
                    .header("content-type", "application/json")
                    .body("{\"title\":\"no text\"}"),
            )
            .await
            .problem(400, "validation-failed");
        let put = gateway
            .send(
                Call::new("PUT", "/notes/n1")
                    .header(key.0, key.1)
                    .header("content-type", "application/json")
                    .body("{\"text\":\"hi\",\"internal\":\"x\"}"),
            )
            .await;
        assert_eq!(put.status, 201, "{runtime:?}: {:?}", put.body);
        let stored = dynamodb
            .get_item()
            .table_name(&table)
            .key(
                "id",
                aws_sdk_dynamodb::types::AttributeValue::S("acme/n1".into()),
            )
            .send()
            .await
            .unwrap();
        assert!(stored.item().is_some(), "the key took the API key's id");

        let first = gateway
            .send(Call::get("/notes/n1").header(key.0, key.1))
            .await;
        assert_eq!(first.status, 200, "{:?}", first.body);
        assert_eq!(first.json(), json!({ "id": "acme/n1", "text": "hi" }));
        assert_eq!(first.header("x-cache"), ["MISS"]);
        let second = gateway
            .send(Call::get("/notes/n1").header(key.0, key.1))
            .await;
        assert_eq!(second.header("x-cache"), ["HIT"]);
        assert_eq!(second.json(), first.json());
        let calls = gateway.log_lines("\"aws call\"", 2).await;
        assert_eq!(calls.len(), 2, "one PutItem and one GetItem: {calls:?}");

        let openapi = gateway.send(Call::get("/openapi.json")).await.json();
        let operations = &openapi["paths"]["/notes/{note}"];
        assert!(
            operations["get"].is_object() && operations["put"].is_object(),
            "{operations}"
        );
    }
}

/// When the service cannot be reached, the call fails fast as a 502 of the service, not a
/// hang until the deadline.
#[tokio::test]
async fn an_unreachable_service_is_a_502_problem_after_the_retries() {
    let port = crate::helpers::closed_port().await;
    for runtime in BOTH {
        let app = TestApp::new()
            .config(&Moto::section(
                &format!("http://127.0.0.1:{port}"),
                "[aws.retry]\nattempts = 2\ninitial_backoff = \"1ms\"",
            ))
            .route(
                "/orders",
                &format!(
                    "sqs = {{ queue_url = \"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/orders\" }}"
                ),
            );
        let gateway = start(app, runtime).await;
        let answer = gateway.send(Call::post("/orders", "x")).await;
        let problem = answer.problem(502, "aws-failed");
        assert!(
            !problem.to_string().contains("127.0.0.1"),
            "no endpoint in the answer: {problem}"
        );
        let log = gateway.log_lines("\"aws call\"", 1).await;
        assert_eq!(log[0]["attempts"], 2, "{}", log[0]);
    }
}

/// Without static credentials in the environment, the default chain is made on the first
/// call: start-up reads no profile, and a credentials file written after start-up is found.
#[tokio::test]
async fn credentials_come_from_the_default_chain_made_on_the_first_call() {
    let moto = Moto::start().await;
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk());
    for runtime in BOTH {
        let queue = sqs
            .create_queue()
            .queue_name(named("profile-credentials", runtime))
            .send()
            .await
            .unwrap();
        let queue_url = queue.queue_url().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        let credentials_path = credentials.to_str().unwrap();
        let mut env: Vec<(&str, &str)> = Moto::env()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("AWS_SHARED_CREDENTIALS_FILE"))
            .map(|(name, value)| match name {
                "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => (name, ""),
                _ => (name, value),
            })
            .collect();
        env.push(("AWS_SHARED_CREDENTIALS_FILE", credentials_path));
        let app = TestApp::new().config(&aws_section(&moto)).route(
            "/orders",
            &format!("sqs = {{ queue_url = \"{queue_url}\" }}"),
        );
        let gateway = app.start_binary(runtime, &env).await;

        std::fs::write(
            &credentials,
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        )
        .unwrap();
        let answer = gateway.send(Call::post("/orders", "from a profile")).await;
        assert_eq!(answer.status, 202, "{runtime:?}: {:?}", answer.body);
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .send()
            .await
            .unwrap();
        assert_eq!(received.messages()[0].body(), Some("from a profile"));
    }
}

#[test]
fn check_names_the_key_of_each_malformed_aws_setting() {
    let config = ConfigFile::new(
        "[aws]\nendpoint_url = \"not a url\"\ncorrelation_id = [\"cookie:x\"]\n\
         [[routes]]\npath = \"/a\"\nsqs = { queue_url = \"https://example.com/queue\" }\n\
         [[routes]]\npath = \"/b/{id}\"\nsns = { topic_arn = \"arn:aws:sqs:us-east-1:1:x\", subject = \"{path.nope}\" }\n\
         [[routes]]\npath = \"/c\"\nupstream = \"x\"\nsqs = { queue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\" }\n",
    );
    let output = config.run(&["check"]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{text}");
    for key in [
        "aws.endpoint_url",
        "aws.correlation_id[0]",
        "routes[0] (/a).sqs.queue_url",
        "routes[1] (/b/{id}).sns.topic_arn",
        "routes[1] (/b/{id}).sns.subject: {path.nope}",
        "routes[2] (/c): set only one action",
    ] {
        assert!(text.contains(key), "{key} is named in:\n{text}");
    }
}

#[test]
fn iam_prints_a_least_privilege_policy_for_the_configured_routes() {
    let config = ConfigFile::new(&format!(
        "[aws]\nregion = \"{REGION}\"\n\
         [[routes]]\npath = \"/orders\"\nsqs = {{ queue_url = \"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/orders\" }}\n\
         [[routes]]\npath = \"/items/{{id}}\"\nmethods = [\"GET\"]\ndynamodb = {{ table = \"items\", key = {{ id = \"{{path.id}}\" }} }}\n\
         [[routes]]\npath = \"/files/{{*key}}\"\nmethods = [\"GET\"]\ns3 = {{ bucket = \"docs\", key = \"public/{{path.key}}\" }}\n"
    ));
    let policy: Value = serde_json::from_str(&config.run_ok(&["iam"])).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let actions_on = |resource: &str| -> Vec<String> {
        statements
            .iter()
            .filter(|s| {
                s["Resource"] == json!(resource)
                    || s["Resource"]
                        .as_array()
                        .is_some_and(|r| r.contains(&json!(resource)))
            })
            .flat_map(|s| match &s["Action"] {
                Value::String(action) => vec![action.clone()],
                Value::Array(actions) => actions
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect(),
                _ => vec![],
            })
            .collect()
    };
    assert_eq!(
        actions_on(&format!("arn:aws:sqs:{REGION}:{ACCOUNT}:orders")),
        ["sqs:SendMessage"]
    );
    let table = actions_on(&format!("arn:aws:dynamodb:{REGION}:*:table/items"));
    assert_eq!(table, ["dynamodb:GetItem"], "GET only: {policy}");
    assert_eq!(
        actions_on("arn:aws:s3:::docs/public/*"),
        ["s3:GetObject"],
        "{policy}"
    );
    assert!(
        !policy.to_string().contains("\"*\""),
        "no wildcard action or resource: {policy}"
    );
}

// ---- set-up with the SDK ----

async fn create_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    (partition, sort): (&str, Option<&str>),
) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let mut create = dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(partition)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(partition)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        );
    if let Some(sort) = sort {
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(sort)
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(sort)
                    .key_type(KeyType::Range)
                    .build()
                    .unwrap(),
            );
    }
    create.send().await.unwrap();
}

/// A new queue, subscribed by `subscribe(queue_arn)`; its URL.
async fn subscribed_queue<F, Fut>(sqs: &aws_sdk_sqs::Client, name: &str, subscribe: F) -> String
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let queue_url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    subscribe(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")).await;
    queue_url
}

/// The next message of a queue, as JSON; waits for it.
async fn receive_json(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Value {
    for _ in 0..50 {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .send()
            .await
            .unwrap();
        if let Some(message) = received.messages().first() {
            return serde_json::from_str(message.body().unwrap()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no message arrived in {queue_url}");
}
