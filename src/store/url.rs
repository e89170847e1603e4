//! `open_store`: turns the SOURCE a user types (`reef mount SOURCE ...`) into
//! a store. See DESIGN.md §1 for the accepted forms.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStoreScheme, RetryConfig};
use url::Url;

use super::{LocalFsStore, MemoryStore, ObjectStore, ObjectStoreAdapter, StoreError, StoreResult};

const ACCEPTED: &str = "use a directory path, file:///abs/path, memory:// or s3://bucket/prefix \
     (gs://, az:// and https:// URLs also work)";

fn source_error(source: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        key: source.to_string(),
        message: format!("{why}; {ACCEPTED}"),
    }
}

/// Opens the store SOURCE names, with cloud settings from the process
/// environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
pub fn open_store(source: &str) -> StoreResult<Arc<dyn ObjectStore>> {
    open_store_with_env(source, std::env::vars())
}

/// [`open_store`] with an explicit environment, so tests and embedders need
/// not mutate the process-wide one.
pub fn open_store_with_env<I, K, V>(source: &str, env: I) -> StoreResult<Arc<dyn ObjectStore>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: Into<String>,
{
    if source.is_empty() {
        return Err(source_error(source, "empty source"));
    }
    if !looks_like_url(source) {
        return Ok(Arc::new(LocalFsStore::new(PathBuf::from(source))?));
    }
    let url = Url::parse(source).map_err(|e| source_error(source, e))?;
    match url.scheme() {
        "file" => {
            let path = url
                .to_file_path()
                .map_err(|()| source_error(source, "not an absolute local path"))?;
            return Ok(Arc::new(LocalFsStore::new(path)?));
        }
        "memory" => {
            if url.has_host() || !matches!(url.path(), "" | "/") {
                return Err(source_error(source, "memory:// takes no path"));
            }
            return Ok(Arc::new(MemoryStore::new()));
        }
        _ => {}
    }
    let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|e| source_error(source, e))?;
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.into()))
        .collect();
    let store: Arc<dyn object_store::ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let builder = env_config(&env, "AWS_", AmazonS3Builder::new(), s3_config);
            return s3_store(builder.with_url(source), prefix.as_ref(), source);
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut builder =
                env_config(&env, "GOOGLE_", GoogleCloudStorageBuilder::new(), gcs_config);
            if let Some((_, path)) = env.iter().find(|(k, _)| k == "SERVICE_ACCOUNT") {
                builder = builder.with_service_account_path(path);
            }
            let store = builder.with_url(source).with_retry(retry_config()).build();
            Arc::new(store.map_err(|e| source_error(source, e))?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let builder = env_config(&env, "AZURE_", MicrosoftAzureBuilder::new(), azure_config);
            let store = builder.with_url(source).with_retry(retry_config()).build();
            Arc::new(store.map_err(|e| source_error(source, e))?)
        }
        ObjectStoreScheme::Http => {
            let base = &url[..url::Position::BeforePath];
            let store = HttpBuilder::new()
                .with_url(base)
                .with_retry(retry_config())
                .build();
            Arc::new(store.map_err(|e| source_error(source, e))?)
        }
        other => return Err(source_error(source, format!("unsupported scheme {other:?}"))),
    };
    wrap(store, prefix.as_ref(), source)
}

/// Builds an S3 store with the settings reef relies on and scopes it to
/// `prefix`. Public so tests can point a builder at a local S3 server.
pub fn s3_store(
    builder: AmazonS3Builder,
    prefix: &str,
    description: &str,
) -> StoreResult<Arc<dyn ObjectStore>> {
    // Create-if-absent must send `If-None-Match: *`: WAL and manifest
    // fencing depend on it. With conditional puts disabled object_store
    // would refuse PutMode::Create instead.
    let store = builder
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(retry_config())
        .build()
        .map_err(|e| source_error(description, e))?;
    wrap(Arc::new(store), prefix, description)
}

