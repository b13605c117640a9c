//! `config.json` parsing: the architecture, its vision tower and its text model.
//!
//! Hugging Face strings become enums here, at parse time, so that the model code only ever
//! matches on closed types. Missing fields take the defaults of the corresponding
//! transformers config class.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::nn::activation::Activation;

/// The top-level model class named by `architectures` / `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `LlavaForConditionalGeneration`: one fixed-resolution image → N tokens.
    Llava,
    /// `LlavaNextForConditionalGeneration`: anyres tiles + base image, unpadded, with
    /// `image_newline` after each feature row.
    LlavaNext,
    /// `LlavaOnevisionForConditionalGeneration`: LLaVA-NeXT tiling with `anyres_max_N`, which
    /// downscales large feature grids bilinearly.
    LlavaOnevision,
}

/// Which vision tower encodes images (`vision_config.model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionKind {
    /// OpenAI CLIP ViT (class token, pre-layernorm).
    Clip,
    /// SigLIP ViT (no class token, patch bias, gelu-tanh).
    Siglip,
}

/// Which decoder-only language model generates text (`text_config.model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Llama (also Vicuna and most llama-architecture fine-tunes).
    Llama,
    /// Qwen2 (q/k/v bias, usually tied embeddings).
    Qwen2,
    /// Mistral (sliding-window attention when configured).
    Mistral,
}

/// How the vision features are selected from the chosen hidden layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectStrategy {
    /// Drop the class token (`"default"`).
    Default,
    /// Keep every position (`"full"`).
    Full,
}

/// Vision tower hyper-parameters.
#[derive(Debug, Clone)]
pub struct VisionConfig {
    /// The tower's architecture.
    pub kind: VisionKind,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Input resolution (square).
    pub image_size: usize,
    /// Patch edge in pixels.
    pub patch_size: usize,
    /// Input channels.
    pub num_channels: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// MLP activation.
    pub hidden_act: Activation,
}

impl VisionConfig {
    /// Number of patches along one edge.
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }
}

/// Rotary position embedding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// Base frequency.
    pub theta: f64,
    /// Position scaling.
    pub scaling: RopeScaling,
}

/// The rope scaling types supported so far.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
}

/// Text model hyper-parameters; Llama-family models differ only in these switches.
#[derive(Debug, Clone)]
pub struct TextConfig {
    /// The decoder's family.
    pub kind: TextKind,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the gated MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary embedding settings.
    pub rope: RopeConfig,
    /// Context length the model was trained for.
    pub max_position_embeddings: usize,
    /// Whether the q/k/v projections carry a bias.
    pub qkv_bias: bool,
    /// Whether the output projection carries a bias.
    pub o_bias: bool,
    /// Attend only to this many most recent positions (Mistral, Qwen2 when enabled).
    pub sliding_window: Option<usize>,
    /// Whether the MLP projections carry a bias.
    pub mlp_bias: bool,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Whether the LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// EOS ids named by the config (may be several).
    pub eos_token_ids: Vec<u32>,
}

/// A parsed `config.json` of a supported vision-language model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The model class.
    pub architecture: Architecture,
    /// Vision tower settings.
    pub vision: VisionConfig,
    /// Language model settings.
    pub text: TextConfig,
    /// The placeholder token that image features replace.
    pub image_token_id: u32,
    /// Activation between the projector's two linears.
    pub projector_hidden_act: Activation,
    /// Whether the projector's linears carry a bias.
    pub projector_bias: bool,
    /// Hidden-state indices (Python-style, negative from the end) concatenated as features.
    pub vision_feature_layers: Vec<i64>,
    /// Class-token handling.
    pub select_strategy: SelectStrategy,
    /// LLaVA-NeXT grid resolutions `(height, width)` (empty for plain LLaVA).
    pub image_grid_pinpoints: Vec<(u32, u32)>,
    /// OneVision's `anyres_max_N`: the most tiles' worth of features kept per image.
    pub anyres_max_tiles: Option<u32>,
}

