# Static t2 completion, generated from its command tree by t2cli/cli/completions.py.
# Do not edit: after changing commands or options, regenerate every script with
#     python -m t2cli.cli.completions completions/
# Install: copy it to ~/.config/fish/completions/t2.fish

# Prints the command path at the cursor, the values still owed to an option, and the positional index.
function __t2_state
    set -l words (commandline -opc)
    set -e words[1]
    set -l path t2
    set -l pending 0
    set -l npos 0
    for word in $words
        if test $pending -gt 0
            set pending (math $pending - 1)
            continue
        end
        switch "$path $word"
            case 't2 decompose' 't2 compose' 't2 transfer' 't2 train' 't2 plot-run' 't2 eval' 't2 export' 't2 dispatch' 't2 run' 't2 serve' 't2 doctor' 't2 registry'
                set path "$path $word"
                set npos 0
            case 't2 --threads'
                set pending 1
            case 't2 --device'
                set pending 1
            case 't2 --dtype'
                set pending 1
            case 't2 decompose --targets'
                set pending 1
            case 't2 decompose --driver'
                set pending 1
            case 't2 decompose --cache-dtype'
                set pending 1
            case 't2 compose --recipe' 't2 compose -r'
                set pending 1
            case 't2 compose --output' 't2 compose -o'
                set pending 1
            case 't2 compose --model' 't2 compose -m'
                set pending 1
            case 't2 compose --registry'
                set pending 1
            case 't2 transfer --to'
                set pending 1
            case 't2 transfer --strength'
                set pending 1
            case 't2 transfer --mapping'
                set pending 1
            case 't2 transfer --output' 't2 transfer -o'
                set pending 1
            case 't2 transfer --targets'
                set pending 1
            case 't2 transfer --from' 't2 transfer --model' 't2 transfer -m'
                set pending 1
            case 't2 transfer --registry'
                set pending 1
            case 't2 train --output' 't2 train -o'
                set pending 1
            case 't2 train --model' 't2 train -m'
                set pending 1
            case 't2 train --experts'
                set pending 1
            case 't2 train --config'
                set pending 1
            case 't2 train --run-dir'
                set pending 1
            case 't2 train --registry'
                set pending 1
            case 't2 train --engine'
                set pending 1
            case 't2 train --task' 't2 train -t'
                set pending 1
            case 't2 train --method'
                set pending 1
            case 't2 train --rollout'
                set pending 1
            case 't2 train --targets'
                set pending 1
            case 't2 train --rule'
                set pending 1
            case 't2 train --steps'
                set pending 1
            case 't2 train --batch-size'
                set pending 1
            case 't2 train --samples'
                set pending 1
            case 't2 train --lr'
                set pending 1
            case 't2 train --kl'
                set pending 1
            case 't2 train --temperature'
                set pending 1
            case 't2 train --baseline'
                set pending 1
            case 't2 train --max-new-tokens'
                set pending 1
            case 't2 train --grad-clip'
                set pending 1
            case 't2 train --micro-batch'
                set pending 1
            case 't2 train --val-every'
                set pending 1
            case 't2 train --val-limit'
                set pending 1
            case 't2 train --train-limit'
                set pending 1
            case 't2 train --checkpoint-every'
                set pending 1
            case 't2 train --seed'
                set pending 1
            case 't2 train --rank'
                set pending 1
            case 't2 train --select'
                set pending 1
            case 't2 train --data'
                set pending 1
            case 't2 train --layer'
                set pending 1
            case 't2 train --tokens'
                set pending 1
            case 't2 plot-run --output' 't2 plot-run -o'
                set pending 1
            case 't2 eval --task' 't2 eval -t'
                set pending 1
            case 't2 eval --data'
                set pending 1
            case 't2 eval --split'
                set pending 1
            case 't2 eval --expert' 't2 eval -e'
                set pending 1
            case 't2 eval --limit' 't2 eval -n'
                set pending 1
            case 't2 eval --mode'
                set pending 1
            case 't2 eval --max-new-tokens'
                set pending 1
            case 't2 eval --output' 't2 eval -o'
                set pending 1
            case 't2 eval --plot'
                set pending 1
            case 't2 eval --model' 't2 eval -m'
                set pending 1
            case 't2 eval --registry'
                set pending 1
            case 't2 eval --engine'
                set pending 1
            case 't2 eval --tp'
                set pending 1
            case 't2 eval --batch-size'
                set pending 1
            case 't2 export --output' 't2 export -o'
                set pending 1
            case 't2 export --format' 't2 export -f'
                set pending 1
            case 't2 export --rank'
                set pending 1
            case 't2 export --energy'
                set pending 1
            case 't2 export --eval'
                set pending 1
            case 't2 export --data'
                set pending 1
            case 't2 export --split'
                set pending 1
            case 't2 export --limit' 't2 export -n'
                set pending 1
            case 't2 export --mode'
                set pending 1
            case 't2 export --plot'
                set pending 1
            case 't2 export --model' 't2 export -m'
                set pending 1
            case 't2 export --registry'
                set pending 1
            case 't2 dispatch --output' 't2 dispatch -o'
                set pending 1
            case 't2 dispatch --plot'
                set pending 1
            case 't2 dispatch --adapt' 't2 dispatch -a'
                set pending 1
            case 't2 dispatch --config'
                set pending 1
            case 't2 dispatch --model' 't2 dispatch -m'
                set pending 1
            case 't2 dispatch --registry'
                set pending 1
            case 't2 dispatch --engine'
                set pending 1
            case 't2 dispatch --tp'
                set pending 1
            case 't2 dispatch --batch-size'
                set pending 1
            case 't2 dispatch --experts'
                set pending 1
            case 't2 dispatch --classifier'
                set pending 1
            case 't2 dispatch --route-tokens'
                set pending 1
            case 't2 dispatch --task'
                set pending 1
            case 't2 dispatch --shots'
                set pending 1
            case 't2 dispatch --cem-granularity'
                set pending 1
            case 't2 dispatch --cem-score'
                set pending 1
            case 't2 dispatch --cem-population'
                set pending 1
            case 't2 dispatch --cem-elites'
                set pending 1
            case 't2 dispatch --cem-iterations'
                set pending 1
            case 't2 dispatch --cem-seed'
                set pending 1
            case 't2 dispatch --cem-max-new-tokens'
                set pending 1
            case 't2 dispatch --save-as'
                set pending 1
            case 't2 run --output' 't2 run -o'
                set pending 1
            case 't2 run --max-new-tokens'
                set pending 1
            case 't2 run --lora-rank'
                set pending 1
            case 't2 run --pass2'
                set pending 1
            case 't2 run --compare'
                set pending 1
            case 't2 run --adapt' 't2 run -a'
                set pending 1
            case 't2 run --config'
                set pending 1
            case 't2 run --model' 't2 run -m'
                set pending 1
            case 't2 run --registry'
                set pending 1
            case 't2 run --engine'
                set pending 1
            case 't2 run --tp'
                set pending 1
            case 't2 run --batch-size'
                set pending 1
            case 't2 run --experts'
                set pending 1
            case 't2 run --classifier'
                set pending 1
            case 't2 run --route-tokens'
                set pending 1
            case 't2 run --task'
                set pending 1
            case 't2 run --shots'
                set pending 1
            case 't2 run --cem-granularity'
                set pending 1
            case 't2 run --cem-score'
                set pending 1
            case 't2 run --cem-population'
                set pending 1
            case 't2 run --cem-elites'
                set pending 1
            case 't2 run --cem-iterations'
                set pending 1
            case 't2 run --cem-seed'
                set pending 1
            case 't2 run --cem-max-new-tokens'
                set pending 1
            case 't2 run --save-as'
                set pending 1
            case 't2 serve --host'
                set pending 1
            case 't2 serve --port'
                set pending 1
            case 't2 serve --api-key'
                set pending 1
            case 't2 serve --max-tokens'
                set pending 1
            case 't2 serve --max-request-bytes'
                set pending 1
            case 't2 serve --max-queue'
                set pending 1
            case 't2 serve --max-batch'
                set pending 1
            case 't2 serve --batch-window'
                set pending 1
            case 't2 serve --lora-rank'
                set pending 1
            case 't2 serve --pass2'
                set pending 1
            case 't2 serve --adapt' 't2 serve -a'
                set pending 1
            case 't2 serve --config'
                set pending 1
            case 't2 serve --model' 't2 serve -m'
                set pending 1
            case 't2 serve --registry'
                set pending 1
            case 't2 serve --engine'
                set pending 1
            case 't2 serve --tp'
                set pending 1
            case 't2 serve --batch-size'
                set pending 1
            case 't2 serve --experts'
                set pending 1
            case 't2 serve --classifier'
                set pending 1
            case 't2 serve --route-tokens'
                set pending 1
            case 't2 serve --task'
                set pending 1
            case 't2 serve --shots'
                set pending 1
            case 't2 serve --cem-granularity'
                set pending 1
            case 't2 serve --cem-score'
                set pending 1
            case 't2 serve --cem-population'
                set pending 1
            case 't2 serve --cem-elites'
                set pending 1
            case 't2 serve --cem-iterations'
                set pending 1
            case 't2 serve --cem-seed'
                set pending 1
            case 't2 serve --cem-max-new-tokens'
                set pending 1
            case 't2 serve --save-as'
                set pending 1
            case 't2 registry list' 't2 registry show' 't2 registry verify' 't2 registry rm' 't2 registry push' 't2 registry pull' 't2 registry gc'
                set path "$path $word"
                set npos 0
            case 't2 registry list --model' 't2 registry list -m'
                set pending 1
            case 't2 registry list --registry'
                set pending 1
            case 't2 registry show --model' 't2 registry show -m'
                set pending 1
            case 't2 registry show --registry'
                set pending 1
            case 't2 registry show --plot'
                set pending 1
            case 't2 registry verify --model' 't2 registry verify -m'
                set pending 1
            case 't2 registry verify --registry'
                set pending 1
            case 't2 registry rm --model' 't2 registry rm -m'
                set pending 1
            case 't2 registry rm --registry'
                set pending 1
            case 't2 registry push --model' 't2 registry push -m'
                set pending 1
            case 't2 registry push --registry'
                set pending 1
            case 't2 registry pull --model' 't2 registry pull -m'
                set pending 1
            case 't2 registry pull --registry'
                set pending 1
            case 't2 registry gc --registry'
                set pending 1
            case '*'
                string match -q -- '-*' $word; or set npos (math $npos + 1)
        end
    end
    printf '%s\n' $path $pending $npos
