#!/bin/bash
# Speed before and after a change, on one machine in one sitting: the benchmarks of an older
# commit (default 06b9587, the tree before issue 20's rebuild) and of this checkout, run back
# to back, alternating, each with the tools/ scripts of its own tree. Every ratio is measured
# inside one bench run (ours against the reference, side by side), so compare ratio to ratio.
#
#   sh tools/bench_before_after.sh [OLD_COMMIT] [OUT_DIR]     # about 25 minutes on 2 cores
#
# Writes OUT_DIR/{old,new}/*.md (each bench's report) and OUT_DIR/*.log (its output), and
# OUT_DIR/times.txt (seconds and load per run). Needs the reference extras
# (tools/install_refs.sh) and weights/whisper-tiny.en, weights/whisper-base.
# The old tree gets a7e0453's fix to bench_ecapa.py (before it, the SpeechBrain worker
# imported mlx_audio_stack and stopped at its own check); nothing else of it is changed.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OLD=${1:-06b9587}
OUT=${2:-/tmp/bench_before_after}
PY=${PYTHON:-$ROOT/.venv/bin/python}
TREE=$(mktemp -d /tmp/mas-old-XXXXXX)
trap 'git -C "$ROOT" worktree remove --force "$TREE" >/dev/null 2>&1 || true' EXIT
git -C "$ROOT" worktree add --detach "$TREE" "$OLD" >/dev/null
if git -C "$ROOT" merge-base --is-ancestor a7e0453 "$OLD" 2>/dev/null; then :; else
    git -C "$ROOT" show a7e0453 -- tools/bench_ecapa.py | git -C "$TREE" apply -
fi
for w in whisper-tiny.en whisper-base; do ln -sfn "$ROOT/weights/$w" "$TREE/weights/$w"; done
mkdir -p "$OUT/old" "$OUT/new"
run() { # tag tree script args...
    tag=$1 tree=$2
    shift 2
    s=$(date +%s)
    rc=0
    (cd "$tree" && PYTHONPATH="$tree" "$PY" "$@") >"$OUT/$tag.log" 2>&1 || rc=$?
    echo "$tag rc=$rc $(($(date +%s) - s)) s, load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/times.txt"
}
tree_of() { if [ "$1" = old ]; then echo "$TREE"; else echo "$ROOT"; fi; }
"$PY" -m mlx_audio_stack setup >/dev/null 2>&1 || true # the new tree's kernels, built ahead
for i in 1 2; do
    for t in old new; do
        run "ecapa_${t}$i" "$(tree_of $t)" tools/bench_ecapa.py --out "$OUT/$t/ecapa$i.md"
        run "vad_${t}$i" "$(tree_of $t)" tools/bench_vad.py --no-write
    done
done
for t in old new; do
    run "sep_$t" "$(tree_of $t)" tools/bench_separation.py --stream-minutes 1 \
        --report "$OUT/$t/separation.md"
    run "whisper_$t" "$(tree_of $t)" tools/bench_whisper.py --impls ours faster-whisper-fp32 \
        --repeats 5 --out "$OUT/$t/whisper_speed.md"
done
cat "$OUT/times.txt"
