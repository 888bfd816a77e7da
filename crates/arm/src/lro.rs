//! Long-running operations: ARM's asynchronous PUT/DELETE protocol.
//!
//! A 201 or 202 answer with `Azure-AsyncOperation` is polled there until its `status` is
//! `Succeeded`, `Failed` or `Canceled`; otherwise `Location` is polled until it stops answering
//! 202. Waits honour `Retry-After`. After a successful PUT the resource is read again.

use reqwest::Method;
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::client::{ArmClient, decode_error};
use crate::http::{RawResponse, display_url};
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LroKind {
    Put,
    Delete,
}

#[derive(Deserialize)]
struct OperationStatus {
    status: Option<String>,
    error: Option<OperationError>,
}

#[derive(Deserialize)]
struct OperationError {
    code: Option<String>,
    message: Option<String>,
}

impl ArmClient {
    /// Waits for the operation `initial` started, if it started one. Returns `initial` when it
    /// carries the result, or `None` when the resource must be read again.
    pub(crate) async fn finish_lro(
        &self,
        operation: &'static str,
        kind: LroKind,
        resource_url: &Url,
        initial: RawResponse,
    ) -> Result<Option<RawResponse>> {
        if !matches!(initial.status, 201 | 202) {
            return Ok(Some(initial));
        }
        let async_op = initial.header("azure-asyncoperation").map(str::to_owned);
        let location = initial.header("location").map(str::to_owned);
        let (interval, timeout) = self.lro_settings();
        let deadline = Instant::now() + timeout;
        let mut wait = initial.retry_after().unwrap_or(interval);
        let mut polls = 0u32;
        let next_wait = |response: &RawResponse, polls: u32, url: &Url| {
            let wait = response.retry_after().unwrap_or(interval);
            if Instant::now() + wait > deadline {
                Err(Error::OperationTimeout {
                    operation,
                    url: display_url(url),
                    polls,
                })
            } else {
                Ok(wait)
            }
        };

        if let Some(link) = async_op {
            let status_url = self.follow_url(operation, resource_url, &link)?;
            tracing::debug!(operation, url = %display_url(&status_url), "polling Azure-AsyncOperation");
            loop {
                tokio::time::sleep(wait).await;
                polls += 1;
                let response = self.send(operation, Method::GET, &status_url, None).await?;
                let status: OperationStatus = serde_json::from_slice(&response.body).map_err(|e| {
                    decode_error(operation, &status_url, format!("not an operation status: {e}"))
                })?;
                let state = status.status.unwrap_or_default();
                match state.to_ascii_lowercase().as_str() {
                    "succeeded" => break,
                    "failed" | "canceled" | "cancelled" => {
                        let (code, message) = status.error.map(|e| (e.code, e.message)).unwrap_or_default();
                        return Err(Error::OperationFailed {
                            operation,
                            status: state,
                            code,
                            message,
                        });
                    }
                    _ => wait = next_wait(&response, polls, &status_url)?,
                }
            }
            return Ok(None);
        }

        let Some(link) = location else {
            // Accepted without a way to follow it: nothing more to learn.
            return Ok(Some(initial));
        };
        let location_url = self.follow_url(operation, resource_url, &link)?;
        tracing::debug!(operation, url = %display_url(&location_url), "polling Location");
        loop {
            tokio::time::sleep(wait).await;
            polls += 1;
            match self.send(operation, Method::GET, &location_url, None).await {
                Ok(response) if response.status == 202 => wait = next_wait(&response, polls, &location_url)?,
                // For a PUT the resource itself is the result; the caller reads it.
                Ok(_) => return Ok(None),
                Err(e) if kind == LroKind::Delete && e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}
