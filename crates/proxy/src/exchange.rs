//! What the HTTP surface needs from the token exchanger: one operation and a readiness check.
//! [`idbind_exchange::Exchanger`] implements it; tests use fakes.

use std::future::Future;
use std::sync::Arc;

use idbind_exchange::{ExchangeError, ExchangeRequest, Exchanger, Readiness, TokenResponse};

/// Exchanges a service-account token for an Entra access token.
pub trait TokenExchange: Send + Sync + 'static {
    /// Runs one exchange. Every refusal is an [`ExchangeError`] the surface renders as it is.
    fn exchange(
        &self,
        request: ExchangeRequest,
    ) -> impl Future<Output = Result<TokenResponse, ExchangeError>> + Send;

    /// Whether the exchanger can serve (bindings synced, keys loaded).
    fn readiness(&self) -> Readiness;
}

impl TokenExchange for Exchanger {
    fn exchange(
        &self,
        request: ExchangeRequest,
    ) -> impl Future<Output = Result<TokenResponse, ExchangeError>> + Send {
        Exchanger::exchange(self, request)
    }

    fn readiness(&self) -> Readiness {
        Exchanger::readiness(self)
    }
}

impl<T: TokenExchange> TokenExchange for Arc<T> {
    fn exchange(
        &self,
        request: ExchangeRequest,
    ) -> impl Future<Output = Result<TokenResponse, ExchangeError>> + Send {
        T::exchange(self, request)
    }

    fn readiness(&self) -> Readiness {
        T::readiness(self)
    }
}
