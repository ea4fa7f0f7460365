#!/usr/bin/env bash
# A CI job for a project that ships t2 experts: train an expert on your task, verify the registry,
# compose the release expert, and answer a batch of prompts with it. Every step is one `t2` command
# with --json written to $T2_CI_OUT; the first step that fails stops the job with t2's exit code
# (2 bad input, 3 missing artifact, 4 integrity failure, 5 engine failure; see the README's
# "Exit codes").
#
#   bash examples/ci.sh                                   # SmolLM2 and the example task
#   T2_CI_MODEL=./my-model T2_CI_TASK=task.yaml T2_CI_PROMPTS=prompts.jsonl bash examples/ci.sh
#
# Settings (environment variables, all optional):
#   T2_CI_MODEL           base model: smollm2-135m, a local folder or an HF id   (smollm2-135m)
#   T2_CI_REGISTRY        registry the job publishes to                          (ci-registry)
#   T2_CI_TASK            task: a built-in name or a YAML spec                   (examples/capitals.yaml)
#   T2_CI_DATA            the task's data file, when not the task's own           (none)
#   T2_CI_PROMPTS         JSONL prompts for the batch run                        (examples/prompts.jsonl)
#   T2_CI_NAME            name of the trained expert                             (ci-expert)
#   T2_CI_MIX             compose terms, NAME=ALPHA ... over the registry        (the new expert alone)
#   T2_CI_STEPS           training steps                                         (20)
#   T2_CI_TRAIN_ARGS      more `t2 train` options, e.g. "--batch-size 4 --val-limit 20"
#   T2_CI_MAX_NEW_TOKENS  tokens per answer in the batch run                     (64)
#   T2_CI_OUT             folder for the JSON reports and the answers            (ci-out)
#   T2_CLI                the t2 command                                         (t2)
#   T2_CI_PYTHON          a Python 3 to read the JSON reports                    (python3)
# t2's own variables apply too: T2_HOME, T2_THREADS.
set -euo pipefail

examples=$(cd "$(dirname "$0")" && pwd)
model=${T2_CI_MODEL:-smollm2-135m}
registry=${T2_CI_REGISTRY:-ci-registry}
task=${T2_CI_TASK:-$examples/capitals.yaml}
prompts=${T2_CI_PROMPTS:-$examples/prompts.jsonl}
name=${T2_CI_NAME:-ci-expert}
mix=${T2_CI_MIX:-$name=1}
out=${T2_CI_OUT:-ci-out}
python=${T2_CI_PYTHON:-python3}
# Word splitting is wanted here: T2_CLI may be "python -m t2cli", T2_CI_TRAIN_ARGS several options.
read -r -a t2 <<<"${T2_CLI:-t2}"
read -r -a train_args <<<"${T2_CI_TRAIN_ARGS:-}"
read -r -a mix_terms <<<"$mix"

mkdir -p "$out"
field() { # field FILE KEY: one top-level value of a JSON report
  "$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

echo "ci: training $name on $task ($model)" >&2
"${t2[@]}" --quiet train --task "$task" ${T2_CI_DATA:+--data "$T2_CI_DATA"} --model "$model" \
  --registry "$registry" --steps "${T2_CI_STEPS:-20}" -o "$name" ${train_args[@]+"${train_args[@]}"} \
  --json >"$out/train.json"
expert=$(field "$out/train.json" expert)
base=$(field "$out/train.json" model) # the model's id, which names its registry folder

echo "ci: verifying $registry" >&2
"${t2[@]}" --quiet registry verify --registry "$registry" --json >"$out/verify.json"

echo "ci: composing $name-release from ${mix_terms[*]}" >&2
"${t2[@]}" --quiet compose "${mix_terms[@]}" -o "$name-release" --model "$base" --registry "$registry" \
  --json >"$out/compose.json"
release=$(field "$out/compose.json" ref)

echo "ci: answering $prompts with $release" >&2
"${t2[@]}" --quiet run "$prompts" --adapt "$release" --strict --no-resume --model "$model" --registry "$registry" \
  --max-new-tokens "${T2_CI_MAX_NEW_TOKENS:-64}" -o "$out/answers.jsonl" --json >"$out/run.json"

expected=$(grep -c '[^[:space:]]' "$prompts")
answered=$(wc -l <"$out/answers.jsonl" | tr -d ' ')
if [ "$answered" -ne "$expected" ]; then
  echo "ci: $out/answers.jsonl has $answered lines for $expected prompts" >&2
  exit 1
fi
echo "ci: ok: trained $expert (val $(field "$out/train.json" val_score)), composed $release," \
  "answered $answered prompts in $out/answers.jsonl"
