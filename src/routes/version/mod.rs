//! API versions: a versioned route answers `/v2/things` (the version as a leading path segment)
//! and `/things` when the request names `v2` in the `[versioning]` header or query parameter,
//! or names nothing and `v2` is the default. A route without `version` serves every version,
//! unless a route of the requested version shares its path.

use http::{HeaderMap, HeaderName, HeaderValue, header};

pub mod config;

use config::{Deprecation, VersioningSettings};

pub struct Versioning {
    settings: VersioningSettings,
    /// `Vary` for answers on versioned paths chosen by header (RFC 9110 §12.5.5).
    vary: Option<HeaderValue>,
}

impl Versioning {
    pub fn new(settings: &VersioningSettings) -> Self {
        Self {
            vary: settings.header.clone().map(HeaderValue::from),
            settings: settings.clone(),
        }
    }

    /// The version a request without a version prefix names: header, query, then default.
    pub fn requested<'a>(
        &'a self,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> Option<&'a str> {
        let from_header = self
            .settings
            .header
            .as_ref()
            .and_then(|name| headers.get(name))
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty());
        let from_query = || {
            let name = self.settings.query.as_deref()?;
            query?
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value)
                .filter(|value| !value.is_empty())
        };
        from_header
            .or_else(from_query)
            .or(self.settings.default.as_deref())
    }

    pub fn vary(&self, headers: &mut HeaderMap) {
        if let Some(vary) = &self.vary {
            headers.append(header::VARY, vary.clone());
        }
    }
}

/// `/v2/things/1` → `("v2", "/things/1")`; `None` without a second segment.
pub fn split_prefix(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash..]))
}

/// RFC 9745 `Deprecation`, RFC 8594 `Sunset` and the `Link` to the migration page.
pub fn mark_deprecated(deprecation: &Deprecation, headers: &mut HeaderMap) {
    headers.insert(
        HeaderName::from_static("deprecation"),
        deprecation.deprecation.clone(),
    );
    if let Some(sunset) = &deprecation.sunset {
        headers.insert(HeaderName::from_static("sunset"), sunset.clone());
    }
    if let Some(link) = &deprecation.link {
        headers.append(header::LINK, link.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_prefix_is_the_first_of_two_or_more_segments() {
        assert_eq!(split_prefix("/v2/things/1"), Some(("v2", "/things/1")));
        assert_eq!(split_prefix("/v2/"), Some(("v2", "/")));
        assert_eq!(split_prefix("/v2"), None);
    }

    #[test]
    fn the_header_wins_over_the_query_which_wins_over_the_default() {
        let versioning = Versioning::new(&VersioningSettings {
            default: Some("v1".into()),
            header: Some(HeaderName::from_static("accept-version")),
            query: Some("version".into()),
        });
        let mut headers = HeaderMap::new();
        assert_eq!(versioning.requested(&headers, None), Some("v1"));
        assert_eq!(
            versioning.requested(&headers, Some("a=1&version=v3")),
            Some("v3")
        );
        headers.insert("accept-version", HeaderValue::from_static("v2"));
        assert_eq!(
            versioning.requested(&headers, Some("version=v3")),
            Some("v2")
        );
    }
}