impl ModelConfig {
    /// Reads and parses `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_value(&value, path)
    }

    /// Parses an already-read `config.json`; `path` is used in error messages.
    pub fn from_value(value: &Value, path: &Path) -> Result<Self> {
        let p = ConfigPath(path.to_path_buf());
        let obj = value
            .as_object()
            .ok_or_else(|| p.err("expected a JSON object at the top level"))?;
        let arch_name = obj
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .or_else(|| obj.get("model_type").and_then(Value::as_str))
            .ok_or_else(|| p.err("neither `architectures` nor `model_type` is set"))?;
        let architecture = match arch_name {
            "LlavaForConditionalGeneration" | "llava" => Architecture::Llava,
            "LlavaNextForConditionalGeneration" | "llava_next" => Architecture::LlavaNext,
            "LlavaOnevisionForConditionalGeneration" | "llava_onevision" => {
                Architecture::LlavaOnevision
            }
            other => {
                return Err(Error::Unsupported {
                    what: "architecture",
                    name: other.to_string(),
                })
            }
        };
        let raw: RawLlava = p.parse(value, "")?;
        let vision_value = obj
            .get("vision_config")
            .ok_or_else(|| p.err("`vision_config` is missing"))?;
        let text_value = obj
            .get("text_config")
            .ok_or_else(|| p.err("`text_config` is missing"))?;
        let vision = parse_vision(vision_value, &p)?;
        let text = parse_text(text_value, raw.tie_word_embeddings, &p)?;
        let vision_feature_layers = match raw.vision_feature_layer {
            FeatureLayer::One(l) => vec![l],
            FeatureLayer::Many(ls) if !ls.is_empty() => ls,
            FeatureLayer::Many(_) => return Err(p.err("`vision_feature_layer` is an empty list")),
        };
        let num_states = vision.num_hidden_layers as i64 + 1;
        for &l in &vision_feature_layers {
            if l >= num_states || l < -num_states {
                return Err(p.err(&format!(
                    "`vision_feature_layer` {l} is outside the tower's {num_states} hidden states"
                )));
            }
        }
        let select_strategy = match raw.vision_feature_select_strategy.as_str() {
            "default" => SelectStrategy::Default,
            "full" => SelectStrategy::Full,
            other => {
                return Err(p.err(&format!(
                    "unknown `vision_feature_select_strategy` {other:?} (expected \"default\" or \"full\")"
                )))
            }
        };
        let image_grid_pinpoints = raw.image_grid_pinpoints.clone();
        let anyres_max_tiles = match architecture {
            Architecture::LlavaOnevision => {
                let ratio = raw.vision_aspect_ratio.as_deref().unwrap_or("anyres_max_9");
                let n = ratio
                    .strip_prefix("anyres_max_")
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        p.err(&format!(
                            "unsupported `vision_aspect_ratio` {ratio:?} (expected anyres_max_N)"
                        ))
                    })?;
                Some(n)
            }
            _ => None,
        };
        if architecture != Architecture::Llava {
            let tile = vision.image_size as u32;
            if image_grid_pinpoints.is_empty() {
                return Err(p.err("LLaVA-NeXT needs `image_grid_pinpoints`"));
            }
            if image_grid_pinpoints
                .iter()
                .any(|&(h, w)| h == 0 || w == 0 || h % tile != 0 || w % tile != 0)
            {
                return Err(p.err(&format!(
                    "`image_grid_pinpoints` must be positive multiples of the tower's image_size {tile}"
                )));
            }
        }
        let image_token_id = raw
            .image_token_id
            .or(raw.image_token_index)
            .ok_or_else(|| p.err("neither `image_token_id` nor `image_token_index` is set"))?;
        Ok(Self {
            architecture,
            vision,
            text,
            image_token_id,
            projector_hidden_act: Activation::parse(&raw.projector_hidden_act).ok_or_else(
                || {
                    p.err(&format!(
                        "unknown activation {:?}",
                        raw.projector_hidden_act
                    ))
                },
            )?,
            projector_bias: raw.multimodal_projector_bias,
            vision_feature_layers,
            select_strategy,
            image_grid_pinpoints,
            anyres_max_tiles,
        })
    }
}

/// A config path that builds errors naming itself.
struct ConfigPath(PathBuf);

