"""Feature converters: task features (`inputs`, `targets`, noise) -> model features (T5X names).

Both give `encoder_input_tokens`, `decoder_target_tokens`, `decoder_input_tokens` (int32) and
`decoder_loss_weights` (float32), each `[L]` per example:

- `ARFeatureConverter`: T5X's EncDecFeatureConverter semantics with BOS=3 as the decoder start
  token (T5X uses 0, which is PAD here): `decoder_input_tokens` are the targets shifted right,
  and are 0 wherever the target is padding (so `!= 0` marks real positions, also after the
  last packed segment). Packing is allowed and adds T5X's `*_segment_ids` / `*_positions`.
- `PadirFeatureConverter`: `decoder_input_tokens` are the noised targets of a PaDIR task,
  aligned with `decoder_target_tokens` (no shift); loss weights come from the task's noise
  preprocessor. No packing: the non-causal decoder would attend across packed examples.
"""
from typing import Mapping

import seqio
import tensorflow as tf

from padir import preprocessors
from padir import special_tokens

FeatureSpec = seqio.FeatureConverter.FeatureSpec


class ARFeatureConverter(seqio.EncDecFeatureConverter):
  """Autoregressive encoder-decoder features (teacher forcing), T5X-compatible."""

  MODEL_FEATURES = {
      "encoder_input_tokens": FeatureSpec(dtype=tf.int32),
      "decoder_target_tokens": FeatureSpec(dtype=tf.int32),
      "decoder_input_tokens": FeatureSpec(dtype=tf.int32),
      "decoder_loss_weights": FeatureSpec(dtype=tf.float32),
  }

  def __init__(self, pack: bool = False, use_custom_packing_ops: bool = False,
               apply_length_check: bool = True, bos_id: int = special_tokens.BOS_ID):
    super().__init__(pack=pack, use_custom_packing_ops=use_custom_packing_ops,
                     apply_length_check=apply_length_check, bos_id=bos_id)

  def _convert_example(self, features: Mapping[str, tf.Tensor]) -> Mapping[str, tf.Tensor]:
    converted = dict(super()._convert_example(features))
    not_pad = seqio.non_padding_position(features["targets"])
    converted["decoder_input_tokens"] = converted["decoder_input_tokens"] * not_pad
    converted["decoder_loss_weights"] = tf.cast(not_pad, tf.float32)
    return converted


class PadirFeatureConverter(seqio.FeatureConverter):
  """Non-autoregressive features: noised targets as aligned decoder inputs. No packing."""

  TASK_FEATURES = {
      "inputs": FeatureSpec(dtype=tf.int32),
      "targets": FeatureSpec(dtype=tf.int32),
  }
  MODEL_FEATURES = {
      "encoder_input_tokens": FeatureSpec(dtype=tf.int32),
      "decoder_target_tokens": FeatureSpec(dtype=tf.int32),
      "decoder_input_tokens": FeatureSpec(dtype=tf.int32),
      "decoder_loss_weights": FeatureSpec(dtype=tf.float32),
  }
  PACKING_FEATURE_DTYPES = None

  def __init__(self, pack: bool = False, apply_length_check: bool = True):
    if pack:
      raise ValueError("PadirFeatureConverter does not pack: the PaDIR decoder is non-causal and "
                       "would attend across packed examples. Use pack=False.")
    super().__init__(pack=False, apply_length_check=apply_length_check)

  def _convert_features(self, ds: tf.data.Dataset,
                        task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    missing = [k for k in (preprocessors.NOISED_FEATURE, preprocessors.LOSS_WEIGHTS_FEATURE)
               if k not in ds.element_spec]
    if missing:
      raise ValueError(f"PadirFeatureConverter needs the features {missing} of a PaDIR task "
                       "(the `*_padir` flavour, whose preprocessors end with padir_noise); got "
                       f"{sorted(ds.element_spec)}")
    target_length = task_feature_lengths["targets"]
    ds = seqio.utils.trim_and_pad_dataset(ds, {
        "inputs": task_feature_lengths["inputs"],
        "targets": target_length,
        preprocessors.NOISED_FEATURE: target_length,
        preprocessors.LOSS_WEIGHTS_FEATURE: target_length,
    })

    def convert(features):
      return {
          "encoder_input_tokens": features["inputs"],
          "decoder_target_tokens": features["targets"],
          "decoder_input_tokens": features[preprocessors.NOISED_FEATURE],
          "decoder_loss_weights": features[preprocessors.LOSS_WEIGHTS_FEATURE],
      }

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
    return {
        "encoder_input_tokens": task_feature_lengths["inputs"],
        "decoder_target_tokens": task_feature_lengths["targets"],
        "decoder_input_tokens": task_feature_lengths["targets"],
        "decoder_loss_weights": task_feature_lengths["targets"],
    }
