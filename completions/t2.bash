# Static t2 completion, generated from its command tree by t2cli/cli/completions.py.
# Do not edit: after changing commands or options, regenerate every script with
#     python -m t2cli.cli.completions completions/
# Install: source it from ~/.bashrc, or copy it to ~/.local/share/bash-completion/completions/t2

# The word being completed is $cur, a local of _t2_completion that the helpers below see.
_t2_words() {
    COMPREPLY=($(compgen -W "$1" -- "$cur"))
}

_t2_files() {
    compopt -o filenames 2>/dev/null  # bash >= 4: a / after folders, special characters quoted
    local IFS=$'\n'
    COMPREPLY=($(compgen -f -- "$cur"))
}

_t2_dirs() {
    compopt -o filenames 2>/dev/null
    local IFS=$'\n'
    COMPREPLY=($(compgen -d -- "$cur"))
}

_t2_command() {  # sets commands and options of command path $1
    case $1 in
        "t2") commands="decompose compose transfer train plot-run eval export dispatch run serve doctor registry" options="--threads --device --dtype --debug --quiet -q --version --install-completion --show-completion --help" ;;
        "t2 decompose") commands="" options="--targets --force --driver --cache-dtype --json --help" ;;
        "t2 compose") commands="" options="--recipe -r --output -o --normalize --no-normalize --model -m --registry --json --help" ;;
        "t2 transfer") commands="" options="--to --strength --mapping --output -o --targets --from --model -m --all --check --force --registry --json --help" ;;
        "t2 train") commands="" options="--output -o --model -m --experts --config --run-dir --resume --shard --recompute --registry --engine --json --task -t --method --rollout --targets --rule --steps --batch-size --samples --lr --kl --temperature --baseline --max-new-tokens --grad-clip --micro-batch --val-every --val-limit --train-limit --checkpoint-every --seed --rank --select --data --layer --tokens --help" ;;
        "t2 plot-run") commands="" options="--output -o --help" ;;
        "t2 eval") commands="" options="--task -t --data --split --expert -e --base --limit -n --mode --max-new-tokens --output -o --json --plot --model -m --registry --engine --tp --batch-size --help" ;;
        "t2 export") commands="" options="--output -o --format -f --rank --energy --eval --data --split --limit -n --mode --plot --model -m --registry --json --help" ;;
        "t2 dispatch") commands="" options="--output -o --json --plot --adapt -a --config --model -m --registry --engine --tp --batch-size --experts --classifier --calibrate --no-calibrate --route-tokens --task --shots --cem-granularity --cem-score --cem-population --cem-elites --cem-iterations --cem-seed --cem-max-new-tokens --save-as --force --help" ;;
        "t2 run") commands="" options="--output -o --max-new-tokens --strict --resume --no-resume --lora-rank --pass2 --compare --json --adapt -a --config --model -m --registry --engine --tp --batch-size --experts --classifier --calibrate --no-calibrate --route-tokens --task --shots --cem-granularity --cem-score --cem-population --cem-elites --cem-iterations --cem-seed --cem-max-new-tokens --save-as --force --help" ;;
        "t2 serve") commands="" options="--host --port --api-key --max-tokens --max-request-bytes --max-queue --max-batch --batch-window --lora-rank --pass2 --adapt -a --config --model -m --registry --engine --tp --batch-size --experts --classifier --calibrate --no-calibrate --route-tokens --task --shots --cem-granularity --cem-score --cem-population --cem-elites --cem-iterations --cem-seed --cem-max-new-tokens --save-as --force --help" ;;
        "t2 doctor") commands="" options="--json --help" ;;
        "t2 registry") commands="list show verify rm push pull gc" options="--help" ;;
        "t2 registry list") commands="" options="--model -m --registry --json --help" ;;
        "t2 registry show") commands="" options="--model -m --registry --json --plot --help" ;;
        "t2 registry verify") commands="" options="--model -m --registry --json --help" ;;
        "t2 registry rm") commands="" options="--model -m --registry --json --help" ;;
        "t2 registry push") commands="" options="--model -m --registry --json --help" ;;
        "t2 registry pull") commands="" options="--model -m --registry --json --help" ;;
        "t2 registry gc") commands="" options="--registry --json --help" ;;
    esac
}