impl ConfigPath {
    fn err(&self, message: &str) -> Error {
        Error::Config {
            path: self.0.clone(),
            message: message.to_string(),
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, value: &Value, section: &str) -> Result<T> {
        T::deserialize(value).map_err(|e| {
            let at = if section.is_empty() {
                String::new()
            } else {
                format!("in `{section}`: ")
            };
            self.err(&format!("{at}{e}"))
        })
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FeatureLayer {
    One(i64),
    Many(Vec<i64>),
}

fn default_feature_layer() -> FeatureLayer {
    FeatureLayer::One(-2)
}
fn default_strategy() -> String {
    "default".into()
}
fn default_gelu() -> String {
    "gelu".into()
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct RawLlava {
    image_token_id: Option<u32>,
    image_token_index: Option<u32>,
    #[serde(default = "default_gelu")]
    projector_hidden_act: String,
    #[serde(default = "yes")]
    multimodal_projector_bias: bool,
    #[serde(default = "default_feature_layer")]
    vision_feature_layer: FeatureLayer,
    #[serde(default = "default_strategy")]
    vision_feature_select_strategy: String,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    image_grid_pinpoints: Vec<(u32, u32)>,
    vision_aspect_ratio: Option<String>,
}

#[derive(Deserialize)]
struct RawVision {
    #[serde(default = "clip_name")]
    model_type: String,
    #[serde(default = "d768")]
    hidden_size: usize,
    #[serde(default = "d3072")]
    intermediate_size: usize,
    #[serde(default = "d12")]
    num_hidden_layers: usize,
    #[serde(default = "d12")]
    num_attention_heads: usize,
    #[serde(default = "d224")]
    image_size: usize,
    patch_size: Option<usize>,
    #[serde(default = "d3")]
    num_channels: usize,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
}

fn clip_name() -> String {
    "clip_vision_model".into()
}
fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn silu() -> String {
    "silu".into()
}
fn llama_name() -> String {
    "llama".into()
}
const fn d3() -> usize {
    3
}
const fn d12() -> usize {
    12
}
const fn d32() -> usize {
    32
}
const fn d224() -> usize {
    224
}
const fn d768() -> usize {
    768
}
const fn d3072() -> usize {
    3072
}

fn parse_vision(value: &Value, p: &ConfigPath) -> Result<VisionConfig> {
    let raw: RawVision = p.parse(value, "vision_config")?;
    let kind = match raw.model_type.as_str() {
        "clip_vision_model" | "clip" => VisionKind::Clip,
        "siglip_vision_model" | "siglip" => VisionKind::Siglip,
        other => {
            return Err(Error::Unsupported {
                what: "vision tower",
                name: other.to_string(),
            })
        }
    };
    if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
        return Err(
            p.err("vision_config: `hidden_size` must be a multiple of `num_attention_heads`")
        );
    }
    // Defaults of CLIPVisionConfig / SiglipVisionConfig.
    let (patch_size, layer_norm_eps, hidden_act) = match kind {
        VisionKind::Clip => (
            raw.patch_size.unwrap_or(32),
            raw.layer_norm_eps.unwrap_or(1e-5),
            raw.hidden_act.unwrap_or_else(quick_gelu),
        ),
        VisionKind::Siglip => (
            raw.patch_size.unwrap_or(16),
            raw.layer_norm_eps.unwrap_or(1e-6),
            raw.hidden_act.unwrap_or_else(|| "gelu_pytorch_tanh".into()),
        ),
    };
    // SigLIP-so400m uses 384-px images with 14-px patches: the patch conv floors to 27 per side,
    // so the image size need not be a multiple of the patch size.
    if patch_size == 0 || raw.image_size < patch_size {
        return Err(p.err("vision_config: `patch_size` must be positive and at most `image_size`"));
    }
    Ok(VisionConfig {
        kind,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        num_hidden_layers: raw.num_hidden_layers,
        num_attention_heads: raw.num_attention_heads,
        image_size: raw.image_size,
        patch_size,
        num_channels: raw.num_channels,
        layer_norm_eps,
        hidden_act: Activation::parse(&hidden_act)
            .ok_or_else(|| p.err(&format!("vision_config: unknown activation {hidden_act:?}")))?,
    })
}

#[derive(Deserialize)]
struct RawText {
    #[serde(default = "llama_name")]
    model_type: String,
    #[serde(default = "v32000")]
    vocab_size: usize,
    #[serde(default = "d4096")]
    hidden_size: usize,
    #[serde(default = "d11008")]
    intermediate_size: usize,
    #[serde(default = "d32")]
    num_hidden_layers: usize,
    #[serde(default = "d32")]
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "eps6")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
    #[serde(default = "d2048")]
    max_position_embeddings: usize,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    sliding_window: Option<usize>,
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default = "silu")]
    hidden_act: String,
    tie_word_embeddings: Option<bool>,
    eos_token_id: Option<Value>,
}

const fn v32000() -> usize {
    32000
}
const fn d2048() -> usize {
    2048
}
const fn d4096() -> usize {
    4096
}
const fn d11008() -> usize {
    11008
}
const fn eps6() -> f64 {
    1e-6
}

