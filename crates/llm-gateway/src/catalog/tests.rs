use super::build::with_catalog;
use super::*;
use crate::config::{GatewayConfig, ProviderKind};
use proptest::prelude::*;

/// Test "sealing": the value's JSON behind a marker, opened only for the secret it was sealed for.
struct Sealer;

impl Sealer {
    fn seal(&self, id: &str, plain: &[u8]) -> String {
        format!("{id}|{}", String::from_utf8_lossy(plain))
    }
}

fn sealer() -> Sealer {
    Sealer
}

fn open(secret: &Secret) -> Option<BTreeMap<String, String>> {
    let (id, value) = secret.sealed.split_once('|')?;
    (id == secret.secret_id)
        .then(|| serde_json::from_str(value).ok())
        .flatten()
}

fn secret(catalog: &mut Catalog, sealer: &Sealer, name: &str, config: &[(&str, &str)]) -> String {
    let id = new_id("s");
    let value = serde_json::json!({"api_key": format!("sk-{name}-0123456789")}).to_string();
    catalog
        .create_secret(Secret {
            secret_id: id.clone(),
            secret_name: name.into(),
            provider: Some("openai".into()),
            sealed: sealer.seal(&id, value.as_bytes()),
            masked_values: BTreeMap::from([("api_key".into(), mask(&format!("sk-{name}-0123456789")))]),
            auth_config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            created_at: 1,
            last_updated_at: 1,
            created_by: None,
            last_updated_by: None,
        })
        .unwrap();
    id
}

fn definition(catalog: &mut Catalog, name: &str, secret: &str, provider: &str, model: &str) -> String {
    let id = new_id("d");
    catalog
        .create_definition(ModelDefinition {
            model_definition_id: id.clone(),
            name: name.into(),
            secret_id: Some(secret.into()),
            provider: provider.into(),
            model_name: model.into(),
            created_at: 1,
            last_updated_at: 1,
            created_by: None,
            last_updated_by: None,
        })
        .unwrap();
    id
}

fn config(id: &str, linkage: Linkage, order: Option<i32>) -> ModelConfig {
    ModelConfig {
        model_definition_id: id.into(),
        linkage_type: linkage,
        weight: 1.0,
        fallback_order: order,
    }
}

#[test]
fn masking_shows_only_the_ends() {
    assert_eq!(mask("sk-test-123456"), "sk-...3456");
    assert_eq!(mask("short"), "***");
    assert_eq!(mask("ключ-ключ-ключ"), "клю...ключ");
}

#[test]
fn names_are_unique_and_routing_keys_refused() {
    let sealer = sealer();
    let mut catalog = Catalog::default();
    let first = secret(&mut catalog, &sealer, "key", &[]);
    let again = catalog
        .create_secret(catalog.secret(&first).unwrap().clone())
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::ResourceAlreadyExists);
    assert!(again.message.contains("already exists"));
    let value = BTreeMap::from([
        ("api_key".to_string(), "x".to_string()),
        ("api_base".into(), "y".into()),
    ]);
    assert!(check_secret_value(&value).unwrap_err().message.contains("'api_base'"));
    let config = BTreeMap::from([("base_url".to_string(), "http://x".to_string())]);
    assert!(
        normalise_auth_config(config)
            .unwrap_err()
            .message
            .contains("'base_url'")
    );
    let blank = BTreeMap::from([("api_base".to_string(), "  ".to_string())]);
    assert!(normalise_auth_config(blank).unwrap().is_empty());
}

