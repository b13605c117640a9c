//! `LlavaForConditionalGeneration`: a vision tower, a projector and a language model,
//! composed as in transformers' `modeling_llava.py`. Image features replace the
//! placeholder tokens of the prompt, in order.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::{ModelConfig, SelectStrategy};
use crate::models::decoder::Decoder;
use crate::models::projector::MultiModalProjector;
use crate::models::vit::{concat_features, VisionTransformer};
use crate::nn::kv_cache::KvCache;

/// A loaded LLaVA model.
#[derive(Debug, Clone)]
pub struct Llava {
    vision_tower: VisionTransformer,
    multi_modal_projector: MultiModalProjector,
    language_model: Decoder,
    feature_layers: Vec<usize>,
    select_strategy: SelectStrategy,
    image_token_id: u32,
    device: Device,
    dtype: DType,
}

impl Llava {
    /// Loads from a var builder using the canonical (transformers 5) names:
    /// `model.vision_tower`, `model.multi_modal_projector`, `model.language_model`, `lm_head`.
    pub fn load(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
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
        Ok(Self {
            multi_modal_projector: MultiModalProjector::load(
                vision_dim,
                cfg.text.hidden_size,
                cfg.projector_hidden_act,
                cfg.projector_bias,
                m.pp("multi_modal_projector"),
            )?,
            language_model: Decoder::load(&cfg.text, m.pp("language_model"), vb.pp("lm_head"))?,
            vision_tower,
            feature_layers,
            select_strategy: cfg.select_strategy,
            image_token_id: cfg.image_token_id,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// Encodes `(n, 3, H, W)` pixel values into `(n, tokens_per_image, text_hidden)`.
    pub fn encode_images(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let states = self
            .vision_tower
            .hidden_states(pixel_values, &self.feature_layers)?;
        let feats = concat_features(&states)?;
        let feats = match self.select_strategy {
            SelectStrategy::Default => feats.narrow(1, 1, feats.dim(1)? - 1)?,
            SelectStrategy::Full => feats,
        };
        self.multi_modal_projector.forward(&feats)
    }

    /// Embeds `input_ids` (a 1-D list) and puts the rows of `image_features`
    /// (`(n, tokens, hidden)`, flattened in order) at the image-token positions.
    /// Returns `(1, seq, hidden)`.
    pub fn embed_with_images(
        &self,
        input_ids: &[u32],
        image_features: Option<&Tensor>,
    ) -> Result<Tensor> {
        let device = self.device();
        let ids = Tensor::new(input_ids, device)?;
        let text = self.language_model.embed(&ids)?;
        let positions: Vec<usize> = input_ids
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == self.image_token_id)
            .map(|(i, _)| i)
            .collect();
        let feats = match image_features {
            Some(f) => Some(f.flatten_to(1)?.to_dtype(text.dtype())?),
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

    /// The placeholder token id that image features replace.
    pub fn image_token_id(&self) -> u32 {
        self.image_token_id
    }

    /// Prefill: runs the prompt (with images) through the language model, filling `cache`.
    /// Returns the final hidden states `(1, seq, hidden)`.
    pub fn prefill(
        &self,
        input_ids: &[u32],
        pixel_values: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let feats = match pixel_values {
            Some(p) => Some(self.encode_images(&p.to_dtype(self.dtype)?)?),
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
