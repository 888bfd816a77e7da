//! Labels, object metadata and multi-document files.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;

use super::names::{MANAGED_BY, PART_OF, VERSION};

/// `app.kubernetes.io/name`: the one label selectors use (it never changes between versions).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

/// Who an object belongs to: `app.kubernetes.io/name` and `app.kubernetes.io/component`.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    /// `app.kubernetes.io/name`.
    pub name: &'static str,
    /// `app.kubernetes.io/component`.
    pub component: &'static str,
}

impl Owner {
    /// The five recommended labels.
    pub fn labels(self) -> BTreeMap<String, String> {
        [
            (NAME_LABEL, self.name),
            ("app.kubernetes.io/component", self.component),
            ("app.kubernetes.io/part-of", PART_OF),
            ("app.kubernetes.io/managed-by", MANAGED_BY),
            ("app.kubernetes.io/version", VERSION),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The labels pods are selected by.
    pub fn selector_labels(self) -> BTreeMap<String, String> {
        BTreeMap::from([(NAME_LABEL.to_owned(), self.name.to_owned())])
    }

    /// A selector on [`Owner::selector_labels`].
    pub fn selector(self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector_labels()),
            match_expressions: None,
        }
    }

    /// Metadata of a cluster-scoped object.
    pub fn cluster_meta(self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(self.labels()),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of a namespaced object.
    pub fn meta(self, namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(namespace.to_owned()),
            ..self.cluster_meta(name)
        }
    }
}

/// One generated YAML file holding one or more documents.
#[derive(Debug, Default)]
pub struct File {
    /// Path relative to the workspace root.
    pub path: String,
    /// What the file says it is, after the generated-file header.
    pub comment: String,
    /// The documents, rendered, in order.
    pub docs: Vec<String>,
}

impl File {
    /// An empty file at `path` with a comment line (or lines) under the header.
    pub fn new(path: impl Into<String>, comment: &str) -> Self {
        Self {
            path: path.into(),
            comment: comment.to_owned(),
            docs: Vec::new(),
        }
    }

    /// Appends a Kubernetes object (through JSON, as the API server would see it: keys sorted,
    /// absent fields omitted).
    pub fn push<T: Serialize>(&mut self, doc: &T) -> Result<&mut Self> {
        self.docs.push(crate::codegen::to_yaml(doc)?);
        Ok(self)
    }

    /// Appends a document in its Rust field order (kustomizations: `apiVersion` and `kind` first).
    pub fn push_ordered<T: Serialize>(&mut self, doc: &T) -> Result<&mut Self> {
        self.docs
            .push(serde_saphyr::to_string(doc).context("serializing YAML")?);
        Ok(self)
    }

    /// The file's text: header, comment, documents separated by `---`.
    pub fn render(&self) -> Result<String> {
        let mut out = String::from(super::HEADER);
        for line in self.comment.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        for (i, doc) in self.docs.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(doc);
        }
        Ok(out)
    }
}

/// `BTreeMap` from string pairs.
pub fn map<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