/// Retries for transient errors (5xx, throttling, resets), bounded so a
/// `close()` waiting on a WAL put fails within about a minute rather than
/// object_store's default three. A lost condition (412) is never retried.
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 8,
        retry_timeout: Duration::from_secs(60),
    }
}

fn wrap(
    store: Arc<dyn object_store::ObjectStore>,
    prefix: &str,
    description: &str,
) -> StoreResult<Arc<dyn ObjectStore>> {
    // parse, not from: the prefix comes from a URL already decoded into a
    // path, and `Path::from` would percent-encode it a second time.
    let prefix = Path::parse(prefix).map_err(|e| source_error(description, e))?;
    let store: Arc<dyn object_store::ObjectStore> = if prefix.as_ref().is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    };
    Ok(Arc::new(
        ObjectStoreAdapter::new(store).with_description(description),
    ))
}

/// Applies `PREFIX_NAME=value` variables as builder settings, the way the
/// builders' own `from_env` does, but from the given environment.
fn env_config<B>(
    env: &[(String, String)],
    prefix: &str,
    builder: B,
    apply: impl Fn(B, &str, &str) -> B,
) -> B {
    env.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .fold(builder, |b, (k, v)| apply(b, &k.to_ascii_lowercase(), v))
}

// Unknown variable names are skipped, as the builders' `from_env` does.
fn s3_config(b: AmazonS3Builder, key: &str, value: &str) -> AmazonS3Builder {
    match key.parse::<AmazonS3ConfigKey>() {
        Ok(k) => b.with_config(k, value),
        Err(_) => b,
    }
}

fn gcs_config(b: GoogleCloudStorageBuilder, key: &str, value: &str) -> GoogleCloudStorageBuilder {
    match key.parse::<GoogleConfigKey>() {
        Ok(k) => b.with_config(k, value),
        Err(_) => b,
    }
}

fn azure_config(b: MicrosoftAzureBuilder, key: &str, value: &str) -> MicrosoftAzureBuilder {
    match key.parse::<AzureConfigKey>() {
        Ok(k) => b.with_config(k, value),
        Err(_) => b,
    }
}

/// `scheme://...` or `file:...`; anything else is a directory path, even
/// one containing a colon.
fn looks_like_url(source: &str) -> bool {
    if source.starts_with("file:") {
        return true;
    }
    let Some((scheme, _)) = source.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn parses_local_and_memory_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        let bare = open_store_with_env(path.to_str().expect("utf-8"), no_env()).expect("bare");
        assert_eq!(bare.describe(), format!("file://{}", path.display()));
        let url = format!("file://{}", path.display());
        let file = open_store_with_env(&url, no_env()).expect("file url");
        assert_eq!(file.describe(), url);
        let mem = open_store_with_env("memory://", no_env()).expect("memory");
        assert_eq!(mem.describe(), "memory://");
    }

    #[test]
    fn rejects_unknown_schemes_with_a_hint() {
        for bad in ["ftp://host/x", "memory://x", "file://host/x", ""] {
            let err = match open_store_with_env(bad, no_env()) {
                Err(e) => e.to_string(),
                Ok(s) => panic!("{bad} opened as {}", s.describe()),
            };
            assert!(err.contains("s3://bucket/prefix"), "{bad}: {err}");
        }
    }

    #[test]
    fn s3_url_builds_without_network() {
        let env = [
            ("AWS_ENDPOINT", "http://127.0.0.1:9"),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ];
        let store = open_store_with_env("s3://bucket/some/prefix", env).expect("s3");
        assert_eq!(store.describe(), "s3://bucket/some/prefix");
    }

    #[test]
    fn colon_in_a_path_is_still_a_path() {
        assert!(!looks_like_url("./a:b"));
        assert!(!looks_like_url("relative/dir"));
        assert!(looks_like_url("s3://b/p"));
        assert!(looks_like_url("file:///x"));
    }
}
