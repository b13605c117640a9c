//! `LlavaForConditionalGeneration`: a vision tower, a projector and a language model,
//! composed as in transformers' `modeling_llava.py`. Image features replace the
//! placeholder tokens of the prompt, in order.

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::{Architecture, ModelConfig, SelectStrategy};
use crate::image::anyres::{grid_shape, onevision_downscaled, unpadded_shape};
use crate::models::decoder::Decoder;
use crate::models::decoder_weights::DecoderWeights;
use crate::models::projector::MultiModalProjector;
use crate::models::vit::{concat_features, VisionTransformer};
use crate::nn::kv_cache::KvCache;
use crate::nn::linear::QuantKernels;

/// Preprocessed images: every tile of every image in order, and how they group.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// `(tiles, 3, H, W)` f32: for each image its tiles (one for plain LLaVA; the base image
    /// then the grid for LLaVA-NeXT).
    pub pixel_values: Tensor,
    /// Tiles of each image.
    pub tiles_per_image: Vec<usize>,
    /// Original `(height, width)` of each image.
    pub image_sizes: Vec<(u32, u32)>,
}

/// LLaVA-NeXT's anyres packing settings.
#[derive(Debug, Clone)]
struct Anyres {
    pinpoints: Vec<(u32, u32)>,
    tile: u32,
    per_side: usize,
    image_newline: Tensor,
    /// OneVision's `anyres_max_N`.
    max_tiles: Option<u32>,
}

/// The vision half: tower, projector and how features are selected and packed.
#[derive(Debug, Clone)]
struct VisionBranch {
    vision_tower: VisionTransformer,
    multi_modal_projector: MultiModalProjector,
    feature_layers: Vec<usize>,
    select_strategy: SelectStrategy,
    image_token_id: u32,
    anyres: Option<Anyres>,
    dtype: DType,
}

/// A loaded LLaVA / LLaVA-NeXT / OneVision model, or a text-only language model (no
/// vision branch: images are refused).
#[derive(Debug, Clone)]
pub struct Llava {
    vision: Option<VisionBranch>,
    language_model: Decoder,
    device: Device,
    dtype: DType,
}

impl Llava {
    /// Loads from a var builder using the canonical (transformers 5) names:
    /// `model.vision_tower`, `model.multi_modal_projector`, `model.language_model`, `lm_head`;
    /// the language model's linears are quantized to `quantize` when set (run as `kernels`
    /// says).
    pub fn load(
        cfg: &ModelConfig,
        vb: VarBuilder,
        quantize: Option<GgmlDType>,
        kernels: QuantKernels,
    ) -> Result<Self> {
        let weights = DecoderWeights::Float {
            vb: vb.pp("model").pp("language_model"),
            head: vb.pp("lm_head"),
            quantize,
            kernels,
        };
        let language_model = Decoder::load(&cfg.text, &weights)?;
        Self::with_language_model(cfg, vb, language_model)
    }

    /// A text-only model: no vision branch.
    pub fn text_only(language_model: Decoder) -> Self {
        Self {
            vision: None,
            device: language_model.device().clone(),
            dtype: language_model.dtype(),
            language_model,
        }
    }

    /// Loads the vision tower and projector from `vb` (canonical names) and pairs them with
    /// an already loaded language model (e.g. from GGUF).
    pub fn with_language_model(
        cfg: &ModelConfig,
        vb: VarBuilder,
        language_model: Decoder,
    ) -> Result<Self> {
        let m = vb.pp("model");
        let vision_tower = VisionTransformer::load(&cfg.vision, m.pp("vision_tower"))?;
        let n_states = vision_tower.num_hidden_states() as i64;
        let feature_layers = cfg
            .vision_feature_layers
            .iter()
            .map(|&l| {
                if l < 0 {
                    (n_states + l) as usize
                } else {
                    l as usize
                }
            })
            .collect::<Vec<_>>();
        let vision_dim = cfg.vision.hidden_size * feature_layers.len();
        let anyres = match cfg.architecture {
            Architecture::Llava => None,
            Architecture::LlavaNext | Architecture::LlavaOnevision => Some(Anyres {
                pinpoints: cfg.image_grid_pinpoints.clone(),
                tile: cfg.vision.image_size as u32,
                per_side: cfg.vision.patches_per_side(),
                image_newline: m.get(cfg.text.hidden_size, "image_newline")?,
                max_tiles: cfg.anyres_max_tiles,
            }),
        };
        let vision = VisionBranch {
            anyres,
            multi_modal_projector: MultiModalProjector::load(
                vision_dim,
                cfg.text.hidden_size,
                cfg.projector_hidden_act,
                cfg.projector_bias,
                m.pp("multi_modal_projector"),
            )?,
            vision_tower,
            feature_layers,
            select_strategy: cfg.select_strategy,
            image_token_id: cfg.image_token_id,
            dtype: vb.dtype(),
        };
        Ok(Self {
            vision: Some(vision),
            device: language_model.device().clone(),
            dtype: language_model.dtype(),
            language_model,
        })
    }

