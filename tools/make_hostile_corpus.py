"""Write a corpus of hostile and malformed checkpoints/configs into a folder (deterministic).

    python tools/make_hostile_corpus.py OUT_DIR

Standard library only: torch zips are written with a small hand-made pickle emitter, safetensors
and CTranslate2 files byte by byte (tools/hostile_formats.py), so every malformation is exact.
OUT_DIR/cases.json lists the CLI runs `tests/test_hostile_inputs.py` makes over it: each must
end in exit 1 with one line naming the file, nothing written. Placeholders in argv: {C} the
corpus folder, {O} a fresh output folder of the case. The audio input is one valid WAV: this
corpus is about weights.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_formats import (  # noqa: E402  (a sibling file of this script)
    DATE,
    FLOATS4,
    Call,
    G,
    Pid,
    ct2_bin,
    dumps,
    f32,
    st_bytes,
    tensor,
    torch_zip,
    wav,
)

MARKER = "mas-hostile-marker"  # a pickle that ran code would create this file in the cwd


WHISPER_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 8,
    "n_audio_head": 2,
    "n_audio_layer": 1,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 8,
    "n_text_head": 2,
    "n_text_layer": 1,
}


def pickle_cases() -> dict[str, tuple[bytes | object, dict[str, bytes], set[str]]]:
    """name -> (pickled object or raw pickle bytes, storages, deflated entries)."""
    s4 = {"0": FLOATS4}
    bomb = {"archive/data/0"}

    def sd(t):  # an OpenAI-Whisper-shaped checkpoint around one tensor
        return {"dims": WHISPER_DIMS, "model_state_dict": {"w": t}, "n_audio_state": 8}

    deep = bytearray(b"\x80\x02}")
    n = 50_000
    deep += (b"X\x01\x00\x00\x00a}") * n + b"s" * n + b"."
    zeros = bytes(100_000_000)
    return {
        "oob_huge": (sd(tensor(size=(500_000_000,))), s4, set()),
        "oob_heap": (sd(tensor(size=(1_000_000,))), s4, set()),
        "neg_stride": (sd(tensor(size=(4,), stride=(-1,), offset=3)), s4, set()),
        "neg_offset": (sd(tensor(offset=-5)), s4, set()),
        "overflow": (sd(tensor(size=(2**62, 2**62), stride=(1, 1))), s4, set()),
        "huge_int": (sd(tensor(size=(2**200,))), s4, set()),
        "float_size": (sd(tensor(size=(2.5,))), s4, set()),
        "bool_size": (sd(tensor(size=(True,))), s4, set()),
        "rank_mismatch": (sd(tensor(size=(2, 2), stride=(1,))), s4, set()),
        "numel_mismatch": (sd(tensor(numel=8)), s4, set()),
        "missing_storage": (sd(tensor(key="7")), s4, set()),
        "storage_key_path": (sd(tensor(key="../../x")), s4, set()),
        "bad_pid": (sd(Pid(("file", "/etc/passwd"))), s4, set()),
        "not_a_storage": (
            sd(Call(G("torch._utils", "_rebuild_tensor_v2"), (5, 0, (4,), (1,), False, None))),
            s4,
            set(),
        ),
        "unknown_storage_type": (sd(tensor(storage="QInt8Storage")), s4, set()),
        "evil_system": (
            sd(Call(G("os", "system"), (f"touch {MARKER}",))),
            s4,
            set(),
        ),
        "evil_eval": (sd(Call(G("builtins", "eval"), ("1+1",))), s4, set()),
        "type_error": (sd(Call(G("collections", "OrderedDict"), (5,))), s4, set()),
        "unhashable_set": (sd(Call(G("builtins", "set"), ([[1]],))), s4, set()),
        "truncated_pickle": (dumps(sd(tensor()))[:-20], s4, set()),
        "deep_nesting": (bytes(deep), s4, set()),
        # 100 MB of zeros deflated to ~100 KB: a tensor needing all of it is refused before
        # inflating (ratio limit); one needing 4 elements reads 16 bytes of it only
        "bomb_needed": (sd(tensor(numel=25_000_000, size=(25_000_000,))), {"0": zeros}, bomb),
        "bomb_declared": (sd(tensor(numel=25_000_000)), {"0": zeros}, bomb),
        # the pickle itself as a bomb: 100 MB of NONE opcodes deflated to ~100 KB
        "pickle_bomb": (b"\x80\x02" + b"N" * 100_000_000 + b".", s4, {"archive/data.pkl"}),
    }


# ---------------------------------------------------------------- safetensors
def safetensors_cases() -> dict[str, bytes]:
    e = lambda dt, shape, a, b: {"dtype": dt, "shape": shape, "data_offsets": [a, b]}  # noqa: E731
    good = {"w": e("F32", [2, 2], 0, 16)}
    return {
        "empty": b"",
        "short": b"\x01\x02\x03",
        "truncated": st_bytes(good, f32(4))[:-7],
        "header_len_huge": st_bytes(good, f32(4), length=2**62),
        "header_len_past_end": st_bytes(good, f32(4), length=10_000),
        "bad_json": st_bytes(b'{"w": {"dtype": "F32", "shape": [2,', f32(4)),
        "not_utf8": st_bytes(b"\xff\xfe\x00{}", f32(4)),
        "header_list": st_bytes([1, 2, 3], f32(4)),
        "entry_not_object": st_bytes({"w": 5}, f32(4)),
        "unknown_dtype": st_bytes({"w": e("F99", [2, 2], 0, 16)}, f32(4)),
        "negative_shape": st_bytes({"w": e("F32", [-2, -2], 0, 16)}, f32(4)),
        "float_shape": st_bytes({"w": e("F32", [2.5, 2], 0, 16)}, f32(4)),
        "offset_past_end": st_bytes({"w": e("F32", [2, 2], 0, 1 << 40)}, f32(4)),
        "offsets_reversed": st_bytes({"w": e("F32", [0], 16, 0)}, f32(4)),
        "size_mismatch": st_bytes({"w": e("F32", [3, 3], 0, 16)}, f32(4)),
        "huge_shape": st_bytes({"w": e("F32", [2**40, 2**40], 0, 16)}, f32(4)),
        "overlap": st_bytes({"a": e("F32", [4], 0, 16), "b": e("F32", [2], 8, 16)}, f32(4)),
        "bad_metadata": st_bytes({"__metadata__": {"a": [1]}, **good}, f32(4)),
        "deep_json": st_bytes("[" * 100_000 + "]" * 100_000, b""),
        "unrelated_keys": st_bytes(
            {"foo.bar": e("F32", [2], 0, 8), "baz": e("F32", [2], 8, 16)}, f32(4)
        ),
    }


# ---------------------------------------------------------------- configs of converted folders
GOOD_CONFIGS = {
    "whisper": {"model_type": "whisper", "args": WHISPER_DIMS, "alignment_heads": [[0, 1]],
                "tokenizer": "tokenizer.json"},
    "mossformer2": {"model_type": "mossformer2", "args": {
        "num_spks": 2, "encoder_kernel_size": 16, "encoder_embedding_dim": 8,
        "mossformer_sequence_dim": 8, "num_mossformer_layer": 1, "sampling_rate": 16000,
        "skip_mask_multiplication": False, "group_size": 256, "query_key_dim": 8,
        "expansion_factor": 4.0, "fsmn_inner_channels": 8, "fsmn_lorder": 20,
        "conv_kernel_size": 17, "norm_type": "scalenorm", "shift_tokens": True}},
    "ecapa": {"model_type": "ecapa", "args": {
        "input_size": 8, "channels": [8, 8, 8, 8, 24], "kernel_sizes": [5, 3, 3, 3, 1],
        "dilations": [1, 2, 3, 4, 1], "attention_channels": 4, "res2net_scale": 4,
        "se_channels": 4, "global_context": True, "groups": [1, 1, 1, 1, 1], "lin_neurons": 4},
        "fbank": {"n_mels": 8}, "mean_var_norm": {"enabled": True, "std_norm": False},
        "emb_norm_std": False},
    "silero_vad": {"model_type": "silero_vad", "args": {"sample_rates": [16000, 8000],
                                                          "hidden_size": 128}},
}  # fmt: skip
LOADER = {  # model type -> (CLI argv taking a weights folder {M}, what it writes into {O})
    "whisper": ["transcribe", "{C}/audio.wav", "--model", "{M}", "-o", "{O}/t.txt"],
    "mossformer2": ["separate", "{C}/audio.wav", "--model", "{M}", "--out", "{O}/sep"],
    "ecapa": ["embed", "{C}/audio.wav", "--model", "{M}", "--out", "{O}/e.json"],
    "silero_vad": ["vad", "{C}/audio.wav", "--model", "{M}", "-o", "{O}/v.json"],
}


def _with(model: str, path: str, value) -> dict:
    """GOOD_CONFIGS[model] with the dotted `path` set to `value` (DELETE removes it)."""
    cfg = json.loads(json.dumps(GOOD_CONFIGS[model]))
    *parents, last = path.split(".")
    cur = cfg
    for p in parents:
        cur = cur[p]
    if value is DELETE:
        del cur[last]
    else:
        cur[last] = value
    return cfg


DELETE = object()
CONFIG_CASES = {
    "whisper": {
        "missing_n_mels": ("args.n_mels", DELETE),
        "heads_5_5": ("args.n_audio_head", 5.5),
        "layers_negative": ("args.n_audio_layer", -1),
        "vocab_1e12": ("args.n_vocab", 1e12),
        "heads_not_divisor": ("args.n_text_head", 3),
        "state_string": ("args.n_text_state", "8"),
        "args_list": ("args", [1, 2]),
        "alignment_out_of_range": ("alignment_heads", [[99, 99]]),
        "alignment_not_pairs": ("alignment_heads", "xyz"),
        "tokenizer_escape": ("tokenizer", "../../../../etc/passwd"),
        "tokenizer_absolute": ("tokenizer", "/etc/passwd"),
        "quantization_bogus": ("quantization", {"bits": 3}),
        "wrong_model_type": ("model_type", "mossformer2"),
    },
    "mossformer2": {
        "num_spks_zero": ("args.num_spks", 0),
        "rate_string": ("args.sampling_rate", "16000"),
        "layers_2_5": ("args.num_mossformer_layer", 2.5),
        "unknown_arg": ("args.rm_rf", 1),
        "norm_type": ("args.norm_type", "layernorm"),
        "kernel_1e9": ("args.encoder_kernel_size", 10**9),
    },
    "ecapa": {
        "lengths_differ": ("args.kernel_sizes", [5, 3]),
        "input_negative": ("args.input_size", -1),
        "channels_floats": ("args.channels", [8.5, 8, 8, 8, 24]),
        "fbank_string": ("fbank.n_mels", "eight"),
        "args_missing": ("args", DELETE),
    },
    "silero_vad": {
        "rate_44k": ("args.sample_rates", [44100]),
        "hidden_zero": ("args.hidden_size", 0),
        "rates_not_list": ("args.sample_rates", 16000),
    },
}


# ---------------------------------------------------------------- YAML and CTranslate2
HPARAMS = """\
n_mels: 8
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [8, 8, 8, 8, 24]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 4
    res2net_scale: 4
    se_channels: 4
    lin_neurons: {lin}