end

function __t2_in --argument-names want --description 'At command path $want (options and their values)'
    test (__t2_state)[1] = "$want"
end

function __t2_at --argument-names want --description 'At command path $want, no option value owed'
    set -l state (__t2_state)
    test "$state[1]" = "$want"; and test $state[2] -eq 0
end

function __t2_arg --argument-names want first last --description 'At positional $first..$last (-1: no end) of $want'
    set -l state (__t2_state)
    test "$state[1]" = "$want"; and test $state[2] -eq 0; and test $state[3] -ge $first
    and begin; test $last -lt 0; or test $state[3] -le $last; end
end

complete -c t2 -f

# t2
complete -c t2 -n '__t2_at t2' -a decompose -d 'Decompose the targeted weight matrices (U, s, V per matrix), cached per model fingerprint.'
complete -c t2 -n '__t2_at t2' -a compose -d 'Compose experts, z\' = Σ α_k z_k per matrix, and publish the mix as a new registry expert.'
complete -c t2 -n '__t2_at t2' -a transfer -d 'Transfer experts to another model and publish them under that model\'s registry folder.'
complete -c t2 -n '__t2_at t2' -a train -d 'Train an SVF expert by REINFORCE with a KL penalty and publish it to the registry.'
complete -c t2 -n '__t2_at t2' -a plot-run -d 'Draw reward and KL per step and the validation score against the base model\'s, from the run\'s log.'
complete -c t2 -n '__t2_at t2' -a eval -d 'Evaluate the base model and/or experts on a task.'
complete -c t2 -n '__t2_at t2' -a export -d 'Export an expert for other runtimes (PEFT, vLLM, plain transformers).'
complete -c t2 -n '__t2_at t2' -a dispatch -d 'Pass 1 only: route each prompt to an expert and show the routing table (and, when lines have a...'
complete -c t2 -n '__t2_at t2' -a run -d 'Answer every prompt with the expert pass 1 picks for it; outputs keep the input order.'
complete -c t2 -n '__t2_at t2' -a serve -d 'Serve the bank over an OpenAI-compatible API: each request is answered by the expert pass 1 picks.'
complete -c t2 -n '__t2_at t2' -a doctor -d 'Report versions, devices, threads, engines, model packages, and t2\'s folders with their sizes.'
complete -c t2 -n '__t2_at t2' -a registry -d 'Expert versions on disk (ROOT/<model>/<expert>/<version>/) and on remotes (file://, hf://).'
complete -c t2 -n '__t2_in t2' -l threads -x -d 'Torch CPU threads (default: $T2_THREADS, else torch\'s).'
complete -c t2 -n '__t2_in t2' -l device -x -d 'Where models run: auto (a CUDA GPU if any, else cpu), cpu, cuda, cuda:N, mps (or $T2_DEVICE).'
complete -c t2 -n '__t2_in t2' -l dtype -x -d 'Compute dtype: auto (bfloat16 on CUDA, else float32), float32, bfloat16, float16 (or $T2_DTYPE).'
complete -c t2 -n '__t2_in t2' -l debug -d 'Show tracebacks instead of one-line errors.'
complete -c t2 -n '__t2_in t2' -l quiet -s q -d 'No progress bars or tables on stderr.'
complete -c t2 -n '__t2_in t2' -l version -d 'Print the version.'
complete -c t2 -n '__t2_in t2' -l install-completion -d 'Install completion for the current shell.'
complete -c t2 -n '__t2_in t2' -l show-completion -d 'Show completion for the current shell, to copy it or customize the installation.'
complete -c t2 -n '__t2_in t2' -l help -d 'Show this message and exit.'