    fn vision(&self) -> Result<&VisionBranch> {
        self.vision
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("this model has no vision tower".into()))
    }

    /// Whether the model takes images.
    pub fn has_vision(&self) -> bool {
        self.vision.is_some()
    }

    /// Encodes `(n, 3, H, W)` pixel values into `(n, tokens_per_tile, text_hidden)`.
    pub fn encode_images(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let v = self.vision()?;
        let states = v
            .vision_tower
            .hidden_states(pixel_values, &v.feature_layers)?;
        let feats = concat_features(&states)?;
        let feats = match v.select_strategy {
            SelectStrategy::Default => feats.narrow(1, 1, feats.dim(1)? - 1)?,
            SelectStrategy::Full => feats,
        };
        v.multi_modal_projector.forward(&feats)
    }

    /// Embeds `input_ids` (a 1-D list) and puts the rows of `image_features`
    /// (`(tokens, hidden)`, in order) at the image-token positions.
    /// Returns `(1, seq, hidden)`.
    pub fn embed_with_images(
        &self,
        input_ids: &[u32],
        image_features: Option<&Tensor>,
    ) -> Result<Tensor> {
        let device = self.device();
        let ids = Tensor::new(input_ids, device)?;
        let text = self.language_model.embed(&ids)?;
        let image_token = self.vision.as_ref().map(|v| v.image_token_id);
        let positions: Vec<usize> = input_ids
            .iter()
            .enumerate()
            .filter(|(_, &t)| Some(t) == image_token)
            .map(|(i, _)| i)
            .collect();
        let feats = match image_features {
            Some(f) => Some(f.to_dtype(text.dtype())?),
            None => None,
        };
        let n_feats = match &feats {
            Some(f) => f.dim(0)?,
            None => 0,
        };
        if positions.len() != n_feats {
            candle_core::bail!(
                "the prompt has {} image tokens but the images produced {} features",
                positions.len(),
                n_feats
            );
        }
        let Some(feats) = feats else {
            return text.unsqueeze(0);
        };
        // Gather rows from [text; feats]: image positions take feats in order.
        let seq = input_ids.len();
        let mut index: Vec<u32> = (0..seq as u32).collect();
        for (k, &p) in positions.iter().enumerate() {
            index[p] = (seq + k) as u32;
        }
        let index = Tensor::new(index, device)?;
        Tensor::cat(&[&text, &feats], 0)?
            .index_select(&index, 0)?
            .unsqueeze(0)
    }

    /// The language model.
    pub fn language_model(&self) -> &Decoder {
        &self.language_model
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The placeholder token id that image features replace (`None` without vision).
    pub fn image_token_id(&self) -> Option<u32> {
        self.vision.as_ref().map(|v| v.image_token_id)
    }

    /// The image features for the prompt, `(total_tokens, text_hidden)`, in order: all tiles'
    /// features for plain LLaVA; base + unpadded grid with newlines for LLaVA-NeXT.
    pub fn image_features(&self, images: &ImageBatch) -> Result<Tensor> {
        let v = self.vision()?;
        let feats = self.encode_images(&images.pixel_values.to_dtype(v.dtype)?)?;
        let Some(anyres) = &v.anyres else {
            return feats.flatten_to(1);
        };
        let mut packed = Vec::with_capacity(images.tiles_per_image.len());
        let mut start = 0;
        for (&tiles, &size) in images.tiles_per_image.iter().zip(&images.image_sizes) {
            packed.push(self.pack_anyres(anyres, &feats.narrow(0, start, tiles)?, size)?);
            start += tiles;
        }
        Tensor::cat(&packed, 0)
    }

    /// `pack_image_features` of transformers' LLaVA-NeXT for one image's `(tiles, t, C)`.
    fn pack_anyres(&self, a: &Anyres, feats: &Tensor, size: (u32, u32)) -> Result<Tensor> {
        let (tiles, _, channels) = feats.dims3()?;
        let base = feats.get(0)?;
        let newline = a.image_newline.to_dtype(feats.dtype())?;
        if tiles == 1 {
            // Base image only: its features and one newline.
            return Tensor::cat(&[&base, &newline.unsqueeze(0)?], 0);
        }
        let (rows, cols) = grid_shape(size, &a.pinpoints, a.tile)
            .ok_or_else(|| candle_core::Error::Msg("no grid pinpoints".into()))?;
        let (rows, cols) = (rows as usize, cols as usize);
        if rows * cols != tiles - 1 {
            candle_core::bail!(
                "image of size {size:?} needs {} tiles, got {}",
                rows * cols,
                tiles - 1
            );
        }
        let s = a.per_side;
        // (rows, cols, s, s, C) → (C, rows, s, cols, s) → (C, rows*s, cols*s)
        let grid = feats
            .narrow(0, 1, tiles - 1)?
            .reshape((rows, cols, s, s, channels))?
            .permute((4, 0, 2, 1, 3))?
            .reshape((channels, rows * s, cols * s))?;
        let (cur_h, cur_w) = (rows * s, cols * s);
        let (keep_h, keep_w) = unpadded_shape(size, cur_h as u32, cur_w as u32);
        let (keep_h, keep_w) = (keep_h as usize, keep_w as usize);
        let mut grid = grid.narrow(1, (cur_h - keep_h) / 2, keep_h)?.narrow(
            2,
            (cur_w - keep_w) / 2,
            keep_w,
        )?;
        let (mut keep_h, mut keep_w) = (keep_h, keep_w);
        if let Some(max) = a.max_tiles {
            let (h, w) = onevision_downscaled(keep_h as u32, keep_w as u32, s as u32, max);
            if (h as usize, w as usize) != (keep_h, keep_w) {
                grid = bilinear_resize(&grid.contiguous()?, h as usize, w as usize)?;
                (keep_h, keep_w) = (h as usize, w as usize);
            }
        }
        let newline_col = newline
            .reshape((channels, 1, 1))?
            .expand((channels, keep_h, 1))?;
        let grid = Tensor::cat(&[&grid, &newline_col], 2)?
            .reshape((channels, keep_h * (keep_w + 1)))?
            .t()?;
        Tensor::cat(&[&base, &grid], 0)
    }

    /// Prefill: runs the prompt (with images) through the language model, filling `cache`.
    /// Returns the final hidden states `(1, seq, hidden)`.
    pub fn prefill(
        &self,
        input_ids: &[u32],
        images: Option<&ImageBatch>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let feats = match images {
            Some(b) => Some(self.image_features(b)?),
            None => None,
        };
        let embeds = self.embed_with_images(input_ids, feats.as_ref())?;
        self.language_model.forward(&embeds, cache)
    }

    /// One decode step for token `id`; returns the logits `(vocab,)` in f32.
    pub fn decode_step(&self, id: u32, cache: &mut KvCache) -> Result<Tensor> {
        let ids = Tensor::new(&[[id]], &self.device)?;
        let embeds = self.language_model.embed(&ids)?;
        let hidden = self.language_model.forward(&embeds, cache)?;
        self.language_model
            .logits(&hidden)?
            .flatten_all()?
            .to_dtype(DType::F32)
    }
}

