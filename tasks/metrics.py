"""sacreBLEU metrics for seqio tasks: `metric_fn(targets, predictions) -> {name: score}`.

Default sacreBLEU settings (13a tokenizer, cased), as papers report; the signature is logged.
"""
import logging
from typing import Dict, Sequence

import sacrebleu


def bleu(targets: Sequence[str], predictions: Sequence[str]) -> Dict[str, float]:
  """Corpus BLEU of `predictions` against one reference each."""
  metric = sacrebleu.BLEU()
  score = metric.corpus_score(list(predictions), [list(targets)])
  logging.info("sacreBLEU %s: %s", metric.get_signature(), score)
  return {"bleu": score.score}


def chrf(targets: Sequence[str], predictions: Sequence[str]) -> Dict[str, float]:
  """Corpus chrF of `predictions` against one reference each."""
  metric = sacrebleu.CHRF()
  score = metric.corpus_score(list(predictions), [list(targets)])
  logging.info("sacreBLEU %s: %s", metric.get_signature(), score)
  return {"chrf": score.score}
