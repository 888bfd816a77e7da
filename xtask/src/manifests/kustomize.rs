//! `kustomization.yaml` files and strategic-merge patches, typed.

use serde::Serialize;

use super::meta::File;

/// A `kustomization.yaml`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kustomization {
    /// `kustomize.config.k8s.io/v1beta1`.
    pub api_version: &'static str,
    /// `Kustomization`.
    pub kind: &'static str,
    /// Files and directories of resources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Strategic-merge patch files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
    /// Generated ConfigMaps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_map_generator: Vec<Generator>,
    /// Generated Secrets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_generator: Vec<Generator>,
    /// Image replacements.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
}

impl Default for Kustomization {
    fn default() -> Self {
        Self {
            api_version: "kustomize.config.k8s.io/v1beta1",
            kind: "Kustomization",
            resources: Vec::new(),
            patches: Vec::new(),
            config_map_generator: Vec::new(),
            secret_generator: Vec::new(),
            images: Vec::new(),
        }
    }
}

/// A patch file.
#[derive(Debug, Serialize)]
pub struct Patch {
    /// Path of the patch, relative to the kustomization.
    pub path: String,
}

/// A ConfigMap or Secret generator.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Generator {
    /// Name (kustomize appends a content hash and rewrites references, so a change rolls pods).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `create` (default) or `merge` (into the base's generator of the same name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behavior: Option<&'static str>,
    /// `KEY=value` entries.
    pub literals: Vec<String>,
    /// Labels of the generated object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<GeneratorOptions>,
}

/// Generator options.
#[derive(Debug, Serialize)]
pub struct GeneratorOptions {
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Generator {
    /// A generator of `name` in `namespace` with `entries`.
    pub fn new(name: &str, namespace: &str, entries: &[(String, String)]) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            behavior: None,
            literals: entries.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            options: None,
        }
    }

    /// The same entries merged into the base's generator.
    #[must_use]
    pub fn merge(mut self) -> Self {
        self.behavior = Some("merge");
        self
    }

    /// With labels.
    #[must_use]
    pub fn labels(mut self, labels: std::collections::BTreeMap<String, String>) -> Self {
        self.options = Some(GeneratorOptions { labels });
        self
    }
}

/// An image replacement.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The image as the resources name it (without tag).
    pub name: String,
    /// Replacement name.
    pub new_name: String,
    /// Replacement tag.
    pub new_tag: String,
}

impl Kustomization {
    /// The file `dir/kustomization.yaml`.
    pub fn file(&self, dir: &str, comment: &str) -> anyhow::Result<File> {
        let mut file = File::new(format!("{dir}/kustomization.yaml"), comment);
        file.push_ordered(self)?;
        Ok(file)
    }
}

/// A strategic-merge patch from a partial typed object: empty objects that only exist because a
/// field is required in the Rust type (a Deployment's `spec.selector`) are dropped, as they would
/// otherwise read like an intent.
pub fn patch_doc<T: Serialize>(object: &T) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(object)?;
    if let Some(spec) = value.get_mut("spec").and_then(serde_json::Value::as_object_mut)
        && spec
            .get("selector")
            .is_some_and(|s| s.as_object().is_some_and(serde_json::Map::is_empty))
    {
        spec.remove("selector");
    }
    crate::codegen::to_yaml(&value)
}