fn parse_text(value: &Value, outer_tie: Option<bool>, p: &ConfigPath) -> Result<TextConfig> {
    let raw: RawText = p.parse(value, "text_config")?;
    let kind = match raw.model_type.as_str() {
        "llama" => TextKind::Llama,
        "qwen2" => TextKind::Qwen2,
        "mistral" => TextKind::Mistral,
        other => {
            return Err(Error::Unsupported {
                what: "text model",
                name: other.to_string(),
            })
        }
    };
    let heads = raw.num_attention_heads;
    if heads == 0 {
        return Err(p.err("text_config: `num_attention_heads` must be positive"));
    }
    let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(p.err(
            "text_config: `num_attention_heads` must be a multiple of `num_key_value_heads`",
        ));
    }
    let head_dim = match raw.head_dim {
        Some(d) => d,
        None if raw.hidden_size.is_multiple_of(heads) => raw.hidden_size / heads,
        None => {
            return Err(p.err(
                "text_config: `hidden_size` is not a multiple of `num_attention_heads` and `head_dim` is not set",
            ))
        }
    };
    let rope = parse_rope(&raw, p)?;
    let eos_token_ids = match &raw.eos_token_id {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => token_ids(v)
            .ok_or_else(|| p.err("text_config: `eos_token_id` must be an id or a list of ids"))?,
    };
    Ok(TextConfig {
        kind,
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        num_hidden_layers: raw.num_hidden_layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: raw.rms_norm_eps,
        rope,
        max_position_embeddings: raw.max_position_embeddings,
        // Llama: `attention_bias` covers q/k/v/o; Qwen2: q/k/v always, o never.
        qkv_bias: kind == TextKind::Qwen2 || raw.attention_bias,
        o_bias: kind != TextKind::Qwen2 && raw.attention_bias,
        sliding_window: match kind {
            TextKind::Mistral => raw.sliding_window,
            TextKind::Qwen2 if raw.use_sliding_window => raw.sliding_window,
            _ => None,
        },
        mlp_bias: raw.mlp_bias,
        hidden_act: Activation::parse(&raw.hidden_act).ok_or_else(|| {
            p.err(&format!(
                "text_config: unknown activation {:?}",
                raw.hidden_act
            ))
        })?,
        // transformers: the outer config's value wins when set; Llama defaults to untied.
        tie_word_embeddings: outer_tie.or(raw.tie_word_embeddings).unwrap_or(false),
        eos_token_ids,
    })
}

/// Reads a token id or a list of token ids.
pub(crate) fn token_ids(v: &Value) -> Option<Vec<u32>> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| vec![n]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect(),
        _ => None,
    }
}

