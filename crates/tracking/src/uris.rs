//! URI rules that keep clients from pointing the server at places it must not touch (SSRF, local files).

use crate::error::{TrackingError, TrackingResult};

/// Schemes an experiment's artifact location may use. Local paths, `file:` and `http(s):` are refused:
/// the server would otherwise hand out (or proxy) locations outside its artifact store.
const ALLOWED_LOCATION_SCHEMES: &[&str] = &["mlflow-artifacts", "s3", "gs", "wasbs", "abfss"];

fn scheme_of(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "+-.".contains(character));
    valid.then_some(scheme)
}

fn has_traversal(uri: &str) -> bool {
    let decoded = percent_decoded(uri);
    decoded.split(['/', '\\']).any(|segment| segment == "..") || decoded.contains('\\') || decoded.contains('\0')
}

fn percent_decoded(text: &str) -> String {
    let mut current = text.to_string();
    for _ in 0..3 {
        let bytes = current.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut index = 0;
        while index < bytes.len() {
            // Bytes, not string slices: the two characters after '%' may be part of a multibyte character.
            if bytes[index] == b'%'
                && let (Some(high), Some(low)) = (hex_value(bytes.get(index + 1)), hex_value(bytes.get(index + 2)))
            {
                decoded.push(high * 16 + low);
                index += 3;
                continue;
            }
            decoded.push(bytes[index]);
            index += 1;
        }
        let next = String::from_utf8_lossy(&decoded).into_owned();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn hex_value(byte: Option<&u8>) -> Option<u8> {
    let digit = char::from(*byte?).to_digit(16)?;
    u8::try_from(digit).ok()
}

/// `mlflow-artifacts://host:port/...` names another server's artifact proxy: the stock client would upload
/// this experiment's artifacts there.
fn names_another_artifact_server(uri: &str) -> bool {
    let Some(rest) = uri.get("mlflow-artifacts:".len()..) else {
        return false;
    };
    uri[.."mlflow-artifacts:".len()].eq_ignore_ascii_case("mlflow-artifacts:") && rest.starts_with("//")
}

/// Checks a client-supplied experiment artifact location.
pub fn validate_artifact_location(location: &str) -> TrackingResult<()> {
    if names_another_artifact_server(location) {
        return Err(TrackingError::InvalidParameter(format!(
            "artifact_location '{location}' names a host: an mlflow-artifacts location must be a path on this \
             server's artifact store, such as 'mlflow-artifacts:/team-a'"
        )));
    }
    let scheme = scheme_of(location).map(str::to_ascii_lowercase);
    let allowed = scheme
        .as_deref()
        .is_some_and(|scheme| ALLOWED_LOCATION_SCHEMES.contains(&scheme));
    if !allowed || has_traversal(location) || location.contains('#') {
        return Err(TrackingError::InvalidParameter(format!(
            "artifact_location '{location}' is not allowed: use a location under one of the schemes {} without '..' segments, or leave it empty to use the server's artifact store",
            ALLOWED_LOCATION_SCHEMES.join(", ")
        )));
    }
    Ok(())
}

/// Checks a model version source. Registry sources may name logged models, runs or the server's own
/// artifact store; local paths, `file:` URIs and traversal are refused so that get-download-uri can never
/// send a client to a file outside the artifact store.
pub fn validate_model_version_source(source: &str) -> TrackingResult<()> {
    let refuse =
        |reason: &str| TrackingError::InvalidParameter(format!("Invalid model version source: '{source}'. {reason}"));
    if source.is_empty() {
        return Err(refuse("A source is required."));
    }
    if has_traversal(source) || source.contains('#') {
        return Err(refuse("Sources may not contain '..' segments, backslashes or '#'."));
    }
    let Some(scheme) = scheme_of(source).map(str::to_ascii_lowercase) else {
        return Err(refuse(
            "Local paths are not allowed; use a models:/, runs:/ or mlflow-artifacts:/ URI.",
        ));
    };
    if scheme == "mlflow-artifacts" {
        if names_another_artifact_server(source) {
            return Err(refuse(
                "An mlflow-artifacts source names a path on this server, not a host.",
            ));
        }
        // The artifact store's root or a whole experiment is not a model: serving it would copy all of it.
        // Counted as the store will read the path: decoded, without empty and `.` segments.
        let segments = percent_decoded(&source["mlflow-artifacts:".len()..])
            .split('/')
            .filter(|segment| !segment.is_empty() && *segment != ".")
            .count();
        if segments < 2 {
            return Err(refuse(
                "An mlflow-artifacts source must name a model's directory inside an experiment, such as \
                 mlflow-artifacts:/1/<run id>/artifacts/model.",
            ));
        }
    }
    match scheme.as_str() {
        "models" | "runs" | "mlflow-artifacts" | "s3" | "gs" | "wasbs" | "abfss" => Ok(()),
        _ => Err(refuse(
            "Only models:/, runs:/, mlflow-artifacts:/ and object-store URIs are allowed.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_locations_are_confined_to_known_schemes() {
        assert!(validate_artifact_location("mlflow-artifacts:/team-a").is_ok());
        assert!(validate_artifact_location("s3://bucket/prefix").is_ok());
        for hostile in [
            "http://169.254.169.254/latest",
            "file:///etc",
            "/etc/passwd",
            "ftp://x",
            "s3://b/../../x",
            "mlflow-artifacts:/%2e%2e/x",
            "mlflow-artifacts://other-host:5000/x",
            "MLFLOW-ARTIFACTS://other-host/x",
        ] {
            assert!(validate_artifact_location(hostile).is_err(), "{hostile}");
        }
    }

    #[test]
    fn percent_signs_before_multibyte_characters_are_plain_text() {
        for text in [
            "s3://b/%€",
            "s3://b/%aé",
            "s3://b/%",
            "s3://b/%4",
            "mlflow-artifacts:/x%é%",
        ] {
            assert!(validate_artifact_location(text).is_ok(), "{text}");
            assert_eq!(percent_decoded(text), text);
        }
        assert_eq!(percent_decoded("a%2Fb%2f"), "a/b/");
        assert!(validate_model_version_source("runs:/a/%€").is_ok());
    }

    #[test]
    fn model_version_sources_cannot_point_at_local_files() {
        assert!(validate_model_version_source("models:/m-0123").is_ok());
        assert!(validate_model_version_source("runs:/abc/model").is_ok());
        assert!(validate_model_version_source("mlflow-artifacts:/1/abc/artifacts/model").is_ok());
        for hostile in [
            "/etc/passwd",
            "file:///etc/passwd",
            "runs:/abc/../../../etc",
            "http://evil/x",
            "mlflow-artifacts:/%252e%252e/x",
            "C:\\x",
            "mlflow-artifacts:/",
            "mlflow-artifacts:/1",
            "mlflow-artifacts:///1/",
            "mlflow-artifacts://host/1/abc/artifacts/model",
            "mlflow-artifacts:/./1",
            "mlflow-artifacts:/1/.",
            "mlflow-artifacts:/serving/.",
            "mlflow-artifacts:/%2e/1",
        ] {
            assert!(validate_model_version_source(hostile).is_err(), "{hostile}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

        /// Any text, percent signs and multibyte characters included, is judged without a panic.
        #[test]
        fn validators_never_panic(
            scheme in proptest::prop_oneof![
                proptest::strategy::Just(""), proptest::strategy::Just("mlflow-artifacts:"),
                proptest::strategy::Just("runs:/"), proptest::strategy::Just("s3://"), proptest::strategy::Just("file://"),
            ],
            rest in "[%/.a-z0-9€é\\\\#:]{0,40}",
        ) {
            let uri = format!("{scheme}{rest}");
            let _ = validate_artifact_location(&uri);
            let _ = validate_model_version_source(&uri);
            let _ = percent_decoded(&uri);
        }
    }
}
