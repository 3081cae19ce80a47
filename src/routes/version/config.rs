//! `[versioning]` and the route keys `version` and `deprecated`: which API version a request
//! asks for, and how a deprecated route says so (RFC 9745 `Deprecation`, RFC 8594 `Sunset`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Problems, parse_header_name};

/// `[versioning]`: how a request names the version of a versioned route. A path prefix
/// (`/v2/things`) always works; then the header, then the query parameter, then `default`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VersioningConfig {
    /// The version of requests that name none.
    pub default: Option<String>,
    /// Request header naming the version.
    pub header: Option<String>,
    /// Query parameter naming the version.
    pub query: Option<String>,
}

impl Default for VersioningConfig {
    fn default() -> Self {
        Self {
            default: None,
            header: Some("accept-version".into()),
            query: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct VersioningSettings {
    pub default: Option<String>,
    pub header: Option<HeaderName>,
    pub query: Option<String>,
}

/// `deprecated = { since, sunset, link }` or `deprecated = true`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DeprecatedConfig {
    Flag(bool),
    Details(DeprecationDetails),
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprecationDetails {
    /// When the route was (or will be) deprecated: `"2026-01-31"` or an RFC 3339 time.
    pub since: Option<String>,
    /// When the route stops working.
    pub sunset: Option<String>,
    /// A page about the deprecation (migration guide).
    pub link: Option<String>,
}

/// The response headers of a deprecated route, computed once.
#[derive(Clone, Debug)]
pub struct Deprecation {
    pub deprecation: HeaderValue,
    pub sunset: Option<HeaderValue>,
    pub link: Option<HeaderValue>,
}

/// Validates `[versioning]`; `versions` are the routes' `version`s, which `default` must be
/// one of.
pub fn settings(
    versioning: &VersioningConfig,
    versions: &[&str],
    problems: &mut Problems,
) -> VersioningSettings {
    let header = versioning
        .header
        .as_deref()
        .and_then(|name| parse_header_name("versioning.header", name, problems));
    if versioning.query.as_deref() == Some("") {
        problems.add(
            "versioning.query",
            "name the query parameter, or omit the key",
        );
    }
    if let Some(default) = &versioning.default
        && !versions.contains(&default.as_str())
    {
        problems.add(
            "versioning.default",
            format!("{default:?} is not the `version` of any route"),
        );
    }
    VersioningSettings {
        default: versioning.default.clone(),
        header,
        query: versioning.query.clone().filter(|q| !q.is_empty()),
    }
}

/// A route's `version`: one path segment of letters, digits, `.`, `-` or `_`.
pub fn check_version(key: &str, version: &str, problems: &mut Problems) {
    let valid = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        problems.add(
            key,
            format!("{version:?} must be one path segment of letters, digits, '.', '-' or '_'"),
        );
    }
}

pub fn deprecation(
    key: &str,
    config: &DeprecatedConfig,
    loaded_at: SystemTime,
    problems: &mut Problems,
) -> Option<Deprecation> {
    let details = match config {
        DeprecatedConfig::Flag(false) => return None,
        DeprecatedConfig::Flag(true) => DeprecationDetails::default(),
        DeprecatedConfig::Details(details) => details.clone(),
    };
    let mut date = |field: &str, text: &Option<String>| {
        text.as_deref().and_then(|text| {
            parse_date(text)
                .map_err(|message| problems.add(format!("{key}.{field}"), message))
                .ok()
        })
    };
    // Without `since`, the route counts as deprecated from the day the configuration was
    // loaded (RFC 9745 §2.1 needs a date).
    let since = date("since", &details.since).unwrap_or_else(|| start_of_day(loaded_at));
    let sunset = date("sunset", &details.sunset);
    if let Some(sunset) = sunset
        && sunset < since
    {
        problems.add(
            format!("{key}.sunset"),
            "is before the deprecation date (RFC 9745 §4)",
        );
    }
    let link = details.link.as_deref().and_then(|link| {
        let absolute = (link.starts_with("https://") || link.starts_with("http://"))
            && link.parse::<http::Uri>().is_ok();
        if !absolute {
            problems.add(
                format!("{key}.link"),
                format!("{link:?} is not an absolute http(s) URL"),
            );
            return None;
        }
        HeaderValue::try_from(format!("<{link}>; rel=\"deprecation\"; type=\"text/html\"")).ok()
    });
    let seconds = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Some(Deprecation {
        // RFC 9745 §2.1: a Structured Field Date, `@` and Unix seconds.
        deprecation: HeaderValue::from_str(&format!("@{seconds}")).ok()?,
        // RFC 8594 §3: an HTTP-date.
        sunset: sunset.and_then(|s| HeaderValue::try_from(httpdate::fmt_http_date(s)).ok()),
        link,
    })
}

/// `2027-06-30` (midnight UTC) or an RFC 3339 time.
fn parse_date(text: &str) -> Result<SystemTime, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map_err(|_| format!("{text:?} is not a date (\"2027-06-30\") or an RFC 3339 time"))
}

fn start_of_day(time: SystemTime) -> SystemTime {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(seconds - seconds % 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deprecation_headers_follow_rfc_9745_and_8594() {
        let mut problems = Problems::default();
        let config = DeprecatedConfig::Details(DeprecationDetails {
            since: Some("2026-01-31".into()),
            sunset: Some("2027-06-30".into()),
            link: Some("https://example.com/migrate".into()),
        });
        let headers = deprecation(
            "routes[0].deprecated",
            &config,
            SystemTime::now(),
            &mut problems,
        )
        .unwrap();
        assert!(problems.is_empty());
        assert_eq!(headers.deprecation, "@1769817600");
        assert_eq!(headers.sunset.unwrap(), "Wed, 30 Jun 2027 00:00:00 GMT");
        assert_eq!(
            headers.link.unwrap(),
            "<https://example.com/migrate>; rel=\"deprecation\"; type=\"text/html\""
        );
    }

    #[test]
    fn a_bare_flag_dates_the_deprecation_to_the_day_of_loading() {
        let mut problems = Problems::default();
        let loaded = UNIX_EPOCH + Duration::from_secs(1_795_219_200 + 3_600);
        let headers =
            deprecation("d", &DeprecatedConfig::Flag(true), loaded, &mut problems).unwrap();
        assert_eq!(headers.deprecation, "@1795219200");
        assert!(headers.sunset.is_none() && headers.link.is_none());
    }
}
