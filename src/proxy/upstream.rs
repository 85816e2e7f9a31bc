//! Talking to a partner: one connection per decided request (pooled for reuse), the filtered
//! body with its exact `content-length`, and the partner's answer relayed back to the caller.
use bytes::{Bytes, BytesMut};
use gateway_core::headers::is_relayed_from_partner;
use gateway_core::plan::{Outgoing, Target};
use gateway_core::{Refusal, RefusalKind};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;

use crate::gateway::Active;
use crate::metrics::UpstreamErrorKind;

/// Largest partner answer relayed to the caller.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

pub struct UpstreamClient {
    connector: Connector,
}

pub struct UpstreamResponse {
    pub header: ResponseHeader,
    pub body: Bytes,
}

pub struct UpstreamFailure {
    /// The `kind` label of `upstream_errors_total`.
    pub kind: UpstreamErrorKind,
    pub refusal: Refusal,
}

impl UpstreamFailure {
    fn from_error(partner: &str, e: &Error) -> UpstreamFailure {
        match e.etype() {
            ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout => UpstreamFailure {
                kind: UpstreamErrorKind::Timeout,
                refusal: Refusal::new(
                    RefusalKind::UpstreamTimeout,
                    format!("partner {partner:?} did not answer in time"),
                ),
            },
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::TLSHandshakeFailure => UpstreamFailure {
                kind: UpstreamErrorKind::Connect,
                refusal: Refusal::new(
                    RefusalKind::UpstreamError,
                    format!("partner {partner:?} is unreachable: {}", e.etype().as_str()),
                ),
            },
            _ => UpstreamFailure {
                kind: UpstreamErrorKind::Protocol,
                refusal: Refusal::new(
                    RefusalKind::UpstreamError,
                    format!("partner {partner:?} failed: {}", e.etype().as_str()),
                ),
            },
        }
    }
}

impl UpstreamClient {
    pub fn new() -> UpstreamClient {
        UpstreamClient {
            connector: Connector::new(None),
        }
    }

