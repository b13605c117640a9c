//! A loaded vision-language model with everything needed to turn chat messages and images
//! into tokens: tokenizer, chat template, image processor and weights.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::chat_template::{ChatTemplate, RenderOptions};
use crate::config::{Architecture, ModelConfig, SelectStrategy, VisionKind};
use crate::error::{Error, Result};
use crate::image::anyres::{anyres_tiles, grid_shape, next_image_tokens, onevision_image_tokens};
use crate::image::ImageProcessorConfig;
use crate::image::{ResampleFilter, ResizeSize, PIL_BILINEAR};
use crate::messages::{count_images, ChatMessage};
use crate::model_dir::ModelDir;
use crate::models::llava::{ImageBatch, Llava};
use crate::nn::kv_cache::KvCache;
use crate::tokenizer::TextTokenizer;

/// Where and in which precision to load the weights.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute device.
    pub device: Device,
    /// Weight and activation dtype.
    pub dtype: DType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
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

/// A vision-language model ready to serve.
#[derive(Debug)]
pub struct VisionLanguageModel {
    config: ModelConfig,
    model: Llava,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    image_processor: ImageProcessorConfig,
    image_token: String,
    tokens_per_image: usize,
}

impl VisionLanguageModel {
    /// Loads a model from a directory in Hugging Face layout.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let files = ModelDir::open(dir)?;
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
        let config = files.config.clone();
        let image_token = tokenizer
            .id_to_token(config.image_token_id)
            .ok_or_else(|| Error::Config {
                path: files.tokenizer_file.clone(),
                message: format!(
                    "the image token id {} from config.json is not in the vocabulary",
                    config.image_token_id
                ),
            })?;
        let template =
            ChatTemplate::from_source(files.chat_template.clone(), files.special_tokens.clone())?;
        let vb = crate::weights::load_var_builder(&files.weight_files, opts.dtype, &opts.device)?;
        let model = Llava::load(&config, vb).map_err(|e| Error::Weights(e.to_string()))?;
        let patches = config.vision.patches_per_side().pow(2);
        // The tower yields the patches plus CLIP's class token (SigLIP has none); "default"
        // drops the first position whatever it is, as transformers does; "full" keeps all.
        let positions = patches + usize::from(config.vision.kind == VisionKind::Clip);
        let tokens_per_image = match config.select_strategy {
            SelectStrategy::Default => positions.saturating_sub(1),
            SelectStrategy::Full => positions,
        };
        Ok(Self {
            config,
            model,
            tokenizer,
            template,
            image_processor: files.image_processor,
            image_token,
            tokens_per_image,
        })
    }

    /// The parsed `config.json`.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The image processor settings.
    pub fn image_processor(&self) -> &ImageProcessorConfig {
        &self.image_processor
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

    /// Image tokens of a fixed-resolution (plain LLaVA) image, or of a LLaVA-NeXT base image.
    pub fn tokens_per_image(&self) -> usize {
        self.tokens_per_image
    }

    /// Image tokens an image of `height × width` expands to, as the HF processor counts them
    /// (for `Low` detail on LLaVA-NeXT: the base image and one newline).
    pub fn image_tokens_for(&self, height: u32, width: u32, detail: ImageDetail) -> Result<usize> {
        match self.config.architecture {
            Architecture::Llava => Ok(self.tokens_per_image),
            Architecture::LlavaNext | Architecture::LlavaOnevision
                if detail == ImageDetail::Low =>
            {
                Ok(self.tokens_per_image + 1)
            }
            Architecture::LlavaOnevision => {
                let v = &self.config.vision;
                let drop = usize::from(self.config.select_strategy == SelectStrategy::Default);
                onevision_image_tokens(
                    (height, width),
                    &self.config.image_grid_pinpoints,
                    v.image_size as u32,
                    v.patch_size as u32,
                    self.config.anyres_max_tiles.unwrap_or(9),
                )
                .map(|n| n - drop)
                .ok_or_else(|| Error::InvalidInput("no grid pinpoints".into()))
            }
            Architecture::LlavaNext => {
                let v = &self.config.vision;
                let class = u32::from(v.kind == VisionKind::Clip);
                let drop = u32::from(self.config.select_strategy == SelectStrategy::Default);
                next_image_tokens(
                    (height, width),
                    &self.config.image_grid_pinpoints,
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
            image_token: self.image_token.clone(),
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
        let ip = &self.image_processor;
        let mut planes = Vec::with_capacity(images.len());
        let mut tiles_per_image = Vec::with_capacity(images.len());
        let mut image_sizes = Vec::with_capacity(images.len());
        for (i, img) in images.iter().enumerate() {
            let detail = details.get(i).copied().unwrap_or_default();
            let tiles = match self.config.architecture {
                Architecture::Llava => vec![img.clone()],
                Architecture::LlavaNext | Architecture::LlavaOnevision => {
                    let tile = self.config.vision.image_size as u32;
                    let filter = match ip.resample {
                        PIL_BILINEAR => ResampleFilter::Bilinear,
                        _ => ResampleFilter::Bicubic,
                    };
                    let base = match ip.size {
                        ResizeSize::ShortestEdge(s) => (s, s),
                        ResizeSize::Exact { height, width } => (height, width),
                    };
                    let mut tiles =
                        anyres_tiles(img, &self.config.image_grid_pinpoints, base, tile, filter)
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
        let tile = self.config.vision.image_size as u32;
        let mut parts = Vec::new();
        let mut tiles_per_image = Vec::new();
        for (i, &size) in image_sizes.iter().enumerate() {
            let (rows, cols) = grid_shape(size, &self.config.image_grid_pinpoints, tile)
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
        let prompt = self.render(messages)?;
        let placeholders = prompt.matches(self.image_token.as_str()).count();
        if placeholders != images.len() {
            return Err(Error::InvalidInput(format!(
                "the prompt holds {placeholders} image placeholders ({:?}) for {} images; \
                 message text must not contain the image token",
                self.image_token,
                images.len()
            )));
        }
        // Expand each placeholder, in order, into that image's number of tokens.
        let mut expanded = String::with_capacity(prompt.len());
        let mut rest = prompt.as_str();
        for (i, img) in images.iter().enumerate() {
            let Some(at) = rest.find(self.image_token.as_str()) else {
                break;
            };
            expanded.push_str(&rest[..at]);
            let detail = details.get(i).copied().unwrap_or_default();
            let n = self.image_tokens_for(img.height(), img.width(), detail)?;
            expanded.push_str(&self.image_token.repeat(n));
            rest = &rest[at + self.image_token.len()..];
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
