//! A loaded vision-language model with everything needed to turn chat messages and images
//! into tokens: tokenizer, chat template, image processor and weights.

use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

use crate::chat_template::{ChatTemplate, RenderOptions, SpecialTokens};
use crate::config::{Architecture, ModelConfig, SelectStrategy, TextConfig, VisionKind};
use crate::error::{Error, Result};
use crate::gguf::weights::GgufTensors;
use crate::gguf::Metadata;
use crate::image::anyres::{anyres_tiles, grid_shape, next_image_tokens, onevision_image_tokens};
use crate::image::ImageProcessorConfig;
use crate::image::{ResampleFilter, ResizeSize, PIL_BILINEAR};
use crate::messages::{count_images, ChatMessage};
use crate::model_dir::ModelDir;
use crate::models::decoder::Decoder;
use crate::models::decoder_weights::DecoderWeights;
use crate::models::llava::{ImageBatch, Llava};
use crate::nn::kv_cache::KvCache;
use crate::nn::linear::QuantKernels;
use crate::tokenizer::TextTokenizer;

/// Where and in which precision to load the weights.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute device.
    pub device: Device,
    /// Weight and activation dtype (float safetensors weights and the vision tower; GGUF
    /// language models compute in f32).
    pub dtype: DType,
    /// Quantize the language model's linear layers at load (safetensors models only).
    pub quantize: Option<GgmlDType>,
    /// With a GGUF language model: a LLaVA directory in Hugging Face layout whose vision
    /// tower, projector, tokenizer, chat template and processor are used.
    pub vision_from: Option<PathBuf>,
    /// Dequantize GGUF weights to f32 at load (exact f32 math, as transformers runs GGUF
    /// files; several times the memory and slower on CPU).
    pub dequantize_gguf: bool,
    /// Run quantized CPU language models op by op through candle modules instead of the
    /// fused CPU pass (same math; for comparisons and debugging).
    pub unfused: bool,
    /// Which GGUF block types run on our CPU kernels (converted at load) and which on
    /// candle's kernel for their type.
    pub quant_kernels: QuantKernels,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            quantize: None,
            vision_from: None,
            dequantize_gguf: false,
            unfused: false,
            quant_kernels: QuantKernels::default(),
        }
    }
}

/// OpenAI's `image_url.detail`. On tiling models (LLaVA-NeXT) `Low` encodes only the base
/// image (the fewest tokens, the fastest answer) and `High`/`Auto` the full anyres set; on
/// fixed-resolution models all three are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageDetail {
    /// The model's normal processing.
    #[default]
    Auto,
    /// Base image only.
    Low,
    /// Full resolution (all tiles).
    High,
}

/// A prompt ready for the model: token ids with image placeholders expanded, and the
/// preprocessed images.
#[derive(Debug, Clone)]
pub struct PreparedPrompt {
    /// The rendered chat template (placeholders not yet expanded).
    pub prompt: String,
    /// Token ids, one image token per image feature.
    pub input_ids: Vec<u32>,
    /// The preprocessed images, or `None` for a text-only prompt.
    pub images: Option<ImageBatch>,
}

/// What a model with vision needs beyond the network: its config, the image processor
/// and the placeholder token.
#[derive(Debug)]
struct VisionSetup {
    config: ModelConfig,
    image_processor: ImageProcessorConfig,
    image_token: String,
    tokens_per_image: usize,
}

/// A vision-language model (or a text-only language model) ready to serve.
#[derive(Debug)]
pub struct VisionLanguageModel {
    text: TextConfig,
    vision: Option<VisionSetup>,
    model: Llava,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
}

/// The message for images sent to a model without a vision tower.
pub const NO_VISION: &str = "this model has no vision: image_url content parts are not \
     accepted (serve a LLaVA model, or pass --vision-from with a GGUF language model)";