    pub async fn send(
        &self,
        active: &Active,
        target: &Target,
        method: &str,
        caller: &str,
        outgoing: Outgoing,
    ) -> Result<UpstreamResponse, UpstreamFailure> {
        let partner = &target.partner;
        let timeout = active.policy.gateway.limits.upstream_timeout;

        let header = self
            .request_header(active, target, method, caller, &outgoing)
            .map_err(|refusal| UpstreamFailure {
                kind: UpstreamErrorKind::Protocol,
                refusal,
            })?;

        let upstream = &partner.upstream;
        let exchange = async {
            // Resolved here, asynchronously and within the deadline: pingora's `HttpPeer::new`
            // would block on DNS and panic when a name does not resolve.
            let unreachable = |why: String| UpstreamFailure {
                kind: UpstreamErrorKind::Connect,
                refusal: Refusal::new(
                    RefusalKind::UpstreamError,
                    format!("partner {:?} is unreachable: {why}", partner.id),
                ),
            };
            let address = tokio::net::lookup_host(upstream.authority())
                .await
                .map_err(|e| unreachable(format!("cannot resolve {}: {e}", upstream.host)))?
                .next()
                .ok_or_else(|| unreachable(format!("{} has no address", upstream.host)))?;
            let mut peer = HttpPeer::new(address, upstream.tls, upstream.host.clone());
            peer.options.connection_timeout = Some(timeout);
            peer.options.total_connection_timeout = Some(timeout);
            peer.options.read_timeout = Some(timeout);
            peer.options.write_timeout = Some(timeout);
            self.exchange(&peer, header, outgoing.body, &partner.id)
                .await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamFailure {
                kind: UpstreamErrorKind::Timeout,
                refusal: Refusal::new(
                    RefusalKind::UpstreamTimeout,
                    format!(
                        "partner {:?} did not answer within {} ms",
                        partner.id,
                        timeout.as_millis()
                    ),
                ),
            }),
        }
    }

    /// Connect, send, and read the whole answer; bounded by the caller's deadline.
    async fn exchange(
        &self,
        peer: &HttpPeer,
        header: RequestHeader,
        body: Vec<u8>,
        partner: &str,
    ) -> Result<UpstreamResponse, UpstreamFailure> {
        let fail = |e: Box<Error>| UpstreamFailure::from_error(partner, &e);
        let timeout = peer.options.read_timeout;
        let body = Bytes::from(body);
        // A pooled connection the partner closed while idle fails before the partner saw the
        // request; pingora marks such errors retryable, and one fresh attempt is safe.
        let (mut http, partner_header) = match self.send_once(peer, &header, &body, timeout).await {
            Err(mut e) if e.retry() => {
                // Only the error's type: its context may quote what the partner sent.
                log::debug!(
                    "partner {partner:?}: reused connection failed ({}), retrying on a new one",
                    e.etype().as_str()
                );
                e.retry.decide_reuse(false);
                self.send_once(peer, &header, &body, timeout)
                    .await
                    .map_err(fail)?
            }
            result => result.map_err(fail)?,
        };

        let mut body = BytesMut::new();
        while let Some(chunk) = http.read_response_body().await.map_err(fail)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(UpstreamFailure {
                    kind: UpstreamErrorKind::Protocol,
                    refusal: Refusal::new(
                        RefusalKind::UpstreamError,
                        format!(
                        "partner {partner:?} answered with more than {MAX_RESPONSE_BYTES} bytes"
                    ),
                    ),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if http.response_done() {
            self.connector
                .release_http_session(http, peer, timeout)
                .await;
        }

        let status = partner_header.status;
        let mut header =
            ResponseHeader::build(status, Some(partner_header.headers.len() + 2)).map_err(fail)?;
        for (name, value) in partner_header.headers.iter() {
            if is_relayed_from_partner(name.as_str()) {
                let _ = header.append_header(name.clone(), value.clone());
            }
        }
        let _ = header.insert_header("content-length", body.len().to_string());
        Ok(UpstreamResponse {
            header,
            body: body.freeze(),
        })
    }

    /// Sends the request on a (possibly pooled) connection and reads the answer's header.
    /// Errors have their retry decision made: retryable only when the connection was reused.
    async fn send_once(
        &self,
        peer: &HttpPeer,
        header: &RequestHeader,
        body: &Bytes,
        timeout: Option<std::time::Duration>,
    ) -> Result<(HttpSession, ResponseHeader), Box<Error>> {
        let (mut http, reused) = self
            .connector
            .get_http_session(peer)
            .await
            .map_err(|mut e| {
                e.retry.decide_reuse(false); // a new connection that failed: nothing to retry
                e
            })?;
        http.set_read_timeout(timeout);
        http.set_write_timeout(timeout);
        let result = async {
            http.write_request_header(Box::new(header.clone())).await?;
            if !body.is_empty() {
                http.write_request_body(body.clone(), true).await?;
            }
            http.finish_request_body().await?;
            http.read_response_header().await?;
            http.response_header()
                .cloned()
                .ok_or_else(|| Error::new(ErrorType::InvalidHTTPHeader))
        }
        .await;
        match result {
            Ok(partner_header) => Ok((http, partner_header)),
            Err(mut e) => {
                e.retry.decide_reuse(reused);
                Err(e)
            }
        }
    }

    /// The request line and headers the partner receives: the allowed caller headers, then the
    /// gateway's own (added last, so nothing the caller sent can remove or shadow them).
    fn request_header(
        &self,
        active: &Active,
        target: &Target,
        method: &str,
        caller: &str,
        outgoing: &Outgoing,
    ) -> Result<RequestHeader, Refusal> {
        let internal = |e: Box<Error>| {
            Refusal::new(
                RefusalKind::UpstreamError,
                format!("cannot build the partner request: {e}"),
            )
        };
        let mut header = RequestHeader::build(method, outgoing.path_and_query.as_bytes(), None)
            .map_err(internal)?;
        header
            .insert_header("host", target.partner.upstream.authority())
            .map_err(internal)?;
        for (name, value) in &outgoing.headers {
            header
                .append_header(name.clone(), value.clone())
                .map_err(internal)?;
        }
        for (name, value) in active.data_use_headers(
            target,
            caller,
            &outgoing.body,
            outgoing.legal_basis.as_deref(),
        )? {
            header.insert_header(name, value).map_err(internal)?;
        }
        if let Some(auth) = &target.partner.upstream_auth {
            header
                .insert_header(auth.header.clone(), auth.value.clone())
                .map_err(internal)?;
        }
        header
            .insert_header("content-length", outgoing.body.len().to_string())
            .map_err(internal)?;
        Ok(header)
    }
}
