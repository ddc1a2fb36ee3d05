//! The gateway as it stands now: the configuration file's models and the MLflow catalog's endpoints. A
//! catalog change installs a new [`Gateway`] sharing the old one's connections, metrics and caches; calls
//! take the current one when they begin and finish on it.

use crate::catalog::Catalog;
use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use std::sync::{Arc, Mutex, RwLock};

/// The current gateway and the catalog generation it serves.
pub struct LiveGateway {
    base: GatewayConfig,
    reach: crate::catalog::build::Reach,
    current: RwLock<Arc<Gateway>>,
    /// The catalog generation installed (0: none).
    generation: Mutex<i64>,
}

impl LiveGateway {
    /// Starts with `gateway` (the configuration file's models only); catalog providers are held to `reach`.
    pub fn new(gateway: Gateway, reach: crate::catalog::build::Reach) -> LiveGateway {
        LiveGateway {
            base: gateway.config().clone(),
            reach,
            current: RwLock::new(Arc::new(gateway)),
            generation: Mutex::new(0),
        }
    }

    /// The gateway serving now.
    pub fn current(&self) -> Arc<Gateway> {
        self.current.read().expect("live gateway").clone()
    }

    /// The configuration file's models (catalog endpoints may not take their names).
    pub fn base(&self) -> &GatewayConfig {
        &self.base
    }

    /// Where catalog providers may be reached.
    pub fn reach(&self) -> &crate::catalog::build::Reach {
        &self.reach
    }

    /// The catalog generation served.
    pub fn generation(&self) -> i64 {
        *self.generation.lock().expect("live gateway generation")
    }

    /// Serves `catalog` (of `generation`) from now on, unless a newer one is already served.
    pub fn install(&self, generation: i64, catalog: &Catalog, open: crate::catalog::build::Opener<'_>) {
        let mut served = self.generation.lock().expect("live gateway generation");
        if generation <= *served {
            return;
        }
        let config = crate::catalog::build::with_catalog(&self.base, catalog, open, &self.reach);
        let next = Arc::new(self.current().reconfigured(config));
        *self.current.write().expect("live gateway") = next;
        *served = generation;
    }
}