#[test]
fn endpoints_check_their_models_and_deletes_respect_use() {
    let sealer = sealer();
    let mut catalog = Catalog::default();
    let key = secret(&mut catalog, &sealer, "key", &[]);
    let model = definition(&mut catalog, "gpt", &key, "openai", "gpt-4o");
    // A provider the gateway does not know is kept (as MLflow keeps it), and called only at an `api_base`.
    let other = definition(&mut catalog, "other", &key, "cohere", "command-r");
    let target = build::target_of(&catalog, catalog.definition(&other).unwrap()).unwrap_err();
    assert!(target.contains("not one this gateway knows"), "{target}");
    let empty = catalog
        .create_endpoint(
            EndpointChange {
                name: Some("chat".into()),
                model_configs: Some(vec![]),
                ..EndpointChange::default()
            },
            None,
            1,
        )
        .unwrap_err();
    assert!(empty.message.contains("at least one"));
    let unknown = catalog
        .create_endpoint(
            EndpointChange {
                name: Some("chat".into()),
                model_configs: Some(vec![config("d-nope", Linkage::Primary, None)]),
                ..EndpointChange::default()
            },
            None,
            1,
        )
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::ResourceDoesNotExist);
    assert_eq!(unknown.message, "Model definitions not found: d-nope");
    let bad_name = catalog
        .create_endpoint(
            EndpointChange {
                name: Some("a b".into()),
                model_configs: Some(vec![config(&model, Linkage::Primary, None)]),
                ..EndpointChange::default()
            },
            None,
            1,
        )
        .unwrap_err();
    assert!(bad_name.message.starts_with("Invalid endpoint name 'a b'"));
    let endpoint = catalog
        .create_endpoint(
            EndpointChange {
                name: Some("chat".into()),
                model_configs: Some(vec![config(&model, Linkage::Primary, None)]),
                ..EndpointChange::default()
            },
            Some("alice".into()),
            1,
        )
        .unwrap()
        .endpoint_id
        .clone();
    assert!(endpoint.starts_with("e-") && endpoint.len() == 34);
    let in_use = catalog.delete_definition(&model).unwrap_err();
    assert_eq!(in_use.code, ErrorCode::InvalidState);
    let twice = catalog
        .attach(&endpoint, config(&model, Linkage::Primary, None), None, 2)
        .unwrap_err();
    assert!(twice.message.contains("already attached"));
    catalog.detach(&endpoint, &model).unwrap();
    assert!(
        catalog
            .detach(&endpoint, &model)
            .unwrap_err()
            .message
            .contains("not attached")
    );
    catalog.delete_definition(&model).unwrap();
    catalog.delete_definition(&other).unwrap();
    catalog.delete_secret(&key).unwrap();
    catalog.delete_endpoint(&endpoint).unwrap();
    assert!(catalog.endpoints.is_empty() && catalog.model_definitions.is_empty() && catalog.secrets.is_empty());
}

#[test]
fn a_deleted_secret_leaves_its_models_without_one_and_they_are_skipped() {
    let sealer = sealer();
    let mut catalog = Catalog::default();
    let key = secret(&mut catalog, &sealer, "key", &[]);
    let model = definition(&mut catalog, "gpt", &key, "openai", "gpt-4o");
    catalog
        .create_endpoint(
            EndpointChange {
                name: Some("chat".into()),
                model_configs: Some(vec![config(&model, Linkage::Primary, None)]),
                ..EndpointChange::default()
            },
            None,
            1,
        )
        .unwrap();
    let built = with_catalog(&GatewayConfig::empty(), &catalog, &open, &build::Reach::default());
    assert!(built.model("chat").is_some());
    catalog.delete_secret(&key).unwrap();
    assert_eq!(catalog.definition(&model).unwrap().secret_id, None);
    let built = with_catalog(&GatewayConfig::empty(), &catalog, &open, &build::Reach::default());
    assert!(built.model("chat").is_none());
}

#[test]
fn endpoints_become_models_with_traffic_split_and_ordered_fallbacks() {
    let sealer = sealer();
    let mut catalog = Catalog::default();
    let key = secret(
        &mut catalog,
        &sealer,
        "key",
        &[("api_base", "https://llm.example.com/v1/")],
    );
    let azure = secret(
        &mut catalog,
        &sealer,
        "azure",
        &[("api_base", "https://x.openai.azure.com"), ("api_type", "azure")],
    );
    let a = definition(&mut catalog, "a", &key, "openai", "model-a");
    let b = definition(&mut catalog, "b", &key, "openai", "model-b");
    let c = definition(&mut catalog, "c", &azure, "openai", "deployment-c");
    let d = definition(&mut catalog, "d", &key, "anthropic", "claude");
    let change = |strategy: Option<&str>, attempts: Option<i32>| EndpointChange {
        name: Some("chat".into()),
        model_configs: Some(vec![
            config(&a, Linkage::Primary, None),
            config(&b, Linkage::Primary, None),
            config(&d, Linkage::Fallback, Some(2)),
            config(&c, Linkage::Fallback, Some(1)),
        ]),
        routing_strategy: strategy.map(str::to_string),
        fallback_config: attempts.map(|max| FallbackConfig {
            strategy: Some("SEQUENTIAL".into()),
            max_attempts: Some(max),
        }),
        ..EndpointChange::default()
    };
    let id = catalog
        .create_endpoint(change(None, None), None, 1)
        .unwrap()
        .endpoint_id
        .clone();
    let built = with_catalog(&GatewayConfig::empty(), &catalog, &open, &build::Reach::default());
    let group = &built.models[built.model("chat").unwrap()];
    assert_eq!(
        group.deployments.len(),
        1,
        "without a traffic split the first primary answers"
    );
    assert_eq!(
        built.providers[group.deployments[0].provider].base_url,
        "https://llm.example.com/v1"
    );
    let fallbacks: Vec<&str> = group
        .fallbacks
        .iter()
        .map(|index| built.models[*index].deployments[0].model.as_str())
        .collect();
    assert_eq!(fallbacks, ["deployment-c", "claude"]);
    let azure_provider = &built.providers[built.models[group.fallbacks[0]].deployments[0].provider];
    assert_eq!(azure_provider.kind, ProviderKind::Azure);
    assert_eq!(
        built.model(&built.models[group.fallbacks[0]].name),
        None,
        "fallback groups are hidden"
    );
    catalog
        .update_endpoint(&id, change(Some(build::TRAFFIC_SPLIT), Some(1)), None, 2)
        .unwrap();
    let built = with_catalog(&GatewayConfig::empty(), &catalog, &open, &build::Reach::default());
    let group = &built.models[built.model("chat").unwrap()];
    assert_eq!(group.deployments.len(), 2);
    assert_eq!(group.fallbacks.len(), 1, "max_attempts bounds the fallbacks");
}