_t2_option_nargs() {  # sets nargs: values option $2 of command $1 takes
    case "$1 $2" in
        "t2 --threads") nargs=1 ;;
        "t2 --device") nargs=1 ;;
        "t2 --dtype") nargs=1 ;;
        "t2 decompose --targets") nargs=1 ;;
        "t2 decompose --driver") nargs=1 ;;
        "t2 decompose --cache-dtype") nargs=1 ;;
        "t2 compose --recipe" | "t2 compose -r") nargs=1 ;;
        "t2 compose --output" | "t2 compose -o") nargs=1 ;;
        "t2 compose --model" | "t2 compose -m") nargs=1 ;;
        "t2 compose --registry") nargs=1 ;;
        "t2 transfer --to") nargs=1 ;;
        "t2 transfer --strength") nargs=1 ;;
        "t2 transfer --mapping") nargs=1 ;;
        "t2 transfer --output" | "t2 transfer -o") nargs=1 ;;
        "t2 transfer --targets") nargs=1 ;;
        "t2 transfer --from" | "t2 transfer --model" | "t2 transfer -m") nargs=1 ;;
        "t2 transfer --registry") nargs=1 ;;
        "t2 train --output" | "t2 train -o") nargs=1 ;;
        "t2 train --model" | "t2 train -m") nargs=1 ;;
        "t2 train --experts") nargs=1 ;;
        "t2 train --config") nargs=1 ;;
        "t2 train --run-dir") nargs=1 ;;
        "t2 train --registry") nargs=1 ;;
        "t2 train --engine") nargs=1 ;;
        "t2 train --task" | "t2 train -t") nargs=1 ;;
        "t2 train --method") nargs=1 ;;
        "t2 train --rollout") nargs=1 ;;
        "t2 train --targets") nargs=1 ;;
        "t2 train --rule") nargs=1 ;;
        "t2 train --steps") nargs=1 ;;
        "t2 train --batch-size") nargs=1 ;;
        "t2 train --samples") nargs=1 ;;
        "t2 train --lr") nargs=1 ;;
        "t2 train --kl") nargs=1 ;;
        "t2 train --temperature") nargs=1 ;;
        "t2 train --baseline") nargs=1 ;;
        "t2 train --max-new-tokens") nargs=1 ;;
        "t2 train --grad-clip") nargs=1 ;;
        "t2 train --micro-batch") nargs=1 ;;
        "t2 train --val-every") nargs=1 ;;
        "t2 train --val-limit") nargs=1 ;;
        "t2 train --train-limit") nargs=1 ;;
        "t2 train --checkpoint-every") nargs=1 ;;
        "t2 train --seed") nargs=1 ;;
        "t2 train --rank") nargs=1 ;;
        "t2 train --select") nargs=1 ;;
        "t2 train --data") nargs=1 ;;
        "t2 train --layer") nargs=1 ;;
        "t2 train --tokens") nargs=1 ;;
        "t2 plot-run --output" | "t2 plot-run -o") nargs=1 ;;
        "t2 eval --task" | "t2 eval -t") nargs=1 ;;
        "t2 eval --data") nargs=1 ;;
        "t2 eval --split") nargs=1 ;;
        "t2 eval --expert" | "t2 eval -e") nargs=1 ;;
        "t2 eval --limit" | "t2 eval -n") nargs=1 ;;
        "t2 eval --mode") nargs=1 ;;
        "t2 eval --max-new-tokens") nargs=1 ;;
        "t2 eval --output" | "t2 eval -o") nargs=1 ;;
        "t2 eval --plot") nargs=1 ;;
        "t2 eval --model" | "t2 eval -m") nargs=1 ;;
        "t2 eval --registry") nargs=1 ;;
        "t2 eval --engine") nargs=1 ;;
        "t2 eval --tp") nargs=1 ;;
        "t2 eval --batch-size") nargs=1 ;;
        "t2 export --output" | "t2 export -o") nargs=1 ;;
        "t2 export --format" | "t2 export -f") nargs=1 ;;
        "t2 export --rank") nargs=1 ;;
        "t2 export --energy") nargs=1 ;;
        "t2 export --eval") nargs=1 ;;
        "t2 export --data") nargs=1 ;;
        "t2 export --split") nargs=1 ;;
        "t2 export --limit" | "t2 export -n") nargs=1 ;;
        "t2 export --mode") nargs=1 ;;
        "t2 export --plot") nargs=1 ;;
        "t2 export --model" | "t2 export -m") nargs=1 ;;
        "t2 export --registry") nargs=1 ;;
        "t2 dispatch --output" | "t2 dispatch -o") nargs=1 ;;
        "t2 dispatch --plot") nargs=1 ;;
        "t2 dispatch --adapt" | "t2 dispatch -a") nargs=1 ;;
        "t2 dispatch --config") nargs=1 ;;
        "t2 dispatch --model" | "t2 dispatch -m") nargs=1 ;;
        "t2 dispatch --registry") nargs=1 ;;
        "t2 dispatch --engine") nargs=1 ;;
        "t2 dispatch --tp") nargs=1 ;;
        "t2 dispatch --batch-size") nargs=1 ;;
        "t2 dispatch --experts") nargs=1 ;;
        "t2 dispatch --classifier") nargs=1 ;;
        "t2 dispatch --route-tokens") nargs=1 ;;
        "t2 dispatch --task") nargs=1 ;;
        "t2 dispatch --shots") nargs=1 ;;
        "t2 dispatch --cem-granularity") nargs=1 ;;
        "t2 dispatch --cem-score") nargs=1 ;;
        "t2 dispatch --cem-population") nargs=1 ;;
        "t2 dispatch --cem-elites") nargs=1 ;;
        "t2 dispatch --cem-iterations") nargs=1 ;;
        "t2 dispatch --cem-seed") nargs=1 ;;
        "t2 dispatch --cem-max-new-tokens") nargs=1 ;;
        "t2 dispatch --save-as") nargs=1 ;;
        "t2 run --output" | "t2 run -o") nargs=1 ;;
        "t2 run --max-new-tokens") nargs=1 ;;
        "t2 run --lora-rank") nargs=1 ;;
        "t2 run --pass2") nargs=1 ;;
        "t2 run --compare") nargs=1 ;;
        "t2 run --adapt" | "t2 run -a") nargs=1 ;;
        "t2 run --config") nargs=1 ;;
        "t2 run --model" | "t2 run -m") nargs=1 ;;
        "t2 run --registry") nargs=1 ;;
        "t2 run --engine") nargs=1 ;;
        "t2 run --tp") nargs=1 ;;
        "t2 run --batch-size") nargs=1 ;;
        "t2 run --experts") nargs=1 ;;
        "t2 run --classifier") nargs=1 ;;
        "t2 run --route-tokens") nargs=1 ;;
        "t2 run --task") nargs=1 ;;
        "t2 run --shots") nargs=1 ;;
        "t2 run --cem-granularity") nargs=1 ;;
        "t2 run --cem-score") nargs=1 ;;
        "t2 run --cem-population") nargs=1 ;;
        "t2 run --cem-elites") nargs=1 ;;
        "t2 run --cem-iterations") nargs=1 ;;
        "t2 run --cem-seed") nargs=1 ;;
        "t2 run --cem-max-new-tokens") nargs=1 ;;
        "t2 run --save-as") nargs=1 ;;
        "t2 serve --host") nargs=1 ;;
        "t2 serve --port") nargs=1 ;;
        "t2 serve --api-key") nargs=1 ;;
        "t2 serve --max-tokens") nargs=1 ;;
        "t2 serve --max-request-bytes") nargs=1 ;;
        "t2 serve --max-queue") nargs=1 ;;
        "t2 serve --max-batch") nargs=1 ;;
        "t2 serve --batch-window") nargs=1 ;;
        "t2 serve --lora-rank") nargs=1 ;;
        "t2 serve --pass2") nargs=1 ;;
        "t2 serve --adapt" | "t2 serve -a") nargs=1 ;;
        "t2 serve --config") nargs=1 ;;
        "t2 serve --model" | "t2 serve -m") nargs=1 ;;
        "t2 serve --registry") nargs=1 ;;
        "t2 serve --engine") nargs=1 ;;
        "t2 serve --tp") nargs=1 ;;
        "t2 serve --batch-size") nargs=1 ;;
        "t2 serve --experts") nargs=1 ;;
        "t2 serve --classifier") nargs=1 ;;
        "t2 serve --route-tokens") nargs=1 ;;
        "t2 serve --task") nargs=1 ;;
        "t2 serve --shots") nargs=1 ;;
        "t2 serve --cem-granularity") nargs=1 ;;
        "t2 serve --cem-score") nargs=1 ;;
        "t2 serve --cem-population") nargs=1 ;;
        "t2 serve --cem-elites") nargs=1 ;;
        "t2 serve --cem-iterations") nargs=1 ;;
        "t2 serve --cem-seed") nargs=1 ;;
        "t2 serve --cem-max-new-tokens") nargs=1 ;;
        "t2 serve --save-as") nargs=1 ;;
        "t2 registry list --model" | "t2 registry list -m") nargs=1 ;;
        "t2 registry list --registry") nargs=1 ;;
        "t2 registry show --model" | "t2 registry show -m") nargs=1 ;;
        "t2 registry show --registry") nargs=1 ;;
        "t2 registry show --plot") nargs=1 ;;
        "t2 registry verify --model" | "t2 registry verify -m") nargs=1 ;;
        "t2 registry verify --registry") nargs=1 ;;
        "t2 registry rm --model" | "t2 registry rm -m") nargs=1 ;;
        "t2 registry rm --registry") nargs=1 ;;
        "t2 registry push --model" | "t2 registry push -m") nargs=1 ;;
        "t2 registry push --registry") nargs=1 ;;
        "t2 registry pull --model" | "t2 registry pull -m") nargs=1 ;;
        "t2 registry pull --registry") nargs=1 ;;
        "t2 registry gc --registry") nargs=1 ;;
        *) nargs=0 ;;
    esac
}

