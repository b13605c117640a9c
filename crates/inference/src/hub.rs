//! Resolving `--model`: a local directory, or a Hugging Face Hub id (+ revision) downloaded
//! through `hf-hub` into the standard HF cache (`$HF_HOME/hub`, honouring `HF_HUB_CACHE`,
//! `HF_ENDPOINT` and `HF_TOKEN` the way `hf-hub` does).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

/// Files fetched from a hub repository when present (weights are added from the listing).
const HUB_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "model.safetensors.index.json",
];

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A directory in Hugging Face layout.
    Local(PathBuf),
    /// A hub repository id such as `llava-hf/llava-1.5-7b-hf`, at a revision.
    Hub {
        /// `owner/name`.
        id: String,
        /// Branch, tag or commit; `main` when not given.
        revision: String,
    },
    /// One GGUF file of a hub repository: `owner/name/file.gguf`.
    HubFile {
        /// `owner/name`.
        id: String,
        /// The file's path in the repository.
        file: String,
        /// Branch, tag or commit; `main` when not given.
        revision: String,
    },
}

impl ModelSource {
    /// An existing path is local; `owner/name/file.gguf` is one GGUF file of a hub
    /// repository; anything else is taken as a hub id.
    pub fn parse(model: &str, revision: Option<&str>) -> Self {
        let path = Path::new(model);
        let revision_or_main = revision.unwrap_or("main").to_string();
        if path.exists() {
            Self::Local(path.to_path_buf())
        } else if model.to_ascii_lowercase().ends_with(".gguf") && model.matches('/').count() >= 2 {
            let mut parts = model.splitn(3, '/');
            let (owner, name, file) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            Self::HubFile {
                id: format!("{owner}/{name}"),
                file: file.to_string(),
                revision: revision_or_main,
            }
        } else {
            Self::Hub {
                id: model.to_string(),
                revision: revision.unwrap_or("main").to_string(),
            }
        }
    }

    /// Returns a local directory (or GGUF file) holding the model, downloading it first
    /// when needed. Files already in the HF cache are used without touching the network.
    pub fn resolve(&self, progress: bool) -> Result<PathBuf> {
        match self {
            Self::Local(p) if p.is_dir() => Ok(p.clone()),
            Self::Local(p) if crate::gguf::find_gguf(p)?.is_some() => Ok(p.clone()),
            Self::Local(p) => Err(Error::Config {
                path: p.clone(),
                message: "neither a model directory nor a .gguf file".into(),
            }),
            Self::Hub { id, revision } => download(id, revision, progress),
            Self::HubFile { id, file, revision } => download_file(id, file, revision, progress),
        }
    }
}

fn repo(id: &str, revision: &str) -> Repo {
    Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string())
}

/// Looks the whole model up in the local cache; `None` unless config and weights are there.
fn cached(id: &str, revision: &str) -> Option<PathBuf> {
    let cache = Cache::from_env().repo(repo(id, revision));
    let config = cache.get("config.json")?;
    let dir = config.parent()?.to_path_buf();
    crate::weights::find_weight_files(&dir).ok()?;
    cache.get("tokenizer.json")?;
    Some(dir)
}

fn download_file(id: &str, file: &str, revision: &str, progress: bool) -> Result<PathBuf> {
    if let Some(path) = Cache::from_env().repo(repo(id, revision)).get(file) {
        tracing::info!(model = id, file, "using cached GGUF file");
        return Ok(path);
    }
    let hub_err = |e: hf_hub::api::sync::ApiError| {
        Error::Hub(format!(
            "could not download {file} from {id}@{revision}: {e}. If the hub cannot be reached, \
             pass a local .gguf file with --model /path/to/model.gguf"
        ))
    };
    let api = ApiBuilder::from_env()
        .with_progress(progress)
        .build()
        .map_err(hub_err)?;
    api.repo(repo(id, revision)).get(file).map_err(hub_err)
}

fn download(id: &str, revision: &str, progress: bool) -> Result<PathBuf> {
    if let Some(dir) = cached(id, revision) {
        tracing::info!(model = id, revision, dir = %dir.display(), "using cached model");
        return Ok(dir);
    }
    let hub_err = |e: hf_hub::api::sync::ApiError| {
        Error::Hub(format!(
            "could not download {id}@{revision}: {e}. If the hub cannot be reached, pass a local \
             directory in Hugging Face layout (config.json, *.safetensors, tokenizer.json, \
             preprocessor_config.json) with --model /path/to/model"
        ))
    };
    let api = ApiBuilder::from_env()
        .with_progress(progress)
        .build()
        .map_err(hub_err)?;
    let api_repo = api.repo(repo(id, revision));
    let info = api_repo.info().map_err(hub_err)?;
    let listed: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let mut wanted: Vec<String> = HUB_FILES
        .iter()
        .filter(|f| listed.iter().any(|l| l == *f))
        .map(|f| f.to_string())
        .collect();
    wanted.extend(
        listed
            .iter()
            .filter(|f| f.ends_with(".safetensors") && !f.contains('/'))
            .cloned(),
    );
    if !wanted.iter().any(|f| f == "config.json") {
        return Err(Error::Hub(format!("{id}@{revision} has no config.json")));
    }
    let mut dir = None;
    for file in &wanted {
        tracing::info!(model = id, file = file.as_str(), "fetching");
        let path = api_repo.get(file).map_err(hub_err)?;
        if file == "config.json" {
            dir = path.parent().map(Path::to_path_buf);
        }
    }
    dir.ok_or_else(|| {
        Error::Hub(format!(
            "{id}@{revision}: config.json has no parent directory"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_path_is_local_else_hub() {
        let here = env!("CARGO_MANIFEST_DIR");
        assert_eq!(
            ModelSource::parse(here, None),
            ModelSource::Local(PathBuf::from(here))
        );
        assert_eq!(
            ModelSource::parse("llava-hf/llava-1.5-7b-hf", Some("abc")),
            ModelSource::Hub {
                id: "llava-hf/llava-1.5-7b-hf".into(),
                revision: "abc".into()
            }
        );
        assert_eq!(
            ModelSource::parse("bartowski/SmolLM2-GGUF/SmolLM2-Q4_K_M.gguf", None),
            ModelSource::HubFile {
                id: "bartowski/SmolLM2-GGUF".into(),
                file: "SmolLM2-Q4_K_M.gguf".into(),
                revision: "main".into()
            }
        );
    }

    #[test]
    fn unreachable_hub_says_how_to_use_a_local_directory() {
        // Point the client at a closed local port and an empty cache: no network is touched.
        let tmp = std::env::temp_dir().join(format!("vlm-hub-test-{}", std::process::id()));
        std::env::set_var("HF_HOME", &tmp);
        std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
        let err = ModelSource::parse("nobody/nothing", None)
            .resolve(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--model /path/to/model"), "{err}");
        assert!(err.contains("nobody/nothing"), "{err}");
    }
}
