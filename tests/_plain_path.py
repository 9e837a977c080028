"""Which path the models run: probes on every CPU-only entry point, for the plain MLX pass.

`make test` runs the parity and end-to-end tests twice: as usual (MLX's CPU backend with the
CPU kernels of `mlx_audio_stack/kernels/`) and with `MAS_GEMV=off`, which must route every
model to its plain MLX path, the code a Mac runs. `Probes` wraps each gate (`kernels_on`,
`use_kernels`, and the `applies` of depthwise, lstm and conv: counted when they say yes;
`library.library` when it returns the library) and each whole CPU-only piece (counted per
call), wherever a module bound them; conftest.py installs it for the plain pass and fails any
test during which a probe fired. `run_tiny_models()` drives each model once so that
tests/test_plain_path.py can show the probes fire on the CPU-kernel path (they can fail) and
stay silent on the plain one. Run as a script, it prints the counts of that run as JSON.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter

import mlx_audio_stack  # noqa: F401  (loads the BLAS before mlx.core)

FAMILIES = ("whisper", "ecapa", "mossformer2", "voice_encoder")
_MODULES = (
    "mlx_audio_stack.kernels.dispatch",
    "mlx_audio_stack.kernels.library",
    "mlx_audio_stack.kernels.elementwise",
    "mlx_audio_stack.kernels.attention",
    "mlx_audio_stack.kernels.depthwise",
    "mlx_audio_stack.kernels.lstm",
    "mlx_audio_stack.models.whisper.model",
    "mlx_audio_stack.models.whisper.load",
    "mlx_audio_stack.models.ecapa.model",
    "mlx_audio_stack.kernels.conv",
    "mlx_audio_stack.models.mossformer2.layers",
    "mlx_audio_stack.models.voice_encoder.model",
)
# (module, name): gates count the calls that answer True; the rest count every call
_GATES = (
    ("mlx_audio_stack.kernels.dispatch", "kernels_on"),
    ("mlx_audio_stack.kernels.dispatch", "use_kernels"),
    ("mlx_audio_stack.kernels.library", "library"),
    ("mlx_audio_stack.kernels.depthwise", "applies"),
    ("mlx_audio_stack.kernels.lstm", "applies"),
    ("mlx_audio_stack.kernels.conv", "applies"),
)
_PIECES = (
    ("mlx_audio_stack.kernels.lstm", "last_hidden"),
    ("mlx_audio_stack.kernels.attention", "_encoder"),
    ("mlx_audio_stack.kernels.attention", "_step"),
)
_METHODS = (  # (module, class, method)
    ("mlx_audio_stack.models.whisper.model", "TextDecoder", "prepare_cpu"),
)


class Probes:
    """Counting wrappers on the CPU-only entry points; `counts` maps 'module.name' to calls
    (gates: calls answering True). `install()` is idempotent and also wraps bindings made by
    modules imported since; `uninstall()` restores the originals."""

    def __init__(self):
        for name in _MODULES:
            importlib.import_module(name)
        self.counts: Counter[str] = Counter()
        self._undo: list[tuple[object, str, object]] = []
        self._wrapped: dict[int, object] = {}  # id(original) -> wrapper
        self._originals: dict[int, tuple[object, bool]] = {}  # id -> (original, is_gate)
        for mod, name in _GATES + _PIECES:
            fn = getattr(sys.modules[mod], name)
            self._originals[id(fn)] = (fn, (mod, name) in _GATES)

    def _wrapper(self, fn, key: str, gate: bool):
        def probe(*args, **kwargs):
            out = fn(*args, **kwargs)
            if not gate or out:
                self.counts[key] += 1
            return out

        probe.__wrapped__ = fn
        return probe

    def install(self) -> Probes:
        for mod in [m for n, m in list(sys.modules.items()) if n.startswith("mlx_audio_stack")]:
            for attr, value in list(vars(mod).items()):
                hit = self._originals.get(id(value))
                if hit is not None and hit[0] is value:
                    key = f"{mod.__name__.removeprefix('mlx_audio_stack.')}.{attr}"
                    self._undo.append((mod, attr, value))
                    setattr(mod, attr, self._wrapper(value, key, hit[1]))
        if not self._wrapped:  # methods once
            for mod, cls_name, meth in _METHODS:
                cls = getattr(sys.modules[mod], cls_name)
                fn = cls.__dict__[meth]
                key = f"{mod.removeprefix('mlx_audio_stack.')}.{cls_name}.{meth}"
                self._undo.append((cls, meth, fn))
                self._wrapped[id(fn)] = self._wrapper(fn, key, False)
                setattr(cls, meth, self._wrapped[id(fn)])
        return self

    def uninstall(self) -> None:
        for obj, attr, value in reversed(self._undo):
            setattr(obj, attr, value)
        self._undo.clear()
        self._wrapped.clear()

    def total(self) -> int:
        return sum(self.counts.values())


def gemv_products() -> int:
    """Products the kernels library took from MLX so far (0 when it is not loaded)."""
    from mlx_audio_stack.kernels import library

    return library.forwarded()


def run_tiny_models() -> None:
    """One small forward of each model with CPU-only paths, sized so that each of those paths
    applies on the CPU-kernel pass: Whisper's encoder (attention over 1500 frames, layer
    norms, GELU) and two decoding steps (the step attention, 64-wide heads), ECAPA's forward,
    MossFormer2's separation (arrays above `depthwise.MIN_SIZE`), the voice encoder's LSTM."""
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    from mlx_audio_stack.models.ecapa import ECAPA_TDNN, EcapaArgs
    from mlx_audio_stack.models.mossformer2 import ModelArgs, MossFormer2
    from mlx_audio_stack.models.voice_encoder.model import VoiceEncoderArgs, VoiceEncoderNet
    from mlx_audio_stack.models.whisper import ModelDimensions, Whisper

    rng = np.random.default_rng(0)
    mx.random.seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=128, n_audio_head=2,
                           n_audio_layer=1, n_vocab=64, n_text_ctx=32, n_text_state=128,
                           n_text_head=2, n_text_layer=1)  # fmt: skip
    whisper = Whisper(dims)
    mel = mx.array(rng.standard_normal((1, 3000, 80)).astype(np.float32))
    audio = whisper.embed_audio(mel)
    logits, cache = whisper.decoder(mx.array([[1, 2]]), audio)
    logits, cache = whisper.decoder(mx.array([[3]]), audio, kv_cache=cache)
    mx.eval(logits)

    args = EcapaArgs(input_size=80, channels=[32, 32, 32, 32, 96], kernel_sizes=[5, 3, 3, 3, 1],
                     dilations=[1, 2, 3, 4, 1], attention_channels=16, lin_neurons=24,
                     res2net_scale=4, se_channels=8)  # fmt: skip
    ecapa = ECAPA_TDNN(args)
    weights = [(k, mx.array(rng.uniform(0.5, 1.5, v.shape).astype(np.float32)))
               for k, v in tree_flatten(ecapa.parameters())]  # fmt: skip
    ecapa.load_weights(weights)
    mx.eval(ecapa(mx.array(rng.standard_normal((2, 200, 80)).astype(np.float32))))

    sep = MossFormer2(ModelArgs(num_spks=2, encoder_embedding_dim=32, mossformer_sequence_dim=32,
                                num_mossformer_layer=1))  # fmt: skip
    mx.eval(sep(mx.array(rng.standard_normal((1, 32000)).astype(np.float32) * 0.1)))

    small = VoiceEncoderArgs(mel_n_channels=40, model_hidden_size=24, model_embedding_size=16,
                             model_num_layers=2)  # fmt: skip
    net = VoiceEncoderNet(small)
    mx.eval(net(mx.array(rng.standard_normal((2, 160, 40)).astype(np.float32))))


# probe keys ('module.name') of each family: its model modules and the kernels only it uses
_FAMILY_MARKS = {
    "whisper": ("models.whisper.", "kernels.attention."),
    "ecapa": ("models.ecapa.", "kernels.conv."),
    "mossformer2": ("models.mossformer2.", "kernels.depthwise."),
    "voice_encoder": ("models.voice_encoder.", "kernels.lstm."),
}


def family_counts(counts: dict[str, int]) -> dict[str, int]:
    """Probe counts summed per model family (keys naming its modules, see _FAMILY_MARKS)."""
    return {f: sum(n for k, n in counts.items() if any(m in k for m in _FAMILY_MARKS[f]))
            for f in FAMILIES}  # fmt: skip


if __name__ == "__main__":
    probes = Probes().install()
    before = gemv_products()
    run_tiny_models()
    print(json.dumps({"counts": dict(probes.counts), "gemv_products": gemv_products() - before}))
