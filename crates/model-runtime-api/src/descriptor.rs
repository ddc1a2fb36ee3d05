//! The `MLmodel` file of an MLflow model directory: flavors, signature and the files they name.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::signature::Signature;

/// Why a model directory cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DescriptorError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The reason.
        message: String,
    },
    /// The `MLmodel` file is not what MLflow writes.
    #[error("{path} is not a valid MLmodel file: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A file named by the descriptor would lie outside the model directory.
    #[error("the model names {name:?}, which is not a path inside the model directory")]
    OutsideModel {
        /// The name given.
        name: String,
    },
}

/// A parsed `MLmodel`.
#[derive(Debug, Clone)]
pub struct ModelDescriptor {
    directory: PathBuf,
    document: Value,
    signature: Option<Signature>,
}

/// `name` joined to `directory` when it is a plain relative path with no `..`, `.` prefix tricks or roots.
pub fn inside(directory: &Path, name: &str) -> Result<PathBuf, DescriptorError> {
    let outside = || DescriptorError::OutsideModel { name: name.to_string() };
    let relative = Path::new(name);
    if name.is_empty() || name.contains('\0') || name.contains('\\') {
        return Err(outside());
    }
    for component in relative.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(outside()),
        }
    }
    Ok(directory.join(relative))
}

impl ModelDescriptor {
    /// Reads `MLmodel` from a model directory.
    pub fn load(directory: &Path) -> Result<ModelDescriptor, DescriptorError> {
        let path = directory.join("MLmodel");
        let too_large = std::fs::metadata(&path)
            .is_ok_and(|metadata| metadata.len() > crate::yaml_bounds::MAX_DOCUMENT_BYTES as u64);
        if too_large {
            return Err(DescriptorError::Invalid {
                path: path.display().to_string(),
                message: format!(
                    "it is larger than the {} bytes an MLmodel file may have",
                    crate::yaml_bounds::MAX_DOCUMENT_BYTES
                ),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| DescriptorError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        ModelDescriptor::parse(directory, &text).map_err(|message| DescriptorError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses the text of an `MLmodel` for a model in `directory`.
    pub fn parse(directory: &Path, text: &str) -> Result<ModelDescriptor, String> {
        let document = crate::yaml_bounds::load_json(text)?;
        if !document.get("flavors").is_some_and(Value::is_object) {
            return Err("it has no 'flavors' mapping".to_string());
        }
        let signature = match document.get("signature") {
            None | Some(Value::Null) => None,
            Some(value) => Some(Signature::from_value(value)?),
        };
        Ok(ModelDescriptor {
            directory: directory.to_path_buf(),
            document,
            signature,
        })
    }

    /// The model directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Flavor names, in file order.
    pub fn flavor_names(&self) -> Vec<&str> {
        self.document["flavors"]
            .as_object()
            .map(|f| f.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// A flavor's configuration.
    pub fn flavor(&self, name: &str) -> Option<&Map<String, Value>> {
        self.document["flavors"].get(name).and_then(Value::as_object)
    }

    /// A text field of a flavor (`data`, `model_class`, `loader_module`, ...).
    pub fn flavor_field(&self, flavor: &str, field: &str) -> Option<&str> {
        self.flavor(flavor).and_then(|f| f.get(field)).and_then(Value::as_str)
    }

    /// The file or directory a flavor's `data` names, confined to the model directory.
    pub fn flavor_data(&self, flavor: &str) -> Result<Option<PathBuf>, DescriptorError> {
        self.flavor_field(flavor, "data")
            .map(|name| inside(&self.directory, name))
            .transpose()
    }

    /// The signature, if the model has one.
    pub fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    /// Any top-level field (`mlflow_version`, `model_uuid`, `saved_input_example_info`, ...).
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.document.get(name)
    }
}
