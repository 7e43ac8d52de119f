//! Where a watch loop lists and watches from: the [`ListWatchSource`] trait and its kube `Api` adapter.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::ResourceExt;
use serde::de::DeserializeOwned;

/// One list page.
#[derive(Debug, Clone)]
pub struct Page<K> {
    pub items: Vec<K>,
    pub resource_version: String,
    pub continue_token: Option<String>,
}

/// One watch event, as the loop needs it.
#[derive(Debug, Clone)]
pub enum RawEvent<K> {
    Added(K, String),
    Modified(K, String),
    Deleted(K, String),
    Bookmark(String),
    /// An in-stream `ERROR` event carrying a `Status`.
    Error {
        code: u16,
        message: String,
    },
}

/// A failed list or watch request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("API server answered {code}: {message}")]
    Status {
        code: u16,
        message: String,
        /// The server asked to wait this long first (`Retry-After`, kept by
        /// [`crate::retry_after::RetryAfterLayer`]).
        retry_after: Option<Duration>,
    },
    #[error("transport: {0}")]
    Transport(String),
}

impl SourceError {
    /// `410 Gone`: the resourceVersion or continue token is too old.
    pub fn is_gone(&self) -> bool {
        matches!(self, SourceError::Status { code: 410, .. })
    }

    /// How long the server asked us to wait before the next request, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::Status { retry_after, .. } => *retry_after,
            SourceError::Transport(_) => None,
        }
    }
}

impl From<kube::Error> for SourceError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => SourceError::Status {
                code: s.code,
                retry_after: s
                    .details
                    .map(|d| d.retry_after_seconds)
                    .filter(|secs| *secs > 0)
                    .map(|secs| Duration::from_secs(secs.into())),
                message: s.message,
            },
            other => SourceError::Transport(other.to_string()),
        }
    }
}

/// The stream a watch request opens.
pub type RawStream<K> = BoxStream<'static, Result<RawEvent<K>, SourceError>>;

/// Where objects are listed and watched from: the API server (via [`ApiSource`]) or a test fake.
pub trait ListWatchSource: Send + Sync + 'static {
    type Object: Send + 'static;
    fn list(
        &self,
        limit: Option<u32>,
        continue_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Self::Object>, SourceError>>;
    fn watch(
        &self,
        resource_version: String,
        timeout_secs: u32,
    ) -> BoxFuture<'_, Result<RawStream<Self::Object>, SourceError>>;
}

/// The list request of a page: these selectors, page size and continue token.
pub(crate) fn list_params(
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<u32>,
    continue_token: Option<String>,
) -> ListParams {
    ListParams {
        label_selector,
        field_selector,
        limit,
        continue_token,
        ..ListParams::default()
    }
}

/// The watch request: these selectors, the server-side timeout, bookmarks on.
pub(crate) fn watch_params(
    label_selector: Option<String>,
    field_selector: Option<String>,
    timeout_secs: u32,
) -> WatchParams {
    let mut wp = WatchParams::default().timeout(timeout_secs);
    wp.label_selector = label_selector;
    wp.field_selector = field_selector;
    wp.bookmarks = true;
    wp
}

/// One kube watch item as the loop needs it; `rv` reads an object's resourceVersion.
pub(crate) fn raw_event<K>(
    item: Result<WatchEvent<K>, kube::Error>,
    rv: impl Fn(&K) -> String,
) -> Result<RawEvent<K>, SourceError> {
    match item {
        Ok(WatchEvent::Added(o)) => {
            let v = rv(&o);
            Ok(RawEvent::Added(o, v))
        }
        Ok(WatchEvent::Modified(o)) => {
            let v = rv(&o);
            Ok(RawEvent::Modified(o, v))
        }
        Ok(WatchEvent::Deleted(o)) => {
            let v = rv(&o);
            Ok(RawEvent::Deleted(o, v))
        }
        Ok(WatchEvent::Bookmark(b)) => Ok(RawEvent::Bookmark(b.metadata.resource_version)),
        Ok(WatchEvent::Error(s)) => Ok(RawEvent::Error {
            code: s.code,
            message: s.message,
        }),
        Err(e) => Err(SourceError::from(e)),
    }
}

/// A [`ListWatchSource`] over a kube `Api`, with an optional label selector.
pub struct ApiSource<K> {
    pub api: Api<K>,
    pub label_selector: Option<String>,
}

impl<K> ListWatchSource for ApiSource<K>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    type Object = K;

    fn list(
        &self,
        limit: Option<u32>,
        continue_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<K>, SourceError>> {
        Box::pin(async move {
            let lp = list_params(self.label_selector.clone(), None, limit, continue_token);
            let list = self.api.list(&lp).await?;
            Ok(Page {
                items: list.items,
                resource_version: list.metadata.resource_version.unwrap_or_default(),
                continue_token: list.metadata.continue_.filter(|c| !c.is_empty()),
            })
        })
    }

    fn watch(
        &self,
        resource_version: String,
        timeout_secs: u32,
    ) -> BoxFuture<'_, Result<RawStream<K>, SourceError>> {
        Box::pin(async move {
            let wp = watch_params(self.label_selector.clone(), None, timeout_secs);
            let stream = self.api.watch(&wp, &resource_version).await?;
            Ok(stream
                .map(|item| raw_event(item, |o: &K| o.resource_version().unwrap_or_default()))
                .boxed())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn only_a_410_refusal_is_gone() {
        let status = |code| SourceError::Status {
            code,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(410).is_gone());
        assert!(!status(404).is_gone());
        assert!(!status(500).is_gone());
        assert!(!SourceError::Transport("410".into()).is_gone());
    }

    /// `ApiSource::list` sends the engine's label selector, page size and continue token, and
    /// reads the page's version and next token back: a real kube `Client` over a fake HTTP
    /// service that records each request's URI.
    #[tokio::test]
    async fn api_source_lists_with_its_selector_page_size_and_continue_token() {
        use k8s_openapi::api::core::v1::Pod;
        let uris = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = uris.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            seen.lock().unwrap().push(req.uri().to_string());
            async move {
                let page = br#"{"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"7","continue":"next-page"},"items":[]}"#;
                Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(
                    page.to_vec(),
                )))
            }
        });
        let source = ApiSource {
            api: Api::<Pod>::all(kube::Client::new(service, "default")),
            label_selector: Some("app=web".into()),
        };
        let page = source
            .list(Some(50), Some("token-1".into()))
            .await
            .expect("list");
        assert_eq!(page.resource_version, "7");
        assert_eq!(page.continue_token.as_deref(), Some("next-page"));
        let uri = uris.lock().unwrap().first().cloned().expect("one request");
        for part in ["labelSelector=app%3Dweb", "limit=50", "continue=token-1"] {
            assert!(uri.contains(part), "{part} missing from {uri}");
        }
    }
}
