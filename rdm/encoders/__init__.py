"""Encoders: images and texts into one vector space. ``load_encoder(name)`` builds any of them.

Names:
- ``open_clip:MODEL/PRETRAINED`` (default ``open_clip:ViT-B-32/laion2b_s34b_b79k``); PRETRAINED may
  be a tag, a local checkpoint file, or MODEL may be ``local-dir:/path``.
- ``tiny``: a tiny open_clip architecture with fixed random weights, for tests only.
- ``conse``: offline zero-shot encoder (ConSE, Norouzi et al. 2014): an image is the
  probability-weighted mean of the sentence embeddings of its top ImageNet classes
  (EfficientNet-Lite0), a text is embedded by the same sentence model (all-MiniLM-L6-v2).
  Both ship inside pip packages, so it works on air-gapped machines.
All encoders return L2-normalised float32 rows.

This package owns the models that embed; it imports only ``rdm.common`` and ``rdm.errors``.
"""

from rdm.encoders.base import Encoder, l2_normalise, pick_device
from rdm.encoders.conse import ConseEncoder, imagenet_class_names, sentence_model
from rdm.encoders.openclip import OpenClipEncoder, open_clip_weights_present, tiny_encoder
from rdm.encoders.resolve import DEFAULT_OPEN_CLIP, EncoderChoice, encoder_dim, load_encoder, resolve_encoder

__all__ = ["ConseEncoder", "DEFAULT_OPEN_CLIP", "Encoder", "EncoderChoice", "OpenClipEncoder", "encoder_dim", "imagenet_class_names",
           "l2_normalise", "load_encoder", "open_clip_weights_present", "pick_device", "resolve_encoder",
           "sentence_model", "tiny_encoder"]