_t2_option_values() {  # COMPREPLY: values of option $2 of command $1
    case "$1 $2" in
        "t2 compose --recipe" | "t2 compose -r") _t2_files ;;
        "t2 compose --registry") _t2_files ;;
        "t2 transfer --registry") _t2_files ;;
        "t2 train --config") _t2_files ;;
        "t2 train --run-dir") _t2_files ;;
        "t2 train --registry") _t2_files ;;
        "t2 plot-run --output" | "t2 plot-run -o") _t2_files ;;
        "t2 eval --output" | "t2 eval -o") _t2_files ;;
        "t2 eval --plot") _t2_files ;;
        "t2 eval --registry") _t2_files ;;
        "t2 export --output" | "t2 export -o") _t2_files ;;
        "t2 export --plot") _t2_files ;;
        "t2 export --registry") _t2_files ;;
        "t2 dispatch --output" | "t2 dispatch -o") _t2_files ;;
        "t2 dispatch --plot") _t2_files ;;
        "t2 dispatch --config") _t2_files ;;
        "t2 dispatch --registry") _t2_files ;;
        "t2 dispatch --shots") _t2_files ;;
        "t2 run --output" | "t2 run -o") _t2_files ;;
        "t2 run --config") _t2_files ;;
        "t2 run --registry") _t2_files ;;
        "t2 run --shots") _t2_files ;;
        "t2 serve --config") _t2_files ;;
        "t2 serve --registry") _t2_files ;;
        "t2 serve --shots") _t2_files ;;
        "t2 registry list --registry") _t2_files ;;
        "t2 registry show --registry") _t2_files ;;
        "t2 registry show --plot") _t2_files ;;
        "t2 registry verify --registry") _t2_files ;;
        "t2 registry rm --registry") _t2_files ;;
        "t2 registry push --registry") _t2_files ;;
        "t2 registry pull --registry") _t2_files ;;
        "t2 registry gc --registry") _t2_files ;;
    esac
}

