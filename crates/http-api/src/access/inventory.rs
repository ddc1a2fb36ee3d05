//! Lists the (method, path) pairs a router answers, read from the router's debug description (axum has no
//! other way to enumerate routes). Used by the test that checks every route declares its permission: if an
//! axum upgrade changes the description, that test finds no routes and fails loudly rather than passing.

use axum::Router;
use regex::Regex;
use std::collections::{BTreeSet, HashMap};

/// Methods a route answers: `*` when it is a service that takes any method.
pub fn routes(router: &Router) -> BTreeSet<(String, String)> {
    let description = format!("{router:?}");
    // Only the main path router: the fallback router's route ids are numbered separately.
    let main = description
        .split_once("fallback_router:")
        .map_or(description.as_str(), |(main, _)| main);
    let paths: HashMap<&str, &str> = Regex::new(r#"RouteId\((\d+)\): "([^"]*)""#)
        .expect("path pattern")
        .captures_iter(main)
        .map(|capture| {
            let (_, [id, path]) = capture.extract();
            (id, path)
        })
        .collect();
    let endpoints = Regex::new(r#"RouteId\((\d+)\): (?:MethodRouter\(MethodRouter \{.*?allow_header: (None|Skip|Bytes\(b"([^"]*)"\))|(Route)\()"#)
        .expect("endpoint pattern");
    let mut found = BTreeSet::new();
    for capture in endpoints.captures_iter(main) {
        let id = &capture[1];
        let Some(path) = paths.get(id) else { continue };
        if capture.get(4).is_some() {
            found.insert(("*".to_string(), path.to_string()));
            continue;
        }
        for method in capture.get(3).map_or("", |methods| methods.as_str()).split(',') {
            if !method.is_empty() && method != "HEAD" {
                found.insert((method.to_string(), path.to_string()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::handler::HandlerWithoutStateExt;
    use axum::routing::{get, post};

    #[test]
    fn every_method_of_every_route_is_listed() {
        let router: Router = Router::new()
            .route("/a", get(|| async {}).post(|| async {}))
            .route("/b/{id}", post(|| async {}))
            .route_service("/c", (|| async {}).into_service())
            .fallback(get(|| async {}));
        let listed: Vec<_> = routes(&router).into_iter().collect();
        let expected = [("*", "/c"), ("GET", "/a"), ("POST", "/a"), ("POST", "/b/{id}")];
        assert_eq!(
            listed,
            expected
                .map(|(method, path)| (method.to_string(), path.to_string()))
                .to_vec()
        );
    }
}
