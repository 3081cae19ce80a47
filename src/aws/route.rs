//! The AWS clients and a route's call (built with at least one AWS service).

use std::sync::Arc;

use aws_smithy_runtime_api::client::http::SharedHttpClient;
use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::HeaderValue;

use super::{
    call,
    config::{AwsAction, AwsFault, AwsSettings},
    fault,
};
use crate::{
    config::ConfigError,
    error::Error,
    routes::{X_PROXYFN_FALLBACK, config::RoutePlan, mock::MockRoute},
};

/// What every AWS route shares: the validated `[aws]` section and the SDK's base
/// configuration (region, endpoint, credentials chain, retry mode, HTTP client).
#[derive(Clone, Debug)]
pub struct Aws {
    settings: Arc<AwsSettings>,
    sdk: aws_types::SdkConfig,
    /// The HTTP client of every service client (hyper 1, rustls), which a route's fault
    /// injection wraps.
    http: SharedHttpClient,
}

impl Aws {
    /// The base configuration, when some route calls AWS; `None` otherwise.
    pub async fn new(
        settings: &AwsSettings,
        mut routes: impl Iterator<Item = &RoutePlan>,
    ) -> Result<Option<Self>, ConfigError> {
        if !routes.any(|route| route.aws().is_some()) {
            return Ok(None);
        }
        use aws_config::{
            BehaviorVersion, environment::EnvironmentVariableRegionProvider,
            meta::region::RegionProviderChain, profile::ProfileFileRegionProvider,
        };
        use aws_smithy_types::retry::RetryConfig;
        // IMDS is left out of the region chain: it would be a network call at start-up.
        let region = RegionProviderChain::first_try(
            settings.region.clone().map(aws_types::region::Region::new),
        )
        .or_else(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new());
        let behavior = BehaviorVersion::v2026_01_12();
        use aws_smithy_http_client::tls;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_https();
        let mut loader = aws_config::defaults(behavior)
            .http_client(http.clone())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.attempts)
                    .with_initial_backoff(settings.initial_backoff)
                    .with_max_backoff(settings.max_backoff),
            );
        if let Some(endpoint) = &settings.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let Some(region) = region.region().await else {
            return Err(ConfigError::single(
                "aws.region",
                "no AWS region: set [aws] region, or AWS_REGION in the environment",
            ));
        };
        let sdk = loader
            .region(region.clone())
            .credentials_provider(credentials(region, http.clone()))
            .load()
            .await;
        Ok(Some(Self {
            settings: Arc::new(settings.clone()),
            sdk,
            http,
        }))
    }
}

/// The credentials of every client. Static credentials in the environment (as Lambda sets
/// them) are what the default chain would pick first, so they are read from there directly;
/// otherwise the default chain (profile, web identity, ECS, IMDS) is made on the first call
/// that signs a request. Making it at start-up built its providers' clients (STS for web
/// identity, IMDS), which was most of what AWS routes added to a Lambda init (BENCHMARKS.md).
fn credentials(
    region: aws_types::region::Region,
    http: SharedHttpClient,
) -> aws_credential_types::provider::SharedCredentialsProvider {
    use aws_credential_types::provider::SharedCredentialsProvider;
    let set = |name| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    if set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY") {
        SharedCredentialsProvider::new(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        )
    } else {
        SharedCredentialsProvider::new(LazyDefaultChain {
            region,
            http,
            chain: tokio::sync::OnceCell::new(),
        })
    }
}

/// aws-config's default credentials chain, made when first asked for credentials.
#[derive(Debug)]
struct LazyDefaultChain {
    region: aws_types::region::Region,
    http: SharedHttpClient,
    chain:
        tokio::sync::OnceCell<aws_config::default_provider::credentials::DefaultCredentialsChain>,
}

