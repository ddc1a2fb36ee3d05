//! Identifier generation in the formats MLflow clients expect.

use uuid::Uuid;

/// A run id: 32 lowercase hex characters.
pub fn new_run_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// A logged-model id: `m-` followed by 32 lowercase hex characters.
pub fn new_logged_model_id() -> String {
    format!("m-{}", Uuid::new_v4().simple())
}

/// An assessment id: `a-` followed by 32 lowercase hex characters.
pub fn new_assessment_id() -> String {
    format!("a-{}", Uuid::new_v4().simple())
}

/// True when `candidate` looks like a run id (32 hex characters). Used to reject junk before a lookup.
pub fn is_run_id(candidate: &str) -> bool {
    candidate.len() == 32 && candidate.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_the_mlflow_shapes() {
        let run_id = new_run_id();
        assert!(is_run_id(&run_id), "{run_id}");
        let model_id = new_logged_model_id();
        assert!(model_id.starts_with("m-") && is_run_id(&model_id[2..]), "{model_id}");
        assert_ne!(new_run_id(), new_run_id());
        assert!(!is_run_id("../etc/passwd"));
    }
}