"""


def _laughs(levels: int = 12) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


YAML_CASES = {
    "pow_bomb": HPARAMS.format(lin="!ref <n_mels> ** <n_mels> ** <n_mels> ** <n_mels>"),
    "pow_bomb_literal": "n: 99999\n" + HPARAMS.format(lin="!ref <n> ** <n> ** <n>"),
    "billion_laughs": _laughs() + HPARAMS.format(lin="!ref <a11>"),
    "ref_cycle": "x: !ref <y>\ny: !ref <x>\n" + HPARAMS.format(lin="!ref <x>"),
    "missing_ref": HPARAMS.format(lin="!ref <nope>"),
    "lin_5_5": HPARAMS.format(lin="5.5"),
    "lin_negative": HPARAMS.format(lin="-4"),
    "top_level_list": "- 1\n- 2\n",
    "invalid_yaml": "embedding_model: !new:x.Y\n  [a: b\n",
    "other_class": "embedding_model: !new:os.system\n    command: rm -rf /\n",
    "unknown_argument": HPARAMS.format(lin="4") + "    evil: 1\n",
}


# ---------------------------------------------------------------- the corpus
def build(root: Path) -> list[dict]:
    """Write everything under `root`; return the CLI cases (also written to cases.json)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "outside").mkdir(exist_ok=True)
    secret = root / "outside" / "secret.json"
    secret.write_text('{"secret": "must never be copied or opened"}\n')
    wav(root / "audio.wav")
    cases: list[dict] = []

    def case(category: str, name: str, argv: list[str], expect: str) -> None:
        cases.append({"id": f"{category}/{name}", "category": category, "argv": argv,
                      "expect": expect})  # fmt: skip

    def mkdir(*parts: str) -> Path:
        d = root.joinpath(*parts)
        d.mkdir(parents=True, exist_ok=True)
        return d

    good_st = st_bytes({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, f32(2))

    # torch pickles: as an OpenAI Whisper .pt, a MossFormer2 .pt and an ECAPA folder's ckpt
    for name, (obj, storages, deflate) in pickle_cases().items():
        pt = mkdir("pickle") / f"{name}.pt"
        torch_zip(pt, obj, storages, deflate)
        conv = ["convert", f"{{C}}/pickle/{name}.pt", "--out", "{O}/w", "--model"]
        case("pickle", f"{name}-whisper", [*conv, "whisper"], f"{name}.pt")
        case("pickle", f"{name}-mossformer2", [*conv, "mossformer2"], f"{name}.pt")
        d = mkdir("pickle_ecapa", name)
        (d / "hyperparams.yaml").write_text(HPARAMS.format(lin="4"))
        torch_zip(d / "embedding_model.ckpt", obj, storages, deflate)
        case("pickle", f"{name}-ecapa",
             ["convert", f"{{C}}/pickle_ecapa/{name}", "--out", "{O}/w", "--model", "ecapa"],
             "embedding_model.ckpt")  # fmt: skip
    for name, data in {
        "not_a_zip": b"hello, not a checkpoint",
        "legacy": b"\x80\x02}q\x00.",
        "zip_without_pickle": None,
        "truncated_zip": None,
    }.items():
        pt = root / "pickle" / f"{name}.pt"
        if name == "zip_without_pickle":
            with zipfile.ZipFile(pt, "w") as zf:
                zf.writestr(zipfile.ZipInfo("archive/other", DATE), b"x")
        elif name == "truncated_zip":
            torch_zip(pt, {"dims": WHISPER_DIMS, "model_state_dict": {}}, {"0": FLOATS4})
            pt.write_bytes(pt.read_bytes()[:100])
        else:
            pt.write_bytes(data)
        conv = ["convert", f"{{C}}/pickle/{name}.pt", "--out", "{O}/w", "--model"]
        case("pickle", f"{name}-whisper", [*conv, "whisper"], f"{name}.pt")
        case("pickle", f"{name}-mossformer2", [*conv, "mossformer2"], f"{name}.pt")

    # safetensors: MossFormer2 source, Hugging Face Whisper folder, every loader's folder
    for name, data in safetensors_cases().items():
        (mkdir("safetensors") / f"{name}.safetensors").write_bytes(data)
        case("safetensors", f"{name}-mossformer2",
             ["convert", f"{{C}}/safetensors/{name}.safetensors", "--out", "{O}/w",
              "--model", "mossformer2"], f"{name}.safetensors")  # fmt: skip
        hf = mkdir("hf_whisper", name)
        (hf / "config.json").write_text(json.dumps(HF_CONFIG))
        (hf / "model.safetensors").write_bytes(data)
        case("safetensors", f"{name}-hf-whisper",
             ["convert", f"{{C}}/hf_whisper/{name}", "--out", "{O}/w", "--model", "whisper"],
             "foo.bar" if name == "unrelated_keys" else "model.safetensors")  # fmt: skip
        for model, argv in LOADER.items():
            d = mkdir("loaded", f"{model}-st-{name}")
            (d / "config.json").write_text(json.dumps(GOOD_CONFIGS[model]))
            (d / "model.safetensors").write_bytes(data)
            (d / "tokenizer.json").write_text("{}")
            m = f"{{C}}/loaded/{model}-st-{name}"
            case("safetensors", f"{name}-load-{model}",
                 [x.replace("{M}", m) for x in argv], f"{model}-st-{name}")  # fmt: skip

    # configs of converted folders
    for model, variants in CONFIG_CASES.items():
        for name, (path, value) in variants.items():
            d = mkdir("loaded", f"{model}-cfg-{name}")
            (d / "config.json").write_text(json.dumps(_with(model, path, value)))
            (d / "model.safetensors").write_bytes(good_st)
            (d / "tokenizer.json").write_text("{}")
            m = f"{{C}}/loaded/{model}-cfg-{name}"
            field = "alignment" if "alignment" in path else path.split(".")[-1]
            case("config", f"{model}-{name}", [x.replace("{M}", m) for x in LOADER[model]],
                 field if value is not DELETE or field == "args" else f"'{field}'")  # fmt: skip
    for model, argv in LOADER.items():
        for name, text in {
            "not_json": "{not json",
            "list": "[1, 2]",
            "deep": "[" * 100_000,
        }.items():
            d = mkdir("loaded", f"{model}-json-{name}")
            (d / "config.json").write_text(text)
            (d / "model.safetensors").write_bytes(good_st)
            m = f"{{C}}/loaded/{model}-json-{name}"
            case("config", f"{model}-json-{name}", [x.replace("{M}", m) for x in argv],
                 "config.json")  # fmt: skip
    # a converted folder whose tokenizer.json is a symlink out of it
    d = mkdir("loaded", "whisper-tokenizer-symlink")
    (d / "config.json").write_text(json.dumps(GOOD_CONFIGS["whisper"]))
    (d / "model.safetensors").write_bytes(good_st)
    _symlink(d / "tokenizer.json", "../../outside/secret.json")
    m = "{C}/loaded/whisper-tokenizer-symlink"
    case("symlink", "loaded-whisper-tokenizer", [x.replace("{M}", m) for x in LOADER["whisper"]],
         "tokenizer")  # fmt: skip

    # Hugging Face Whisper configs
    for name, (key, value) in {
        "encoder_layers_negative": ("encoder_layers", -1),
        "vocab_1e12": ("vocab_size", 1e12),
        "heads_5_5": ("encoder_attention_heads", 5.5),
        "missing_mel_bins": ("num_mel_bins", DELETE),
    }.items():
        hf = mkdir("hf_whisper", f"cfg-{name}")
        cfg = dict(HF_CONFIG)
        if value is DELETE:
            del cfg[key]
        else:
            cfg[key] = value
        (hf / "config.json").write_text(json.dumps(cfg))
        (hf / "model.safetensors").write_bytes(good_st)
        case("config", f"hf-whisper-{name}",
             ["convert", f"{{C}}/hf_whisper/cfg-{name}", "--out", "{O}/w", "--model", "whisper"],
             "config.json")  # fmt: skip
    hf = mkdir("hf_whisper", "cfg-alignment-heads")
    (hf / "config.json").write_text(json.dumps(HF_CONFIG))
    (hf / "generation_config.json").write_text(json.dumps({"alignment_heads": [[99, 99]]}))
    (hf / "model.safetensors").write_bytes(good_st)
    case("config", "hf-whisper-alignment-heads",
         ["convert", "{C}/hf_whisper/cfg-alignment-heads", "--out", "{O}/w", "--model", "whisper"],
         "cfg-alignment-heads")  # fmt: skip

    # symlinks and paths that leave the source folder
    hf = mkdir("symlink", "hf-weights")
    (hf / "config.json").write_text(json.dumps(HF_CONFIG))
    (root / "outside" / "model.safetensors").write_bytes(good_st)
    _symlink(hf / "model.safetensors", "../../outside/model.safetensors")
    hf = mkdir("symlink", "hf-index")
    (hf / "config.json").write_text(json.dumps(HF_CONFIG))
    (hf / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../../outside/model.safetensors"}})
    )
    hf = mkdir("symlink", "hf-tokenizer")
    (hf / "config.json").write_text(json.dumps(HF_CONFIG))
    (hf / "model.safetensors").write_bytes(good_st)
    _symlink(hf / "tokenizer.json", "../../outside/secret.json")
    ct = mkdir("symlink", "ct2-tokenizer")
    (ct / "model.bin").write_bytes(ct2_bin([("x", (1,), 0, f32(1))]))
    _symlink(ct / "tokenizer.json", "../../outside/secret.json")
    ct = mkdir("symlink", "ct2-model-bin")
    (root / "outside" / "model.bin").write_bytes(ct2_bin([("x", (1,), 0, f32(1))]))
    _symlink(ct / "model.bin", "../../outside/model.bin")
    ec = mkdir("symlink", "ecapa-hyperparams")
    (root / "outside" / "hyperparams.yaml").write_text(HPARAMS.format(lin="4"))
    _symlink(ec / "hyperparams.yaml", "../../outside/hyperparams.yaml")
    torch_zip(ec / "embedding_model.ckpt", {"w": tensor()}, {"0": FLOATS4})
    mf = mkdir("symlink", "mossformer2-best")
    torch_zip(root / "outside" / "ckpt.pt", {"model": {"w": tensor()}}, {"0": FLOATS4})
    (mf / "last_best_checkpoint").write_text("../../outside/ckpt.pt\n")
    sv = mkdir("symlink", "silero-jit")
    _symlink(sv / "silero_vad.jit", "../../outside/ckpt.pt")
    for name, model in {
        "hf-weights": "whisper",
        "hf-index": "whisper",
        "hf-tokenizer": "whisper",
        "ct2-tokenizer": "whisper",
        "ct2-model-bin": "whisper",
        "ecapa-hyperparams": "ecapa",
        "mossformer2-best": "mossformer2",
        "silero-jit": "silero_vad",
    }.items():
        case("symlink", name,
             ["convert", f"{{C}}/symlink/{name}", "--out", "{O}/w", "--model", model],
             "outside")  # fmt: skip

    # SpeechBrain hyperparams.yaml
    for name, text in YAML_CASES.items():
        d = mkdir("yaml", name)
        (d / "hyperparams.yaml").write_text(text)
        torch_zip(d / "embedding_model.ckpt", {"w": tensor()}, {"0": FLOATS4})
        case("yaml", name, ["convert", f"{{C}}/yaml/{name}", "--out", "{O}/w", "--model", "ecapa"],
             "hyperparams.yaml")  # fmt: skip

    # CTranslate2 model.bin
    one = [("encoder/conv1/weight", (2, 2), 0, f32(4))]
    for name, data in {
        "truncated": ct2_bin(one)[:-9],
        "bad_version": ct2_bin(one, version=99),
        "nbytes_mismatch": ct2_bin(one, nbytes_fix={"encoder/conv1/weight": 12}),
        "huge_nbytes": ct2_bin(one, nbytes_fix={"encoder/conv1/weight": 2**32 - 1}),
        "unknown_dtype": ct2_bin([("x", (1,), 42, f32(1))]),
        "dangling_alias": ct2_bin(one, aliases=[("a", "nope")]),
        "incomplete": ct2_bin(one),
    }.items():
        d = mkdir("ct2", name)
        (d / "model.bin").write_bytes(data)
        case("ct2", name, ["convert", f"{{C}}/ct2/{name}", "--out", "{O}/w", "--model", "whisper"],
             "model.bin")  # fmt: skip

    # `mas pipeline` loads Whisper first: every Whisper folder case again through it
    for c in [c for c in cases if c["argv"][0] == "transcribe"]:
        m = c["argv"][c["argv"].index("--model") + 1]
        argv = ["pipeline", "{C}/audio.wav", "--model", m, "--embedder", "none",
                "--separator", "none", "--quiet", "--out", "{O}/p"]  # fmt: skip
        cases.append({**c, "id": f"{c['id']}-pipeline", "argv": argv})
    (root / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    return cases


HF_CONFIG = {
    "model_type": "whisper",
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "d_model": 8,
    "encoder_attention_heads": 2,
    "encoder_layers": 1,
    "vocab_size": 51864,
    "max_target_positions": 448,
    "decoder_attention_heads": 2,
    "decoder_layers": 1,
}


def _symlink(link: Path, target: str) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out_dir", type=Path, help="folder to write the corpus into")
    a = ap.parse_args()
    out = build(a.out_dir)
    print(f"wrote {len(out)} cases into {a.out_dir}")