impl aws_credential_types::provider::ProvideCredentials for LazyDefaultChain {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| {
                    // The builder gives the config its region.
                    let config = aws_config::provider_config::ProviderConfig::default()
                        .with_http_client(self.http.clone());
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .configure(config)
                        .region(self.region.clone())
                        .build()
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

/// One route's AWS call.
pub struct AwsRoute {
    /// The service client, made on the route's first call: making one builds its runtime
    /// plugins and endpoint resolver, which a Lambda init would pay for every AWS route
    /// though an invocation calls one (BENCHMARKS.md).
    service: std::sync::OnceLock<Service>,
    aws: Aws,
    action: AwsAction,
    /// The HTTP client with the route's fault injection, if it has one.
    faulty_http: Option<SharedHttpClient>,
    /// The route's name in the log.
    route: Arc<str>,
    fallback: Option<MockRoute>,
}

/// The service client of a route, with its validated action.
enum Service {
    #[cfg(feature = "sqs")]
    Sqs(super::sqs::SqsRoute),
    #[cfg(feature = "sns")]
    Sns(super::sns::SnsRoute),
    #[cfg(feature = "s3")]
    S3(super::s3::S3Route),
    #[cfg(feature = "dynamodb")]
    DynamoDb(super::dynamodb::DynamoRoute),
    #[cfg(feature = "kinesis")]
    Kinesis(super::kinesis::KinesisRoute),
    #[cfg(feature = "eventbridge")]
    EventBridge(super::eventbridge::EventBridgeRoute),
    #[cfg(feature = "step-functions")]
    StepFunctions(super::sfn::SfnRoute),
}

impl AwsRoute {
    /// The route's call; `None` for a service this build lacks (validation refused it).
    pub fn new(
        aws: &Aws,
        action: &AwsAction,
        route: Arc<str>,
        fault: Option<AwsFault>,
        fallback: Option<MockRoute>,
    ) -> Option<Self> {
        if !super::config::built_in(action.service()) {
            return None;
        }
        let faulty_http =
            fault.map(|fault| fault::FaultClient::wrapping(aws.http.clone(), fault, action));
        Some(Self {
            service: std::sync::OnceLock::new(),
            aws: aws.clone(),
            action: action.clone(),
            faulty_http,
            route,
            fallback,
        })
    }

    /// The route's service client, made on first use.
    fn service(&self) -> &Service {
        self.service.get_or_init(|| {
            let base = &self.aws.sdk;
            let http = self.faulty_http.clone();
            match &self.action {
                #[cfg(feature = "sqs")]
                AwsAction::Sqs(action) => {
                    Service::Sqs(super::sqs::SqsRoute::new(base, http, action))
                }
                #[cfg(feature = "sns")]
                AwsAction::Sns(action) => {
                    Service::Sns(super::sns::SnsRoute::new(base, http, action))
                }
                #[cfg(feature = "s3")]
                AwsAction::S3(action) => Service::S3(super::s3::S3Route::new(
                    base,
                    http,
                    action,
                    &self.aws.settings,
                )),
                #[cfg(feature = "dynamodb")]
                AwsAction::DynamoDb(action) => {
                    Service::DynamoDb(super::dynamodb::DynamoRoute::new(base, http, action))
                }
                #[cfg(feature = "kinesis")]
                AwsAction::Kinesis(action) => {
                    Service::Kinesis(super::kinesis::KinesisRoute::new(base, http, action))
                }
                #[cfg(feature = "eventbridge")]
                AwsAction::EventBridge(action) => Service::EventBridge(
                    super::eventbridge::EventBridgeRoute::new(base, http, action),
                ),
                #[cfg(feature = "step-functions")]
                AwsAction::StepFunctions(action) => {
                    Service::StepFunctions(super::sfn::SfnRoute::new(base, http, action))
                }
                #[allow(unreachable_patterns)]
                _ => unreachable!("AwsRoute::new refuses a service this build lacks"),
            }
        })
    }

    /// Serves a request; `params` are the route's path parameters, decoded.
    pub async fn respond(&self, request: Request, params: Vec<(String, String)>) -> Response {
        let result = self.call(request, params).await;
        let error = match result {
            Ok(response) => return response,
            Err(error) => error,
        };
        match &self.fallback {
            Some(fallback) if error.is_upstream_failure() => {
                tracing::info!(route = %self.route, reason = %error, "serving the route's fallback");
                let mut response = fallback.response();
                response
                    .headers_mut()
                    .insert(X_PROXYFN_FALLBACK, HeaderValue::from_static("true"));
                response
            }
            _ => error.into_response(),
        }
    }

    async fn call(
        &self,
        request: Request,
        params: Vec<(String, String)>,
    ) -> Result<Response, Error> {
        let mut call =
            call::Call::begin(request, params, &self.aws.settings, self.reads_body()).await?;
        let result = match self.service() {
            #[cfg(feature = "sqs")]
            Service::Sqs(route) => route.call(&mut call).await,
            #[cfg(feature = "sns")]
            Service::Sns(route) => route.call(&mut call).await,
            #[cfg(feature = "s3")]
            Service::S3(route) => route.call(&mut call).await,
            #[cfg(feature = "dynamodb")]
            Service::DynamoDb(route) => route.call(&mut call).await,
            #[cfg(feature = "kinesis")]
            Service::Kinesis(route) => route.call(&mut call).await,
            #[cfg(feature = "eventbridge")]
            Service::EventBridge(route) => route.call(&mut call).await,
            #[cfg(feature = "step-functions")]
            Service::StepFunctions(route) => route.call(&mut call).await,
        };
        call.finish(&self.route, &result);
        result
    }

    /// Whether the call needs the whole body before it starts (all but S3 uploads, which
    /// stream it).
    fn reads_body(&self) -> call::BodyUse {
        match &self.action {
            AwsAction::S3(_) => call::BodyUse::Stream,
            _ => call::BodyUse::Whole,
        }
    }
}