_t2_argument_values() {  # COMPREPLY: positional argument $2 (from 0) of $1
    case "$1 $2" in
        "t2 plot-run 0") _t2_files ;;
        "t2 dispatch 0") _t2_files ;;
        "t2 run 0") _t2_files ;;
    esac
}

_t2_completion() {
    local cur=${COMP_WORDS[COMP_CWORD]} path=t2 option= pending=0 npos=0 nargs=0 commands= options= word i
    COMPREPLY=()
    # Walk the words before the cursor: enter sub-commands, skip option values, count positionals.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if ((pending > 0)); then
            # bash splits --option=value at "=", a separator rather than a value
            [[ $word == = ]] || pending=$((pending - 1))
            continue
        fi
        _t2_option_nargs "$path" "$word"
        if ((nargs > 0)); then
            option=$word pending=$nargs
        elif [[ $word != -* ]]; then
            _t2_command "$path"
            if [[ " $commands " == *" $word "* ]]; then
                path="$path $word" npos=0
            else
                npos=$((npos + 1))
            fi
        fi
    done
    if ((pending > 0)); then
        [[ $cur == = ]] && cur=  # the cursor is just after --option=
        _t2_option_values "$path" "$option"
        return 0
    fi
    _t2_command "$path"
    if [[ $cur == -* ]]; then
        _t2_words "$options"
    elif [[ -n $commands ]]; then
        _t2_words "$commands"
    else
        _t2_argument_values "$path" "$npos"
    fi
    return 0
}

complete -F _t2_completion t2