/// `F.interpolate(x[None], (out_h, out_w), mode="bilinear", align_corners=False)[0]` for a
/// `(C, H, W)` tensor, computed in f32 as torch's CPU kernel does.
pub fn bilinear_resize(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let dtype = x.dtype();
    let (c, h, w) = x.dims3()?;
    let data = x.to_dtype(DType::F32)?.to_vec3::<f32>()?;
    // Source coordinate, lower index, upper-index step and weight of the upper index.
    let axis = |out: usize, input: usize| -> Vec<(usize, usize, f32)> {
        let scale = input as f32 / out as f32;
        (0..out)
            .map(|o| {
                let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (src as usize).min(input - 1);
                let step = usize::from(i0 < input - 1);
                (i0, step, src - i0 as f32)
            })
            .collect()
    };
    let ys = axis(out_h, h);
    let xs = axis(out_w, w);
    let mut out = Vec::with_capacity(c * out_h * out_w);
    for plane in &data {
        for &(y0, dy, ly) in &ys {
            for &(x0, dx, lx) in &xs {
                let (r0, r1) = (&plane[y0], &plane[y0 + dy]);
                let top = (1.0 - lx) * r0[x0] + lx * r0[x0 + dx];
                let bottom = (1.0 - lx) * r1[x0] + lx * r1[x0 + dx];
                out.push((1.0 - ly) * top + ly * bottom);
            }
        }
    }
    Tensor::from_vec(out, (c, out_h, out_w), x.device())?.to_dtype(dtype)
}