# t2 decompose
complete -c t2 -n '__t2_in \'t2 decompose\'' -l targets -x -d 'Matrices to adapt: all (default), mlp, attn, or roles like q,v,down.'
complete -c t2 -n '__t2_in \'t2 decompose\'' -l force -d 'Recompute even if the cache has the factors.'
complete -c t2 -n '__t2_in \'t2 decompose\'' -l driver -x -d 'gram (fp64 Gram eigh, verified; falls back) or gesdd (LAPACK SVD).'
complete -c t2 -n '__t2_in \'t2 decompose\'' -l cache-dtype -x -d 'Factors\' dtype in the cache: float32, or bfloat16/float16 (half the size, ~1e-3 error).'
complete -c t2 -n '__t2_in \'t2 decompose\'' -l json -d 'Print the summary as JSON.'
complete -c t2 -n '__t2_in \'t2 decompose\'' -l help -d 'Show this message and exit.'

# t2 compose
complete -c t2 -n '__t2_in \'t2 compose\'' -l recipe -s r -r -F -d 'YAML recipe (depth gradients, per-role α); see recipes/README.md.'
complete -c t2 -n '__t2_in \'t2 compose\'' -l output -s o -x -d 'Name of the new expert (overrides the recipe\'s output).'
complete -c t2 -n '__t2_in \'t2 compose\'' -l normalize -l no-normalize -d 'Scale α to sum 1 per matrix (default: the recipe\'s, else off).'
complete -c t2 -n '__t2_in \'t2 compose\'' -l model -s m -x -d 'Base model (id or registry folder name) when a name exists for several.'
complete -c t2 -n '__t2_in \'t2 compose\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 compose\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 compose\'' -l help -d 'Show this message and exit.'