/// `rope_theta` (transformers 4) or `rope_parameters` (transformers 5), with `rope_scaling`.
fn parse_rope(raw: &RawText, p: &ConfigPath) -> Result<RopeConfig> {
    let params = raw
        .rope_parameters
        .as_ref()
        .or(raw.rope_scaling.as_ref())
        .filter(|v| !v.is_null());
    let theta = params
        .and_then(|v| v.get("rope_theta"))
        .and_then(Value::as_f64)
        .or(raw.rope_theta)
        .unwrap_or(10000.0);
    let rope_type = params
        .and_then(|v| v.get("rope_type").or_else(|| v.get("type")))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let scaling = match rope_type {
        "default" => RopeScaling::None,
        "linear" => {
            let factor = params
                .and_then(|v| v.get("factor"))
                .and_then(Value::as_f64)
                .ok_or_else(|| p.err("text_config: linear rope scaling needs `factor`"))?;
            RopeScaling::Linear { factor }
        }
        other => {
            return Err(Error::Unsupported {
                what: "rope scaling type",
                name: other.to_string(),
            })
        }
    };
    if theta <= 0.0 {
        return Err(p.err("text_config: `rope_theta` must be positive"));
    }
    Ok(RopeConfig { theta, scaling })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "architectures": ["LlavaForConditionalGeneration"],
            "image_token_id": 4,
            "vision_config": {"model_type": "clip_vision_model", "hidden_size": 32,
                "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
                "image_size": 28, "patch_size": 14},
            "text_config": {"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
                "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "rope_parameters": {"rope_type": "default", "rope_theta": 500.0}}
        })
    }

    #[test]
    fn parses_llava_with_rope_parameters() {
        let c = ModelConfig::from_value(&base(), Path::new("config.json")).unwrap();
        assert_eq!(c.architecture, Architecture::Llava);
        assert_eq!(c.text.head_dim, 16);
        assert_eq!(c.text.rope.theta, 500.0);
        assert_eq!(c.vision_feature_layers, vec![-2]);
        assert_eq!(c.select_strategy, SelectStrategy::Default);
        assert_eq!(c.vision.hidden_act, Activation::QuickGelu);
    }

    #[test]
    fn reads_legacy_rope_theta_and_image_token_index() {
        let mut v = base();
        v["text_config"]
            .as_object_mut()
            .unwrap()
            .remove("rope_parameters");
        v["text_config"]["rope_theta"] = json!(1234.0);
        v.as_object_mut().unwrap().remove("image_token_id");
        v["image_token_index"] = json!(32000);
        let c = ModelConfig::from_value(&v, Path::new("config.json")).unwrap();
        assert_eq!(c.text.rope.theta, 1234.0);
        assert_eq!(c.image_token_id, 32000);
    }

    #[test]
    fn unsupported_names_itself() {
        let mut v = base();
        v["architectures"] = json!(["FancyVLM"]);
        let e = ModelConfig::from_value(&v, Path::new("config.json")).unwrap_err();
        assert!(e.to_string().contains("FancyVLM"), "{e}");
        let mut v = base();
        v["vision_config"]["model_type"] = json!("dinov9");
        let e = ModelConfig::from_value(&v, Path::new("config.json")).unwrap_err();
        assert!(e.to_string().contains("vision tower: dinov9"), "{e}");
    }

    #[test]
    fn wrong_types_name_file_and_section() {
        let mut v = base();
        v["text_config"]["hidden_size"] = json!("wide");
        let e = ModelConfig::from_value(&v, Path::new("/m/config.json")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/m/config.json") && msg.contains("text_config"),
            "{msg}"
        );
    }

    #[test]
    fn qwen2_and_mistral_switches() {
        let mut v = base();
        v["text_config"]["model_type"] = json!("qwen2");
        v["text_config"]["sliding_window"] = json!(64);
        v["vision_config"]["model_type"] = json!("siglip_vision_model");
        let c = ModelConfig::from_value(&v, Path::new("config.json")).unwrap();
        assert_eq!(c.text.kind, TextKind::Qwen2);
        assert!(c.text.qkv_bias && !c.text.o_bias);
        // Qwen2 only slides when use_sliding_window is set.
        assert_eq!(c.text.sliding_window, None);
        v["text_config"]["use_sliding_window"] = json!(true);
        let c = ModelConfig::from_value(&v, Path::new("config.json")).unwrap();
        assert_eq!(c.text.sliding_window, Some(64));
        // SigLIP defaults differ from CLIP's.
        assert_eq!(c.vision.kind, VisionKind::Siglip);
        assert_eq!(c.vision.hidden_act, Activation::GeluTanh);
        assert_eq!(c.vision.layer_norm_eps, 1e-6);
        v["text_config"]["model_type"] = json!("mistral");
        v["text_config"]["sliding_window"] = json!(4096);
        let c = ModelConfig::from_value(&v, Path::new("config.json")).unwrap();
        assert_eq!(c.text.kind, TextKind::Mistral);
        assert_eq!(c.text.sliding_window, Some(4096));
        assert!(!c.text.qkv_bias && !c.text.o_bias);
        v["text_config"]["model_type"] = json!("gemma9");
        let e = ModelConfig::from_value(&v, Path::new("config.json")).unwrap_err();
        assert!(e.to_string().contains("text model: gemma9"), "{e}");
    }

    #[test]
    fn siglip_384_with_14px_patches_is_accepted() {
        // llava-onevision-qwen2-0.5b-ov-hf / llava-interleave-qwen-0.5b-hf: 27×27 patches.
        let mut v = base();
        v["vision_config"] = json!({"model_type": "siglip_vision_model", "hidden_size": 1152,
            "intermediate_size": 4304, "num_hidden_layers": 26, "num_attention_heads": 16,
            "image_size": 384, "patch_size": 14});
        let c = ModelConfig::from_value(&v, Path::new("config.json")).unwrap();
        assert_eq!(c.vision.patches_per_side(), 27);
        v["vision_config"]["patch_size"] = json!(0);
        assert!(ModelConfig::from_value(&v, Path::new("config.json")).is_err());
    }

    #[test]
    fn out_of_range_feature_layer_is_refused() {
        let mut v = base();
        v["vision_feature_layer"] = json!(-9);
        let e = ModelConfig::from_value(&v, Path::new("config.json")).unwrap_err();
        assert!(e.to_string().contains("vision_feature_layer"), "{e}");
    }
}