proptest! {
    /// Hostile names, values and configs are refused or kept, never a panic; a refused change leaves the
    /// catalog as it was.
    #[test]
    fn hostile_changes_never_panic(name in ".{0,300}", key in ".{0,80}", value in ".{0,300}", weight in proptest::num::f32::ANY) {
        let sealer = sealer();
        let mut catalog = Catalog::default();
        let secret = secret(&mut catalog, &sealer, "key", &[]);
        let model = definition(&mut catalog, "gpt", &secret, "openai", "gpt");
        let before = catalog.clone();
        let created = catalog.create_endpoint(
            EndpointChange {
                name: Some(name.clone()),
                model_configs: Some(vec![ModelConfig { weight, ..config(&model, Linkage::Primary, None) }]),
                ..EndpointChange::default()
            },
            None,
            1,
        ).map(|endpoint| endpoint.endpoint_id.clone());
        match created {
            Ok(id) => {
                let _ = catalog.set_tag(&id, &key, &value);
                let _ = catalog.bind(&id, Binding { resource_type: key.clone(), resource_id: value.clone(), created_at: 1, last_updated_at: 1, created_by: None });
                let built = with_catalog(&GatewayConfig::empty(), &catalog, &open, &build::Reach::default());
                prop_assert!(built.model(&name).is_some());
            }
            Err(_) => prop_assert_eq!(&catalog, &before),
        }
        let _ = normalise_auth_config(BTreeMap::from([(key.clone(), value.clone())]));
        let _ = check_secret_value(&BTreeMap::from([(key, value)]));
    }
}

#[test]
fn reach_refuses_schemes_and_private_addresses_unless_allowed() {
    let strict = build::Reach::default();
    assert!(
        strict.admits("https://api.example.com/v1").unwrap(),
        "names are guarded"
    );
    assert!(
        strict
            .admits("http://api.example.com/v1")
            .unwrap_err()
            .contains("scheme 'http'")
    );
    assert!(
        strict
            .admits("https://127.0.0.1/v1")
            .unwrap_err()
            .contains("non-public")
    );
    assert!(
        strict
            .admits("https://[::ffff:10.0.0.1]/v1")
            .unwrap_err()
            .contains("non-public")
    );
    assert!(
        strict
            .admits("https://user:pw@api.example.com")
            .unwrap_err()
            .contains("credentials")
    );
    let open = build::Reach {
        allowed_schemes: vec!["http".into(), "https".into()],
        allow_private: true,
    };
    assert!(!open.admits("http://localhost:11434/v1").unwrap());
    // Ollama's default address is local: refused under the strict rules, so its model is not served.
    let sealer = sealer();
    let mut catalog = Catalog::default();
    let key = secret(&mut catalog, &sealer, "key", &[]);
    let local = definition(&mut catalog, "local", &key, "ollama", "llama3");
    assert!(
        catalog
            .check_reach(&strict, Some(&local), None)
            .unwrap_err()
            .message
            .contains("cannot be called")
    );
    assert!(catalog.check_reach(&open, Some(&local), None).is_ok());
}

#[test]
fn prices_for_catalog_models_are_read_and_checked() {
    let env = |_: &str| None;
    let config = GatewayConfig::parse(
        "prices: [{provider: openai, model: m, input_per_million: 1, output_per_million: 4}]\n",
        &env,
    )
    .unwrap();
    assert_eq!(config.catalog_price("openai", "m").unwrap().output, 4.0);
    assert_eq!(config.catalog_price("openai", "other"), None);
    for (yaml, words) in [
        (
            "prices: [{provider: openai, model: m, input_per_million: -1, output_per_million: 4}]",
            "from 0",
        ),
        (
            "prices: [{provider: openai, model: m, input_per_million: 1, output_per_million: 4}, {provider: openai, model: m, input_per_million: 2, output_per_million: 4}]",
            "priced twice",
        ),
        ("prices: [{provider: openai, model: m, input: 1}]", "unknown field"),
    ] {
        let error = GatewayConfig::parse(yaml, &env).unwrap_err();
        assert!(error.contains(words), "{yaml}: {error}");
    }
}