impl VisionLanguageModel {
    /// Loads a model: a directory in Hugging Face layout, or a `.gguf` file (or a directory
    /// holding exactly one and no `config.json`).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        match crate::gguf::find_gguf(path)? {
            Some(file) => Self::load_gguf(&file, opts),
            None => Self::load_hf(path, opts),
        }
    }

    /// Loads a model directory in Hugging Face layout.
    pub fn load_hf(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let files = ModelDir::open(dir)?;
        let (tokenizer, template) = Self::hf_tokenizer_and_template(&files)?;
        let vb = crate::weights::load_var_builder(&files.weight_files, opts.dtype, &opts.device)?;
        let model = Llava::load(&files.config, vb, opts.quantize, opts.quant_kernels)
            .map_err(|e| Error::Weights(e.to_string()))?;
        Self::assemble_vision(files, tokenizer, template, model)
    }

    /// Loads a llama-architecture GGUF language model; with `opts.vision_from`, pairs it
    /// with that LLaVA directory's vision tower and projector.
    pub fn load_gguf(file: &Path, opts: &LoadOptions) -> Result<Self> {
        let tensors = GgufTensors::open(file, &opts.device)?;
        let text = crate::gguf::config::text_config(tensors.content())?;
        let decoder = Decoder::load(
            &text,
            &DecoderWeights::Gguf {
                file: &tensors,
                rope: DecoderWeights::gguf_rope_layout(text.kind),
                dequantize: opts.dequantize_gguf,
                fuse: !opts.unfused,
                kernels: opts.quant_kernels,
            },
        )
        .map_err(|e| Error::Weights(e.to_string()))?;
        if let Some(dir) = &opts.vision_from {
            let files = ModelDir::open(dir)?;
            check_same_language_model(&files, &text, file)?;
            let (tokenizer, template) = Self::hf_tokenizer_and_template(&files)?;
            let vb =
                crate::weights::load_var_builder(&files.weight_files, opts.dtype, &opts.device)?;
            let model = Llava::with_language_model(&files.config, vb, decoder)
                .map_err(|e| Error::Weights(e.to_string()))?;
            return Self::assemble_vision(files, tokenizer, template, model);
        }
        let md = Metadata::new(tensors.content());
        let (inner, bos) = crate::gguf::tokenizer::tokenizer_from_gguf(&md)?;
        let name_of = |key: &str| md.opt_u32(key).and_then(|id| inner.id_to_token(id));
        let special = SpecialTokens {
            bos_token: name_of("tokenizer.ggml.bos_token_id"),
            eos_token: name_of("tokenizer.ggml.eos_token_id"),
            unk_token: name_of("tokenizer.ggml.unknown_token_id"),
            pad_token: name_of("tokenizer.ggml.padding_token_id"),
        };
        let mut eos = text.eos_token_ids.clone();
        // llama.cpp also stops at end-of-turn tokens (ChatML's <|im_end|>, Llama 3's <|eot_id|>).
        if let Some(eot) = md.opt_u32("tokenizer.ggml.eot_token_id") {
            eos.push(eot);
        }
        for t in ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>"] {
            if let Some(id) = inner.token_to_id(t) {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        let source = md
            .opt_string("tokenizer.chat_template")
            .ok_or_else(|| Error::Config {
                path: file.to_path_buf(),
                message: "the GGUF file has no tokenizer.chat_template".into(),
            })?
            .to_string();
        let template = ChatTemplate::from_source(source, special)?;
        Ok(Self {
            text,
            vision: None,
            model: Llava::text_only(decoder),
            tokenizer: TextTokenizer::from_parts(inner, eos, bos),
            template,
        })
    }

    fn hf_tokenizer_and_template(files: &ModelDir) -> Result<(TextTokenizer, ChatTemplate)> {
        let mut eos = files.eos_ids.clone();
        let tokenizer = TextTokenizer::from_file(&files.tokenizer_file, Vec::new())?;
        if let Some(id) = files
            .special_tokens
            .eos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t))
        {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        let tokenizer = TextTokenizer::from_file(&files.tokenizer_file, eos)?;
        let template =
            ChatTemplate::from_source(files.chat_template.clone(), files.special_tokens.clone())?;
        Ok((tokenizer, template))
    }

    fn assemble_vision(
        files: ModelDir,
        tokenizer: TextTokenizer,
        template: ChatTemplate,
        model: Llava,
    ) -> Result<Self> {
        let config = files.config;
        let image_token = tokenizer
            .id_to_token(config.image_token_id)
            .ok_or_else(|| Error::Config {
                path: files.tokenizer_file.clone(),
                message: format!(
                    "the image token id {} from config.json is not in the vocabulary",
                    config.image_token_id
                ),
            })?;
        let patches = config.vision.patches_per_side().pow(2);
        // The tower yields the patches plus CLIP's class token (SigLIP has none); "default"
        // drops the first position whatever it is, as transformers does; "full" keeps all.
        let positions = patches + usize::from(config.vision.kind == VisionKind::Clip);
        let tokens_per_image = match config.select_strategy {
            SelectStrategy::Default => positions.saturating_sub(1),
            SelectStrategy::Full => positions,
        };
        Ok(Self {
            text: config.text.clone(),
            vision: Some(VisionSetup {
                config,
                image_processor: files.image_processor,
                image_token,
                tokens_per_image,
            }),
            model,
            tokenizer,
            template,
        })
    }

    fn vision(&self) -> Result<&VisionSetup> {
        self.vision
            .as_ref()
            .ok_or_else(|| Error::InvalidInput(NO_VISION.into()))
    }

    /// The parsed `config.json` of a model with vision (`None` for a text-only model).
    pub fn vision_config(&self) -> Option<&ModelConfig> {
        self.vision.as_ref().map(|v| &v.config)
    }

    /// The language model's settings.
    pub fn text_config(&self) -> &TextConfig {
        &self.text
    }

    /// Whether the model accepts images.
    pub fn has_vision(&self) -> bool {
        self.vision.is_some()
    }

    /// The image processor settings (`None` for a text-only model).
    pub fn image_processor(&self) -> Option<&ImageProcessorConfig> {
        self.vision.as_ref().map(|v| &v.image_processor)
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The underlying network.
    pub fn model(&self) -> &Llava {
        &self.model
    }

    /// The model's context length in tokens.
    pub fn context_length(&self) -> usize {
        self.model.language_model().max_positions()
    }

    /// Image tokens of a fixed-resolution (plain LLaVA) image, or of a LLaVA-NeXT base image
    /// (0 for a text-only model).
    pub fn tokens_per_image(&self) -> usize {
        self.vision.as_ref().map_or(0, |v| v.tokens_per_image)
    }

    /// Image tokens an image of `height × width` expands to, as the HF processor counts them
    /// (for `Low` detail on LLaVA-NeXT: the base image and one newline).
    pub fn image_tokens_for(&self, height: u32, width: u32, detail: ImageDetail) -> Result<usize> {
        let vision = self.vision()?;
        let config = &vision.config;
        match config.architecture {
            Architecture::Llava => Ok(vision.tokens_per_image),
            Architecture::LlavaNext | Architecture::LlavaOnevision
                if detail == ImageDetail::Low =>
            {
                Ok(vision.tokens_per_image + 1)
            }
            Architecture::LlavaOnevision => {
                let v = &config.vision;
                let drop = usize::from(config.select_strategy == SelectStrategy::Default);
                onevision_image_tokens(
                    (height, width),
                    &config.image_grid_pinpoints,
                    v.image_size as u32,
                    v.patch_size as u32,
                    config.anyres_max_tiles.unwrap_or(9),
                )
                .map(|n| n - drop)
                .ok_or_else(|| Error::InvalidInput("no grid pinpoints".into()))
            }
            Architecture::LlavaNext => {
                let v = &config.vision;
                let class = u32::from(v.kind == VisionKind::Clip);
                let drop = u32::from(config.select_strategy == SelectStrategy::Default);
                next_image_tokens(
                    (height, width),
                    &config.image_grid_pinpoints,
                    v.image_size as u32,
                    v.patch_size as u32,
                    class,
                )
                .map(|n| n - drop as usize)
                .ok_or_else(|| Error::InvalidInput("no grid pinpoints".into()))
            }
        }
    }

    /// Renders the chat template with a generation prompt.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        let opts = RenderOptions {
            add_generation_prompt: true,
            image_token: self
                .vision
                .as_ref()
                .map(|v| v.image_token.clone())
                .unwrap_or_default(),
            ..RenderOptions::default()
        };
        Ok(self.template.render(messages, &opts)?)
    }

    /// Preprocesses decoded RGB images: one tile each for plain LLaVA, the base image and the
    /// anyres grid for LLaVA-NeXT.
    pub fn preprocess_images(&self, images: &[::image::RgbImage]) -> Result<Option<ImageBatch>> {
        self.preprocess_images_with_detail(images, &[])
    }

    /// [`Self::preprocess_images`] with a detail level per image (missing entries: `Auto`).
    pub fn preprocess_images_with_detail(
        &self,
        images: &[::image::RgbImage],
        details: &[ImageDetail],
    ) -> Result<Option<ImageBatch>> {
        if images.is_empty() {
            return Ok(None);
        }
        let vision = self.vision()?;
        let (ip, config) = (&vision.image_processor, &vision.config);
        let mut planes = Vec::with_capacity(images.len());
        let mut tiles_per_image = Vec::with_capacity(images.len());
        let mut image_sizes = Vec::with_capacity(images.len());
        for (i, img) in images.iter().enumerate() {
            let detail = details.get(i).copied().unwrap_or_default();
            let tiles = match config.architecture {
                Architecture::Llava => vec![img.clone()],
                Architecture::LlavaNext | Architecture::LlavaOnevision => {
                    let tile = config.vision.image_size as u32;
                    let filter = match ip.resample {
                        PIL_BILINEAR => ResampleFilter::Bilinear,
                        _ => ResampleFilter::Bicubic,
                    };
                    let base = match ip.size {
                        ResizeSize::ShortestEdge(s) => (s, s),
                        ResizeSize::Exact { height, width } => (height, width),
                    };
                    let mut tiles =
                        anyres_tiles(img, &config.image_grid_pinpoints, base, tile, filter)
                            .ok_or_else(|| Error::InvalidInput("no grid pinpoints".into()))?;
                    if detail == ImageDetail::Low {
                        tiles.truncate(1);
                    }
                    tiles
                }
            };
            tiles_per_image.push(tiles.len());
            image_sizes.push((img.height(), img.width()));
            for t in &tiles {
                let px = ip
                    .preprocess(t)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
                planes.push(Tensor::from_vec(
                    px.data,
                    (px.channels, px.height, px.width),
                    &Device::Cpu,
                )?);
            }
        }
        Ok(Some(ImageBatch {
            pixel_values: Tensor::stack(&planes, 0)?,
            tiles_per_image,
            image_sizes,
        }))
    }

    /// Builds an [`ImageBatch`] from an HF processor's output: `(n, 3, H, W)` for LLaVA, or
    /// `(n, max_tiles, 3, H, W)` zero-padded plus `image_sizes` for LLaVA-NeXT.
    pub fn image_batch_from_processor(
        &self,
        pixel_values: &Tensor,
        image_sizes: &[(u32, u32)],
    ) -> Result<ImageBatch> {
        if pixel_values.rank() == 4 {
            let n = pixel_values.dim(0)?;
            return Ok(ImageBatch {
                pixel_values: pixel_values.clone(),
                tiles_per_image: vec![1; n],
                image_sizes: image_sizes.to_vec(),
            });
        }
        let config = &self.vision()?.config;
        let tile = config.vision.image_size as u32;
        let mut parts = Vec::new();
        let mut tiles_per_image = Vec::new();
        for (i, &size) in image_sizes.iter().enumerate() {
            let (rows, cols) = grid_shape(size, &config.image_grid_pinpoints, tile)
                .ok_or_else(|| Error::InvalidInput("no grid pinpoints".into()))?;
            let tiles = 1 + (rows * cols) as usize;
            parts.push(pixel_values.get(i)?.narrow(0, 0, tiles)?);
            tiles_per_image.push(tiles);
        }
        Ok(ImageBatch {
            pixel_values: Tensor::cat(&parts, 0)?,
            tiles_per_image,
            image_sizes: image_sizes.to_vec(),
        })
    }

    /// Turns chat messages and their images (in order of appearance) into model inputs.
    pub fn prepare(
        &self,
        messages: &[ChatMessage],
        images: &[::image::RgbImage],
    ) -> Result<PreparedPrompt> {
        self.prepare_with_detail(messages, images, &[])
    }

    /// [`Self::prepare`] with a detail level per image (missing entries: `Auto`).
    pub fn prepare_with_detail(
        &self,
        messages: &[ChatMessage],
        images: &[::image::RgbImage],
        details: &[ImageDetail],
    ) -> Result<PreparedPrompt> {
        let expected = count_images(messages);
        if expected != images.len() {
            return Err(Error::InvalidInput(format!(
                "the messages reference {expected} images but {} were given",
                images.len()
            )));
        }
        if expected > 0 && self.vision.is_none() {
            return Err(Error::InvalidInput(NO_VISION.into()));
        }
        let prompt = self.render(messages)?;
        let Some(vision) = &self.vision else {
            return Ok(PreparedPrompt {
                input_ids: self.tokenizer.encode(&prompt)?,
                prompt,
                images: None,
            });
        };
        let image_token = vision.image_token.as_str();
        let placeholders = prompt.matches(image_token).count();
        if placeholders != images.len() {
            return Err(Error::InvalidInput(format!(
                "the prompt holds {placeholders} image placeholders ({:?}) for {} images; \
                 message text must not contain the image token",
                image_token,
                images.len()
            )));
        }
        // Expand each placeholder, in order, into that image's number of tokens.
        let mut expanded = String::with_capacity(prompt.len());
        let mut rest = prompt.as_str();
        for (i, img) in images.iter().enumerate() {
            let Some(at) = rest.find(image_token) else {
                break;
            };
            expanded.push_str(&rest[..at]);
            let detail = details.get(i).copied().unwrap_or_default();
            let n = self.image_tokens_for(img.height(), img.width(), detail)?;
            expanded.push_str(&image_token.repeat(n));
            rest = &rest[at + image_token.len()..];
        }
        expanded.push_str(rest);
        let input_ids = self.tokenizer.encode(&expanded)?;
        let images = self.preprocess_images_with_detail(images, details)?;
        Ok(PreparedPrompt {
            prompt,
            input_ids,
            images,
        })
    }

    /// Logits `(seq, vocab)` (f32) of a full prompt forward pass.
    pub fn prompt_logits(&self, input_ids: &[u32], images: Option<&ImageBatch>) -> Result<Tensor> {
        let mut cache = self.new_cache();
        let images = self.to_model_device(images)?;
        let hidden = self.model.prefill(input_ids, images.as_ref(), &mut cache)?;
        Ok(self
            .model
            .language_model()
            .logits(&hidden)?
            .squeeze(0)?
            .to_dtype(DType::F32)?)
    }

    fn to_model_device(&self, images: Option<&ImageBatch>) -> Result<Option<ImageBatch>> {
        Ok(match images {
            Some(b) => Some(ImageBatch {
                pixel_values: b.pixel_values.to_device(self.model.device())?,
                ..b.clone()
            }),
            None => None,
        })
    }

    /// An empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.model.language_model().num_layers())
    }

    /// Prefills `prompt` into `cache` and returns the logits `(vocab,)` (f32) of its last
    /// position: the distribution of the first generated token.
    pub fn prefill_last_logits(
        &self,
        prompt: &PreparedPrompt,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let images = self.to_model_device(prompt.images.as_ref())?;
        let hidden = self
            .model
            .prefill(&prompt.input_ids, images.as_ref(), cache)?;
        let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
        Ok(self
            .model
            .language_model()
            .logits(&last)?
            .flatten_all()?
            .to_dtype(DType::F32)?)
    }

    /// Greedy decoding of up to `max_new_tokens`, stopping at EOS unless `ignore_eos`.
    pub fn generate_greedy(
        &self,
        prompt: &PreparedPrompt,
        max_new_tokens: usize,
        ignore_eos: bool,
    ) -> Result<Vec<u32>> {
        let mut cache = self.new_cache();
        let mut logits = self.prefill_last_logits(prompt, &mut cache)?;
        let mut out = Vec::new();
        while out.len() < max_new_tokens {
            let next = logits.argmax(0)?.to_scalar::<u32>()?;
            out.push(next);
            if !ignore_eos && self.tokenizer.is_eos(next) {
                break;
            }
            if out.len() == max_new_tokens || cache.seq_len() >= self.context_length() {
                break;
            }
            logits = self.model.decode_step(next, &mut cache)?;
        }
        Ok(out)
    }
}