# t2 transfer
complete -c t2 -n '__t2_in \'t2 transfer\'' -l to -x -d 'Target model: smollm2-135m, gemma3-270m, a local folder or an HF id.'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l strength -x -d 'β: z\' = 1 + β(z − 1); 1 keeps the expert, 0 gives the base model.'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l mapping -x -d 'position: z by sorted singular-value index (any shapes); aligned: by the matching singular directions (same depth and shapes).'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l output -s o -x -d 'Name under the target model (default: the expert\'s).'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l targets -x -d 'Target matrices (default: the roles the expert adapts); extra roles stay at z = 1.'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l from -l model -s m -x -d 'The experts\' base model (default: the expert\'s; with --all, smollm2-135m).'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l all -d 'Every expert of the source model (latest versions), classifier included.'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l check -d 'Only print the alignment check; write nothing.'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l force -d 'Transfer even when the check says `unrelated`.'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 transfer\'' -l help -d 'Show this message and exit.'

# t2 train
complete -c t2 -n '__t2_in \'t2 train\'' -l output -s o -x -d 'Expert name (default: the task).'
complete -c t2 -n '__t2_in \'t2 train\'' -l model -s m -x -d 'Model: smollm2-135m (default), gemma3-270m, a local folder or an HF id.'
complete -c t2 -n '__t2_in \'t2 train\'' -l experts -x -d 'For --task cls: the experts whose tasks are the categories (a task with no expert, e.g. mbpp, is a category that keeps the base weights).'
complete -c t2 -n '__t2_in \'t2 train\'' -l config -r -F -d 'YAML of training settings (the options below; a manifest\'s provenance.hyperparameters as is). Options given on the command line win.'
complete -c t2 -n '__t2_in \'t2 train\'' -l run-dir -r -F -d 'Checkpoints and log (default: $T2_HOME/runs/MODEL/NAME).'
complete -c t2 -n '__t2_in \'t2 train\'' -l resume -d 'Continue from the run folder\'s last checkpoint.'
complete -c t2 -n '__t2_in \'t2 train\'' -l shard -d 'Under accelerate launch/torchrun: split each decoder layer\'s weights and SVF factors across the processes (FSDP2) instead of a whole model in each; for models larger than one device.'
complete -c t2 -n '__t2_in \'t2 train\'' -l recompute -d 'Keep only each decoder layer\'s input for the backward and run the layer again there (activation checkpointing): about a third more compute, a fraction of the memory.'
complete -c t2 -n '__t2_in \'t2 train\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 train\'' -l engine -x -d 'auto (the best engine that can run here), or one of: hf, vllm.'
complete -c t2 -n '__t2_in \'t2 train\'' -l json -d 'Print the summary as JSON.'
complete -c t2 -n '__t2_in \'t2 train\'' -l task -s t -x -d 'Task name (arc, gsm8k, mbpp, …, cls) or a YAML spec.'
complete -c t2 -n '__t2_in \'t2 train\'' -l method -x -d 'svf (REINFORCE, default), nll (reference answers), the LoRA baseline: lora, lora-nll; or for --task cls probe: a router\'s head over the base model\'s hidden states at --layer (no expert).'
complete -c t2 -n '__t2_in \'t2 train\'' -l rollout -x -d 'auto, generate, choices (exact gradient over answer letters) or likelihood (over choice texts).'
complete -c t2 -n '__t2_in \'t2 train\'' -l targets -x -d 'Matrices to adapt: all (default), mlp, attn, or roles like q,v,down.'
complete -c t2 -n '__t2_in \'t2 train\'' -l rule -x -d 'SVF rule: none or nuclear (keep Σ s·z = Σ s).'
complete -c t2 -n '__t2_in \'t2 train\'' -l steps -x -d 'Optimiser steps.'
complete -c t2 -n '__t2_in \'t2 train\'' -l batch-size -x -d 'Prompts per step.'
complete -c t2 -n '__t2_in \'t2 train\'' -l samples -x -d 'Completions sampled per prompt (generate).'
complete -c t2 -n '__t2_in \'t2 train\'' -l lr -x -d 'Adam learning rate on z (or the LoRA factors).'
complete -c t2 -n '__t2_in \'t2 train\'' -l kl -x -d 'β of the KL(π_z ‖ π_base) penalty.'
complete -c t2 -n '__t2_in \'t2 train\'' -l temperature -x -d 'Sampling temperature of rollouts.'
complete -c t2 -n '__t2_in \'t2 train\'' -l baseline -x -d 'Reward baseline: none, mean or group.'
complete -c t2 -n '__t2_in \'t2 train\'' -l max-new-tokens -x -d 'Rollout and validation length.'
complete -c t2 -n '__t2_in \'t2 train\'' -l grad-clip -x -d 'Clip the gradient\'s global norm to this before each step.'
complete -c t2 -n '__t2_in \'t2 train\'' -l micro-batch -x -d 'Sequences per backward pass.'
complete -c t2 -n '__t2_in \'t2 train\'' -l val-every -x -d 'Validate every N steps (and at the last).'
complete -c t2 -n '__t2_in \'t2 train\'' -l val-limit -x -d 'Validate on the first N validation examples.'
complete -c t2 -n '__t2_in \'t2 train\'' -l train-limit -x -d 'Train on the first N examples only.'
complete -c t2 -n '__t2_in \'t2 train\'' -l checkpoint-every -x -d 'Checkpoint every N steps (and at the last).'
complete -c t2 -n '__t2_in \'t2 train\'' -l seed -x -d 'Seed for batches, sampling and choice order.'
complete -c t2 -n '__t2_in \'t2 train\'' -l rank -x -d 'Rank of ΔW: the LoRA rank for lora/lora-nll (default 16); for svf/nll, adapt only each matrix\'s r largest singular values, so `t2 export --rank r` is exact (default: all).'
complete -c t2 -n '__t2_in \'t2 train\'' -l select -x -d 'Publish the best validated step (ties: the earlier, base first) or the last.'
complete -c t2 -n '__t2_in \'t2 train\'' -l data -x -d 'Data file or folder, or a Hub dataset hf://datasets/OWNER/NAME, optionally @REV and /CONFIG (default: the task\'s own, from the Hub); for --task cls: TASK=PATH,…'
complete -c t2 -n '__t2_in \'t2 train\'' -l layer -x -d 'For --method probe: the decoder layer whose hidden states it reads (pass 1 runs only those).'
complete -c t2 -n '__t2_in \'t2 train\'' -l tokens -x -d 'For --method probe: the request tokens it reads (default 64).'
complete -c t2 -n '__t2_in \'t2 train\'' -l help -d 'Show this message and exit.'

