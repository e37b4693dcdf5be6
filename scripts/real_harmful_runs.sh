#!/usr/bin/env bash
# The real-model harmful study of the README ("Safety tuning across languages and encodings"): every evaluation
# set for one group of models, one run folder per set, all text redacted (rates and counts only in the reports).
#
#   scripts/real_harmful_runs.sh GROUP [OUT]    GROUP: base | refusal | smollm2    OUT: default runs/harmful-real
#
# base:    Gemma 3 270M base, completion arm only (it has no chat template)
# refusal: gemma3-270m-refusal-en (the project's English-only refusal tuning), chat and completion arms
# smollm2: SmolLM2-135M-Instruct, chat and completion arms
# Sizes fit a 2-core CPU (about 600 replies per model arm, 32 tokens each). Every run resumes from the request cache: rerunning the script makes no model call for what is finished.
set -euo pipefail
GROUP=${1:?usage: scripts/real_harmful_runs.sh base|refusal|smollm2 [OUT]}
OUT=${2:-runs/harmful-real}
AUTHORS=${AUTHORS:-../shared/authors}
BIN=${BIN:-.venv/bin}
case "$GROUP" in
  base) MODEL=(--model gemma3-270m --arm completion) ;;
  refusal) MODEL=(--model gemma3-270m-refusal-en --arm chat --arm completion) ;;
  smollm2) MODEL=(--model smollm2-135m-instruct --arm chat --arm completion) ;;
  *) echo "unknown group $GROUP (base, refusal, smollm2)" >&2; exit 2 ;;
esac
COMMON=(--max-new-tokens 32 --redact --quiet --seed 0 --batch-size 16)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
run() { "$BIN/conjugate" harmful run "$@" "${MODEL[@]}" "${COMMON[@]}"; }
# the held-out AdvBench lines in the five languages of the paper (50 drawn with seed 0, the same for every model)
run --eval-set advbench-heldout --authors "$AUTHORS" --langs en,ja,hu,sw,ml --sample 50 --out "$OUT/$GROUP/langs"
# the same 50 English instructions under conjugate transforms (replies mapped back where a transform has an inverse)
run --eval-set advbench-heldout --authors "$AUTHORS" --langs en --sample 50 --out "$OUT/$GROUP/transforms" \
  --transform leetspeak --transform piglatin-marked --transform base64 --transform rot13 \
  --transform leetspeak+base64
# 50 of HarmBench's test standard behaviours (English) and 60 of the benign prompts (over-refusal)
run --eval-set harmbench-test --sample 50 --out "$OUT/$GROUP/harmbench"
run --eval-set benign --sample 60 --out "$OUT/$GROUP/benign"
