//! The one builder of Lambda events for the tests, in the documented shapes of API Gateway
//! REST APIs (payload 1.0), HTTP APIs (payload 2.0), Function URLs and ALB target groups
//! (multi-value headers on). The public fixtures in `../shared/lambda-events/` are the
//! world's shapes (lambda_events.rs); these are the ones a test needs to vary.

use serde_json::{Map, Value, json};

/// Which AWS front door sends the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontDoor {
    Rest,
    HttpApi,
    FunctionUrl,
    Alb,
}

#[derive(Clone, Debug)]
pub struct LambdaEvent {
    door: FrontDoor,
    method: String,
    path: String,
    stage: String,
    /// Query parameters in order; a name may repeat.
    query: Vec<(String, String)>,
    /// The HTTP API's `rawQueryString` as sent, when it is not the encoding of `query`.
    raw_query: Option<String>,
    /// Header fields in order; a name may repeat.
    headers: Vec<(String, String)>,
    cookies: Vec<String>,
    /// The body as the event carries it, and whether it is base64.
    body: Option<(String, bool)>,
}

impl LambdaEvent {
    fn new(door: FrontDoor, method: &str, path: &str, stage: &str) -> Self {
        Self {
            door,
            method: method.to_owned(),
            path: path.to_owned(),
            stage: stage.to_owned(),
            query: Vec::new(),
            raw_query: None,
            headers: Vec::new(),
            cookies: Vec::new(),
            body: None,
        }
    }

    /// A REST API event of stage `prod` (`path` excludes the stage).
    pub fn rest(method: &str, path: &str) -> Self {
        Self::new(FrontDoor::Rest, method, path, "prod")
    }

    /// An HTTP API event of the `$default` stage.
    pub fn http_api(method: &str, path: &str) -> Self {
        Self::new(FrontDoor::HttpApi, method, path, "$default")
    }

    pub fn function_url(method: &str, path: &str) -> Self {
        Self::new(FrontDoor::FunctionUrl, method, path, "$default")
    }

    pub fn alb(method: &str, path: &str) -> Self {
        Self::new(FrontDoor::Alb, method, path, "")
    }

    pub fn stage(mut self, stage: &str) -> Self {
        self.stage = stage.to_owned();
        self
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The HTTP API's `rawQueryString`, exactly as given.
    pub fn raw_query(mut self, raw: &str) -> Self {
        self.raw_query = Some(raw.to_owned());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A cookie in the HTTP API's `cookies` list (other front doors send a `Cookie` header).
    pub fn cookie(mut self, cookie: &str) -> Self {
        self.cookies.push(cookie.to_owned());
        self
    }

    /// A body as the event carries it: text, or base64 when `base64` is true.
    pub fn body_as_sent(mut self, body: &str, base64: bool) -> Self {
        self.body = Some((body.to_owned(), base64));
        self
    }

    pub fn text_body(self, body: &str) -> Self {
        self.body_as_sent(body, false)
    }

    pub fn build(self) -> Value {
        match self.door {
            FrontDoor::Rest => self.rest_json(),
            FrontDoor::HttpApi | FrontDoor::FunctionUrl => self.http_api_json(),
            FrontDoor::Alb => self.alb_json(),
        }
    }

    fn multi_value(pairs: &[(String, String)]) -> Map<String, Value> {
        let mut map = Map::new();
        for (name, value) in pairs {
            let entry = map.entry(name.clone()).or_insert_with(|| json!([]));
            entry.as_array_mut().unwrap().push(json!(value));
        }
        map
    }

    /// The last value of each name, as single-value maps hold them.
    fn single_value(pairs: &[(String, String)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect()
    }

    fn or_null(map: Map<String, Value>) -> Value {
        if map.is_empty() {
            Value::Null
        } else {
            Value::Object(map)
        }
    }

    fn rest_json(self) -> Value {
        let stage = &self.stage;
        let path = &self.path;
        json!({
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": self.method,
            "headers": Self::single_value(&self.headers),
            "multiValueHeaders": Self::multi_value(&self.headers),
            "queryStringParameters": Self::or_null(Self::single_value(&self.query)),
            "multiValueQueryStringParameters": Self::or_null(Self::multi_value(&self.query)),
            "pathParameters": { "proxy": path.trim_start_matches('/') },
            "stageVariables": null,
            "requestContext": {
                "accountId": "123456789012",
                "resourceId": "us4z18",
                "stage": stage,
                "requestId": "41b45ea3-70b5-11e6-b7bd-69b5aaebc7d9",
                "identity": { "sourceIp": "198.51.100.7", "userAgent": "curl/8.0" },
                "resourcePath": "/{proxy+}",
                "httpMethod": self.method,
                "apiId": "wt6mne2s9k",
                "path": format!("/{stage}{path}"),
                "protocol": "HTTP/1.1",
                "domainName": "wt6mne2s9k.execute-api.us-east-1.amazonaws.com"
            },
            "body": self.body.as_ref().map(|(body, _)| body),
            "isBase64Encoded": self.body.as_ref().is_some_and(|(_, base64)| *base64)
        })
    }

    /// HTTP API payload 2.0: repeated headers are joined with commas, cookies come apart.
    fn http_api_json(self) -> Value {
        let (domain, id) = match self.door {
            FrontDoor::FunctionUrl => ("abcdefg.lambda-url.us-east-1.on.aws", "abcdefg"),
            _ => (
                "r3pmxmplak.execute-api.us-east-2.amazonaws.com",
                "r3pmxmplak",
            ),
        };
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            match headers.get_mut(name) {
                Some(Value::String(joined)) => {
                    joined.push(',');
                    joined.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), json!(value));
                }
            }
        }
        let raw_query = self.raw_query.clone().unwrap_or_else(|| {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&self.query)
                .finish()
        });
        let mut event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": self.path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": id,
                "domainName": domain,
                "domainPrefix": id,
                "http": { "method": self.method, "path": self.path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.42", "userAgent": "curl/8.0" },
                "requestId": "JKJaXmPLvHcESHA=",
                "routeKey": "$default",
                "stage": self.stage,
                "time": "21/Nov/2026:08:00:00 +0000",
                "timeEpoch": 1795248000000u64
            },
            "isBase64Encoded": self.body.as_ref().is_some_and(|(_, base64)| *base64)
        });
        if !self.cookies.is_empty() {
            event["cookies"] = json!(self.cookies);
        }
        if let Some((body, _)) = &self.body {
            event["body"] = json!(body);
        }
        event
    }

    fn alb_json(self) -> Value {
        json!({
            "requestContext": { "elb": { "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/proxyfn/6d0ecf831eec9f09" } },
            "httpMethod": self.method,
            "path": self.path,
            "multiValueQueryStringParameters": Self::multi_value(&self.query),
            "multiValueHeaders": Self::multi_value(&self.headers),
            "body": self.body.as_ref().map_or("", |(body, _)| body.as_str()),
            "isBase64Encoded": self.body.as_ref().is_some_and(|(_, base64)| *base64)
        })
    }
}