# t2 plot-run
complete -c t2 -n '__t2_in \'t2 plot-run\'' -l output -s o -r -F -d 'PNG to write (default: RUN_DIR/curves.png).'
complete -c t2 -n '__t2_in \'t2 plot-run\'' -l help -d 'Show this message and exit.'
complete -c t2 -n '__t2_arg \'t2 plot-run\' 0 0' -F

# t2 eval
complete -c t2 -n '__t2_in \'t2 eval\'' -l task -s t -x -d 'Task name (arc, gsm8k, mbpp, …) or a YAML spec.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l data -x -d 'Data file or folder, hf://datasets/OWNER/NAME (optionally @REV and /CONFIG) or t2:math-mix/FILE (default: the task\'s own, from the Hub).'
complete -c t2 -n '__t2_in \'t2 eval\'' -l split -x -d 'train, validation or test.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l expert -s e -x -d 'Expert NAME[@V]; repeat for a side-by-side table.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l base -d 'Include the base model (the default with no --expert).'
complete -c t2 -n '__t2_in \'t2 eval\'' -l limit -s n -x -d 'Only the first N examples.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l mode -x -d 'generate, choices (answer-letter logits) or likelihood (choice texts).'
complete -c t2 -n '__t2_in \'t2 eval\'' -l max-new-tokens -x -d 'Generation length.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l output -s o -r -F -d 'Per-example results (JSONL).'
complete -c t2 -n '__t2_in \'t2 eval\'' -l json -d 'Print the summary as JSON.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l plot -r -F -d 'Also draw the figure to this PNG file (needs pip install \'t2cli[plots]\').'
complete -c t2 -n '__t2_in \'t2 eval\'' -l model -s m -x -d 'Model: smollm2-135m (default), gemma3-270m, a local folder or an HF id.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 eval\'' -l engine -x -d 'auto (the best engine that can run here), or one of: hf, vllm.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l tp -x -d 'GPUs to shard the model over (tensor parallelism), for an engine that takes it.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l batch-size -x -d 'Prompts per forward pass.'
complete -c t2 -n '__t2_in \'t2 eval\'' -l help -d 'Show this message and exit.'

# t2 export
complete -c t2 -n '__t2_in \'t2 export\'' -l output -s o -r -F -d 'New (or empty) folder to write.'
complete -c t2 -n '__t2_in \'t2 export\'' -l format -s f -x -d 'One of: peft-lora, merged (peft-lora: a PEFT adapter; merged: W\' baked in).'
complete -c t2 -n '__t2_in \'t2 export\'' -l rank -x -d 'peft-lora: keep K components per matrix (default: the rank it was trained at).'
complete -c t2 -n '__t2_in \'t2 export\'' -l energy -x -d 'peft-lora: smallest rank per matrix keeping this share of ‖ΔW‖² (0-1].'
complete -c t2 -n '__t2_in \'t2 export\'' -l eval -x -d 'Also score base, exact expert and export on this task.'
complete -c t2 -n '__t2_in \'t2 export\'' -l data -x -d '--eval: data file or folder.'
complete -c t2 -n '__t2_in \'t2 export\'' -l split -x -d '--eval: train, validation or test.'
complete -c t2 -n '__t2_in \'t2 export\'' -l limit -s n -x -d '--eval: only the first N examples.'
complete -c t2 -n '__t2_in \'t2 export\'' -l mode -x -d '--eval: generate, choices or likelihood.'
complete -c t2 -n '__t2_in \'t2 export\'' -l plot -r -F -d 'Also draw the figure to this PNG file (needs pip install \'t2cli[plots]\').'
complete -c t2 -n '__t2_in \'t2 export\'' -l model -s m -x -d 'Model: smollm2-135m (default), gemma3-270m, a local folder or an HF id.'
complete -c t2 -n '__t2_in \'t2 export\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 export\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 export\'' -l help -d 'Show this message and exit.'

# t2 dispatch
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l output -s o -r -F -d 'Write one decision per prompt line here (JSONL).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l plot -r -F -d 'Also draw the figure to this PNG file (needs pip install \'t2cli[plots]\').'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l adapt -s a -x -d 'none, prompt, classifier, few-shot, probe, or an expert name[@version].'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l config -r -F -d 'YAML of strategy settings: the options under Strategy settings, by field name (`route_tokens: 32`, `experts: arc,gsm8k`, `cem_seed: 1`). Options given on the command line win.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l model -s m -x -d 'Model: smollm2-135m (default), gemma3-270m, a local folder or an HF id.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l engine -x -d 'auto (the best engine that can run here), or one of: hf, vllm.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l tp -x -d 'GPUs to shard the model over (tensor parallelism), for an engine that takes it.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l batch-size -x -d 'Prompts per forward pass.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l experts -x -d 'The bank: comma list of experts (default: every trained expert of the model).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l classifier -x -d 'classifier, probe: the classifier expert or probe to use (default: the model\'s only one).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l calibrate -l no-calibrate -d 'prompt: remove the labels\' prior (a content-free request).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l route-tokens -x -d 'prompt, classifier: pass 1 reads only the first N tokens of each request (0: all of it). Default: 64 (docs/benchmarks.md).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l task -x -d 'few-shot: the task of the --shots (gsm8k, arc, mbpp...); without both, the batch\'s labelled lines.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l shots -r -F -d 'few-shot: JSONL file of 3-20 labelled examples in the task\'s own format.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l cem-granularity -x -d 'few-shot: one α per expert, or per expert and layer (expert|layer).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l cem-score -x -d 'few-shot: reward (greedy answers; likelihood breaks ties) or likelihood (no generation). Default: reward with --shots, likelihood for shots from the batch.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l cem-population -x -d 'few-shot: candidates per CEM iteration (default: 8; 4 from the batch).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l cem-elites -x -d 'few-shot: best candidates the Gaussian is refit to (default: 3; 2 from the batch).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l cem-iterations -x -d 'few-shot: CEM iterations (default: 5; 2 from the batch).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l cem-seed -x -d 'few-shot: seed of the CEM samples.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l cem-max-new-tokens -x -d 'few-shot: answer length when scoring candidates by reward.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l save-as -x -d 'few-shot: registry name of the found mix (default: TASK-fewshot; NAME-TASK from the batch).'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l force -d 'few-shot: search again even if a saved search matches the shots and bank.'
complete -c t2 -n '__t2_in \'t2 dispatch\'' -l help -d 'Show this message and exit.'
complete -c t2 -n '__t2_arg \'t2 dispatch\' 0 0' -F

# t2 run
complete -c t2 -n '__t2_in \'t2 run\'' -l output -s o -r -F -d 'Output JSONL, one line per valid input line (default: stdout).'
complete -c t2 -n '__t2_in \'t2 run\'' -l max-new-tokens -x -d 'Tokens to generate per prompt.'
complete -c t2 -n '__t2_in \'t2 run\'' -l strict -d 'Stop (exit 2) on malformed input lines instead of skipping them.'
complete -c t2 -n '__t2_in \'t2 run\'' -l resume -l no-resume -d 'Reuse finished lines of -o and its .partial journal (same input).'
complete -c t2 -n '__t2_in \'t2 run\'' -l lora-rank -x -d 'Pass 2 without swaps (hf engine): all experts in mixed batches, each SVF expert as its rank-R LoRA export (cached in $T2_HOME/lora). Default: exact weight swaps, one per expert group.'
complete -c t2 -n '__t2_in \'t2 run\'' -l pass2 -x -d 'How pass 2 batches the experts: groups (one swap per expert group) or rows (one batch, each row with its expert\'s exact weights: no swaps, one weight copy per expert; hf, and vLLM on CPU).'
complete -c t2 -n '__t2_in \'t2 run\'' -l compare -x -d 'Also answer every labelled line with `none` (the base weights): rows gain base_completion and base_score, and the summary pairs both mean scores with their difference.'
complete -c t2 -n '__t2_in \'t2 run\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 run\'' -l adapt -s a -x -d 'none, prompt, classifier, few-shot, probe, or an expert name[@version].'
complete -c t2 -n '__t2_in \'t2 run\'' -l config -r -F -d 'YAML of strategy settings: the options under Strategy settings, by field name (`route_tokens: 32`, `experts: arc,gsm8k`, `cem_seed: 1`). Options given on the command line win.'
complete -c t2 -n '__t2_in \'t2 run\'' -l model -s m -x -d 'Model: smollm2-135m (default), gemma3-270m, a local folder or an HF id.'
complete -c t2 -n '__t2_in \'t2 run\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 run\'' -l engine -x -d 'auto (the best engine that can run here), or one of: hf, vllm.'
complete -c t2 -n '__t2_in \'t2 run\'' -l tp -x -d 'GPUs to shard the model over (tensor parallelism), for an engine that takes it.'
complete -c t2 -n '__t2_in \'t2 run\'' -l batch-size -x -d 'Prompts per forward pass.'
complete -c t2 -n '__t2_in \'t2 run\'' -l experts -x -d 'The bank: comma list of experts (default: every trained expert of the model).'
complete -c t2 -n '__t2_in \'t2 run\'' -l classifier -x -d 'classifier, probe: the classifier expert or probe to use (default: the model\'s only one).'
complete -c t2 -n '__t2_in \'t2 run\'' -l calibrate -l no-calibrate -d 'prompt: remove the labels\' prior (a content-free request).'
complete -c t2 -n '__t2_in \'t2 run\'' -l route-tokens -x -d 'prompt, classifier: pass 1 reads only the first N tokens of each request (0: all of it). Default: 64 (docs/benchmarks.md).'
complete -c t2 -n '__t2_in \'t2 run\'' -l task -x -d 'few-shot: the task of the --shots (gsm8k, arc, mbpp...); without both, the batch\'s labelled lines.'
complete -c t2 -n '__t2_in \'t2 run\'' -l shots -r -F -d 'few-shot: JSONL file of 3-20 labelled examples in the task\'s own format.'
complete -c t2 -n '__t2_in \'t2 run\'' -l cem-granularity -x -d 'few-shot: one α per expert, or per expert and layer (expert|layer).'
complete -c t2 -n '__t2_in \'t2 run\'' -l cem-score -x -d 'few-shot: reward (greedy answers; likelihood breaks ties) or likelihood (no generation). Default: reward with --shots, likelihood for shots from the batch.'
complete -c t2 -n '__t2_in \'t2 run\'' -l cem-population -x -d 'few-shot: candidates per CEM iteration (default: 8; 4 from the batch).'
complete -c t2 -n '__t2_in \'t2 run\'' -l cem-elites -x -d 'few-shot: best candidates the Gaussian is refit to (default: 3; 2 from the batch).'
complete -c t2 -n '__t2_in \'t2 run\'' -l cem-iterations -x -d 'few-shot: CEM iterations (default: 5; 2 from the batch).'
complete -c t2 -n '__t2_in \'t2 run\'' -l cem-seed -x -d 'few-shot: seed of the CEM samples.'
complete -c t2 -n '__t2_in \'t2 run\'' -l cem-max-new-tokens -x -d 'few-shot: answer length when scoring candidates by reward.'
complete -c t2 -n '__t2_in \'t2 run\'' -l save-as -x -d 'few-shot: registry name of the found mix (default: TASK-fewshot; NAME-TASK from the batch).'
complete -c t2 -n '__t2_in \'t2 run\'' -l force -d 'few-shot: search again even if a saved search matches the shots and bank.'
complete -c t2 -n '__t2_in \'t2 run\'' -l help -d 'Show this message and exit.'
complete -c t2 -n '__t2_arg \'t2 run\' 0 0' -F

# t2 serve
complete -c t2 -n '__t2_in \'t2 serve\'' -l host -x -d 'Address to listen on (0.0.0.0: every interface).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l port -x -d 'Port to listen on.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l api-key -x -d 'Require `Authorization: Bearer KEY` on /v1 and /metrics (401 without it). Default: no key.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l max-tokens -x -d 'The most max_tokens a request may ask for (400 above it).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l max-request-bytes -x -d 'The largest request body accepted (400 above it).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l max-queue -x -d 'Requests that may wait; beyond them 429 with Retry-After.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l max-batch -x -d 'Requests routed and answered together.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l batch-window -x -d 'Seconds a batch waits for more requests after its first.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l lora-rank -x -d 'Pass 2 without swaps (hf engine): every expert\'s requests in mixed batches, as in t2 run.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l pass2 -x -d 'How pass 2 batches the experts: groups or rows, as in t2 run.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l adapt -s a -x -d 'none, prompt, classifier, few-shot, probe, or an expert name[@version].'
complete -c t2 -n '__t2_in \'t2 serve\'' -l config -r -F -d 'YAML of strategy settings: the options under Strategy settings, by field name (`route_tokens: 32`, `experts: arc,gsm8k`, `cem_seed: 1`). Options given on the command line win.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l model -s m -x -d 'Model: smollm2-135m (default), gemma3-270m, a local folder or an HF id.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l engine -x -d 'auto (the best engine that can run here), or one of: hf, vllm.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l tp -x -d 'GPUs to shard the model over (tensor parallelism), for an engine that takes it.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l batch-size -x -d 'Prompts per forward pass.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l experts -x -d 'The bank: comma list of experts (default: every trained expert of the model).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l classifier -x -d 'classifier, probe: the classifier expert or probe to use (default: the model\'s only one).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l calibrate -l no-calibrate -d 'prompt: remove the labels\' prior (a content-free request).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l route-tokens -x -d 'prompt, classifier: pass 1 reads only the first N tokens of each request (0: all of it). Default: 64 (docs/benchmarks.md).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l task -x -d 'few-shot: the task of the --shots (gsm8k, arc, mbpp...); without both, the batch\'s labelled lines.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l shots -r -F -d 'few-shot: JSONL file of 3-20 labelled examples in the task\'s own format.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l cem-granularity -x -d 'few-shot: one α per expert, or per expert and layer (expert|layer).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l cem-score -x -d 'few-shot: reward (greedy answers; likelihood breaks ties) or likelihood (no generation). Default: reward with --shots, likelihood for shots from the batch.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l cem-population -x -d 'few-shot: candidates per CEM iteration (default: 8; 4 from the batch).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l cem-elites -x -d 'few-shot: best candidates the Gaussian is refit to (default: 3; 2 from the batch).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l cem-iterations -x -d 'few-shot: CEM iterations (default: 5; 2 from the batch).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l cem-seed -x -d 'few-shot: seed of the CEM samples.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l cem-max-new-tokens -x -d 'few-shot: answer length when scoring candidates by reward.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l save-as -x -d 'few-shot: registry name of the found mix (default: TASK-fewshot; NAME-TASK from the batch).'
complete -c t2 -n '__t2_in \'t2 serve\'' -l force -d 'few-shot: search again even if a saved search matches the shots and bank.'
complete -c t2 -n '__t2_in \'t2 serve\'' -l help -d 'Show this message and exit.'

# t2 doctor
complete -c t2 -n '__t2_in \'t2 doctor\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 doctor\'' -l help -d 'Show this message and exit.'

# t2 registry
complete -c t2 -n '__t2_at \'t2 registry\'' -a list -d 'List experts with their versions, base model, task, main metric, size and creation time.'
complete -c t2 -n '__t2_at \'t2 registry\'' -a show -d 'Show an expert\'s manifest and per-layer statistics of its z vectors (the version is verified...'
complete -c t2 -n '__t2_at \'t2 registry\'' -a verify -d 'Check every version\'s manifest and checksums; exit 4 listing each problem found.'
complete -c t2 -n '__t2_at \'t2 registry\'' -a rm -d 'Delete one version; its number is never reused.'
complete -c t2 -n '__t2_at \'t2 registry\'' -a push -d 'Copy a version to a remote (verified first; a version the remote holds with other content is...'
complete -c t2 -n '__t2_at \'t2 registry\'' -a pull -d 'Install a version from a remote; it is verified against its checksums before it is installed.'
complete -c t2 -n '__t2_at \'t2 registry\'' -a gc -d 'Delete staging folders left by interrupted writes (publishing does it too, per expert).'
complete -c t2 -n '__t2_in \'t2 registry\'' -l help -d 'Show this message and exit.'

# t2 registry list
complete -c t2 -n '__t2_in \'t2 registry list\'' -l model -s m -x -d 'Base model (id or registry folder name) when a name exists for several.'
complete -c t2 -n '__t2_in \'t2 registry list\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 registry list\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 registry list\'' -l help -d 'Show this message and exit.'

# t2 registry show
complete -c t2 -n '__t2_in \'t2 registry show\'' -l model -s m -x -d 'Base model (id or registry folder name) when a name exists for several.'
complete -c t2 -n '__t2_in \'t2 registry show\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 registry show\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 registry show\'' -l plot -r -F -d 'Also draw the figure to this PNG file (needs pip install \'t2cli[plots]\').'
complete -c t2 -n '__t2_in \'t2 registry show\'' -l help -d 'Show this message and exit.'

# t2 registry verify
complete -c t2 -n '__t2_in \'t2 registry verify\'' -l model -s m -x -d 'Base model (id or registry folder name) when a name exists for several.'
complete -c t2 -n '__t2_in \'t2 registry verify\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 registry verify\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 registry verify\'' -l help -d 'Show this message and exit.'

# t2 registry rm
complete -c t2 -n '__t2_in \'t2 registry rm\'' -l model -s m -x -d 'Base model (id or registry folder name) when a name exists for several.'
complete -c t2 -n '__t2_in \'t2 registry rm\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 registry rm\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 registry rm\'' -l help -d 'Show this message and exit.'

# t2 registry push
complete -c t2 -n '__t2_in \'t2 registry push\'' -l model -s m -x -d 'Base model (id or registry folder name) when a name exists for several.'
complete -c t2 -n '__t2_in \'t2 registry push\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 registry push\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 registry push\'' -l help -d 'Show this message and exit.'

# t2 registry pull
complete -c t2 -n '__t2_in \'t2 registry pull\'' -l model -s m -x -d 'Base model (id or registry folder name) when a name exists for several.'
complete -c t2 -n '__t2_in \'t2 registry pull\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 registry pull\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 registry pull\'' -l help -d 'Show this message and exit.'

# t2 registry gc
complete -c t2 -n '__t2_in \'t2 registry gc\'' -l registry -r -F -d 'Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).'
complete -c t2 -n '__t2_in \'t2 registry gc\'' -l json -d 'Print the result as JSON.'
complete -c t2 -n '__t2_in \'t2 registry gc\'' -l help -d 'Show this message and exit.'