/// Refuses a `--vision-from` directory whose language model differs from the GGUF one.
fn check_same_language_model(files: &ModelDir, gguf: &TextConfig, file: &Path) -> Result<()> {
    let hf = &files.config.text;
    if hf.kind != gguf.kind || hf.qkv_bias != gguf.qkv_bias {
        return Err(Error::Config {
            path: file.to_path_buf(),
            message: format!(
                "the GGUF language model does not match --vision-from {}: {:?} (q/k/v bias {}) \
                 vs {:?} (q/k/v bias {})",
                files.dir.display(),
                gguf.kind,
                gguf.qkv_bias,
                hf.kind,
                hf.qkv_bias
            ),
        });
    }
    let pairs = [
        ("head size", hf.head_dim, gguf.head_dim),
        ("hidden size", hf.hidden_size, gguf.hidden_size),
        ("layers", hf.num_hidden_layers, gguf.num_hidden_layers),
        (
            "attention heads",
            hf.num_attention_heads,
            gguf.num_attention_heads,
        ),
        (
            "key/value heads",
            hf.num_key_value_heads,
            gguf.num_key_value_heads,
        ),
        ("vocabulary", hf.vocab_size, gguf.vocab_size),
    ];
    for (what, a, b) in pairs {
        if a != b {
            return Err(Error::Config {
                path: file.to_path_buf(),
                message: format!(
                    "the GGUF language model does not match --vision-from {}: {what} {b} vs {a}",
                    files.dir.display()
                ),
            });
        }
    }
    Ok(())
}
