//! Integration tests: the real server in-process on port 0, spoken to over HTTP.

mod access;
mod access_attacks;
mod access_browser_login;
mod access_oidc;
mod access_replicas;
mod concurrency;
mod datasets;
mod deployments;
mod deployments_replicas;
mod deployments_traffic;
mod endpoint_inventory;
mod errors;
mod gates;
mod hardening;
mod hardening_models;
mod hardening_ui;
mod monitoring;
mod monitoring_actions;
mod otlp;
mod route_permissions;
mod security;
mod serving;
mod web_pages;
mod web_ui;
mod webhooks;
mod wire_format;
