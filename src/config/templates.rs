//! Starting configurations for `proxyfn init`: each is a complete, valid proxyfn.toml (the
//! tests check and serve every one).

/// A template: its name, what it is for, and its text.
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    pub text: &'static str,
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "minimal",
        about: "one service behind the gateway",
        text: include_str!("templates/minimal.toml"),
    },
    Template {
        name: "jwt",
        about: "an API behind JWT bearer tokens from a JWKS (Cognito, Auth0), per-user limits",
        text: include_str!("templates/jwt.toml"),
    },
    Template {
        name: "shared-redis",
        about: "rate limits, API keys and the cache shared by every instance through Redis",
        text: include_str!("templates/shared-redis.toml"),
    },
    Template {
        name: "lambda",
        about: "the function behind an API Gateway REST API with a stage",
        text: include_str!("templates/lambda.toml"),
    },
    Template {
        name: "aws",
        about: "routes that call SQS, DynamoDB, S3 and EventBridge directly, with retries and a fallback",
        text: include_str!("templates/aws.toml"),
    },
];

/// The template called `name`.
pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}
