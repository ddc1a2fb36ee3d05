use super::*;

fn env(name: &str) -> Option<String> {
    (name == "FAKE_KEY").then(|| "sk-test-123".to_string())
}

const GOOD: &str = r#"
providers:
  - {name: primary, kind: openai, base_url: "https://api.example.com/v1/", api_key_env: FAKE_KEY}
  - {name: local, kind: openai-compatible, base_url: "http://127.0.0.1:8000/v1"}
models:
  - name: chat
    deployments:
      - {provider: primary, model: gpt-x, weight: 3}
      - {provider: local, model: llama}
    fallbacks: [cheap]
    retries: 1
  - name: cheap
    deployments: [{provider: local, model: small}]
settings: {cooldown_failures: 2}
"#;

#[test]
fn a_configuration_is_read_with_its_keys_from_the_environment() {
    let config = GatewayConfig::parse(GOOD, &env).unwrap();
    assert_eq!(config.providers[0].base_url, "https://api.example.com/v1");
    assert_eq!(config.providers[0].api_key.as_ref().unwrap().expose(), "sk-test-123");
    assert!(config.providers[1].api_key.is_none());
    let chat = &config.models[config.model("chat").unwrap()];
    assert_eq!(chat.deployments[0].weight, 3);
    assert_eq!(chat.deployments[1].provider, 1);
    assert_eq!(chat.fallbacks, vec![1]);
    assert_eq!(chat.retries, 1);
    assert_eq!(config.cooldown.failures, 2);
    // The key never shows in debug output.
    assert!(!format!("{config:?}").contains("sk-test-123"));
}

#[test]
fn each_mistake_is_named_by_its_field() {
    let cases = [
        (
            "providers: [{name: a, kind: openai, base_url: 'http://x/v1', api_key: sk-1}]\n",
            "providers[0].api_key",
        ),
        (
            "providers: [{name: a, kind: openai, base_url: 'file:///etc'}]\n",
            "providers[0].base_url",
        ),
        (
            "providers: [{name: a, kind: openai, base_url: 'http://u:p@x/v1'}]\n",
            "credentials",
        ),
        (
            "providers: [{name: a, kind: bogus, base_url: 'http://x/v1'}]\n",
            "bogus",
        ),
        (
            "providers: [{name: a, kind: openai, base_url: 'http://x/v1', api_key_env: MISSING}]\n",
            "MISSING",
        ),
        ("models: [{name: m, deployments: []}]\n", "models[0].deployments"),
        (
            "models: [{name: m, deployments: [{provider: nope, model: x}]}]\n",
            "no provider is named 'nope'",
        ),
        (
            "providers: [{name: a, kind: openai, base_url: 'http://x/v1'}]\nmodels: [{name: m, deployments: [{provider: a, model: x}], fallbacks: [m]}]\n",
            "itself",
        ),
        (
            "providers: [{name: a, kind: openai, base_url: 'http://x/v1'}]\nmodels: [{name: m, deployments: [{provider: a, model: x}], fallbacks: [z]}]\n",
            "fallbacks[0]",
        ),
        (
            "providers: [{name: a, kind: openai, base_url: 'http://x/v1'}]\nmodels: [{name: m, deployments: [{provider: a, model: x, weight: 0}]}]\n",
            "weight",
        ),
        (
            "providers: [{name: a, kind: openai, base_url: 'http://x/v1'}]\nmodels: [{name: m, deployments: [{provider: a, model: x}], timeout_seconds: 0}]\n",
            "timeout_seconds",
        ),
        (
            "providers: [{name: a, kind: openai, base_url: 'http://x/v1'}, {name: a, kind: openai, base_url: 'http://y/v1'}]\n",
            "named twice",
        ),
        ("unknown: 1\n", "unknown"),
        (
            "providers: [{name: a, kind: openai, base_url: 'http://x/v1', api_version: '2024-10-21'}]\n",
            "api_version: only for kind azure",
        ),
        (
            "providers: [{name: a, kind: azure, base_url: 'https://x', api_version: '../../x?'}]\n",
            "providers[0].api_version",
        ),
    ];
    for (text, expected) in cases {
        let error = GatewayConfig::parse(text, &env).unwrap_err();
        assert!(error.contains(expected), "{text}: {error}");
        assert!(!error.contains("sk-"), "{error}");
    }
}

#[test]
fn a_key_file_is_read_and_trimmed() {
    let directory = std::env::temp_dir().join(format!("gateway-key-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("key");
    std::fs::write(&path, "sk-from-file\n").unwrap();
    let text = format!(
        "providers: [{{name: a, kind: openai, base_url: 'http://x/v1', api_key_file: '{}'}}]\n",
        path.display()
    );
    let config = GatewayConfig::parse(&text, &env).unwrap();
    assert_eq!(config.providers[0].api_key.as_ref().unwrap().expose(), "sk-from-file");
    std::fs::remove_dir_all(&directory).unwrap();
}
