"""Evaluation and data-generation code: metrics, references and synthetic mixtures.

Nothing here is part of a model. The model packages (`mlx_audio_stack/models/*`) hold the
networks, their weights' loading and inference; this package holds what measures them and
makes their training or test data:

- `separation`: SI-SDR(i) with permutation matching, reproducible LibriSpeech mixtures
  (MossFormer2: tools/make_mixtures.py, tools/eval_separation.py)
- `verification`: EER, minDCF and seeded trial lists (speaker embeddings:
  tools/eval_verification.py)
- `vad`: speech detection error against an RTTM reference (Silero VAD: tools/eval_vad.py)
- `rttm`: RTTM / UEM references as turns, frame-level speaker counts, AMI silences
- `count_mixtures`, `count_dataset`: the speaker counter's simulated mixtures and the
  QA-able manifest they are written as (tools/train_speaker_count.py, `mas distill`)
"""
