"""The text of t2's static bash, zsh and fish completion scripts, written from a command tree.

What each position offers, in all three shells: a command's own options (only once the word starts
with `-`; global options only before the command name, where the parser accepts them), its
sub-commands, a fixed set of choices (Enum / Literal), file names for Path values (folder names
where only a folder is accepted), and nothing for free text.
"""

from __future__ import annotations

import re
import shlex

from t2cli.cli.command_tree import PROG, CommandSpec, OptionSpec, ValueSpec

REGENERATE_COMPLETIONS = "python -m t2cli.cli.completions completions/"


def _positions(command: CommandSpec) -> list[tuple[str, ValueSpec]]:
    """(index pattern, value) per positional word: "0", "1"..., and "*" for a trailing variadic argument."""
    out: list[tuple[str, ValueSpec]] = []
    for argument in command.arguments:
        if argument.nargs < 0:
            out.append(("*", argument.value))
            break
        out.extend((str(len(out)), argument.value) for _ in range(argument.nargs))
    return out


def _header(comment: str, install: str) -> str:
    return (
        f"{comment} Static {PROG} completion, generated from its command tree by t2cli/cli/completions.py.\n"
        f"{comment} Do not edit: after changing commands or options, regenerate every script with\n"
        f"{comment}     {REGENERATE_COMPLETIONS}\n"
        f"{comment} Install: {install}\n"
    )


_BASH_BODY = """
# The word being completed is $cur, a local of _{prog}_completion that the helpers below see.
_{prog}_words() {{
    COMPREPLY=($(compgen -W "$1" -- "$cur"))
}}

_{prog}_files() {{
    compopt -o filenames 2>/dev/null  # bash >= 4: a / after folders, special characters quoted
    local IFS=$'\\n'
    COMPREPLY=($(compgen -f -- "$cur"))
}}

_{prog}_dirs() {{
    compopt -o filenames 2>/dev/null
    local IFS=$'\\n'
    COMPREPLY=($(compgen -d -- "$cur"))
}}

{data}
_{prog}_completion() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} path={prog} option= pending=0 npos=0 nargs=0 commands= options= word i
    COMPREPLY=()
    # Walk the words before the cursor: enter sub-commands, skip option values, count positionals.
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        if ((pending > 0)); then
            # bash splits --option=value at "=", a separator rather than a value
            [[ $word == = ]] || pending=$((pending - 1))
            continue
        fi
        _{prog}_option_nargs "$path" "$word"
        if ((nargs > 0)); then
            option=$word pending=$nargs
        elif [[ $word != -* ]]; then
            _{prog}_command "$path"
            if [[ " $commands " == *" $word "* ]]; then
                path="$path $word" npos=0
            else
                npos=$((npos + 1))
            fi
        fi
    done
    if ((pending > 0)); then
        [[ $cur == = ]] && cur=  # the cursor is just after --option=
        _{prog}_option_values "$path" "$option"
        return 0
    fi
    _{prog}_command "$path"
    if [[ $cur == -* ]]; then
        _{prog}_words "$options"
    elif [[ -n $commands ]]; then
        _{prog}_words "$commands"
    else
        _{prog}_argument_values "$path" "$npos"
    fi
    return 0
}}

complete -F _{prog}_completion {prog}
"""


def _bash_value(value: ValueSpec) -> str:
    if value.kind == "choice":
        return f'_{PROG}_words "{" ".join(value.choices)}"'
    return {"file": f"_{PROG}_files", "dir": f"_{PROG}_dirs", "text": ""}[value.kind]


def _bash_case(function: str, comment: str, subject: str, clauses: list[str], default: str | None = None) -> str:
    lines = [f"_{PROG}_{function}() {{  # {comment}", f"    case {subject} in"]
    lines += [f"        {clause}" for clause in clauses]
    if default is not None:
        lines.append(f"        *) {default} ;;")
    return "\n".join([*lines, "    esac", "}", ""])


def bash_script(tree: CommandSpec) -> str:
    commands, nargs, values, arguments = [], [], [], []
    for command in tree.walk():
        key = command.key
        names = " ".join(c.path[-1] for c in command.commands)
        flat = " ".join(n for o in command.options for n in o.names)
        commands.append(f'"{key}") commands="{names}" options="{flat}" ;;')
        for option in command.options:
            pattern = " | ".join(f'"{key} {name}"' for name in option.names)
            if option.nargs:
                nargs.append(f"{pattern}) nargs={option.nargs} ;;")
            if option.value is not None and option.value.kind != "text":
                values.append(f"{pattern}) {_bash_value(option.value)} ;;")
        positions = _positions(command)
        if any(value.kind != "text" for _, value in positions):
            # every position gets a clause, so a free-text one is not caught by a later "*" pattern
            for index, value in positions:
                subject = f'"{key} "*' if index == "*" else f'"{key} {index}"'
                arguments.append(f"{subject}) {_bash_value(value)} ;;")
    data = "\n".join(
        [
            _bash_case("command", "sets commands and options of command path $1", "$1", commands),
            _bash_case("option_nargs", "sets nargs: values option $2 of command $1 takes", '"$1 $2"', nargs, "nargs=0"),
            _bash_case("option_values", "COMPREPLY: values of option $2 of command $1", '"$1 $2"', values),
            _bash_case("argument_values", "COMPREPLY: positional argument $2 (from 0) of $1", '"$1 $2"', arguments),
        ]
    )
    install = f"source it from ~/.bashrc, or copy it to ~/.local/share/bash-completion/completions/{PROG}"
    return _header("#", install) + _BASH_BODY.format(prog=PROG, data=data)


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_description(text: str) -> str:
    return re.sub(r"([\\\[\]:])", r"\\\1", text)


def _zsh_action(value: ValueSpec) -> str:
    if value.kind == "choice":
        return f"({' '.join(value.choices)})"
    return {"file": "_files", "dir": "_files -/", "text": " "}[value.kind]


def _zsh_option_specs(option: OptionSpec) -> list[str]:
    exclusive = f"({' '.join(option.names)})" if len(option.names) > 1 and not option.multiple else ""
    repeat = "*" if option.multiple else ""
    values = "".join(f":{option.value.label}:{_zsh_action(option.value)}" for _ in range(option.nargs))
    specs = []
    for name in option.names:
        # --long=: the value may follow "=" or be the next word; -s+: attached or the next word
        suffix = ("=" if name.startswith("--") else "+") if option.nargs else ""
        specs.append(_zsh_quote(f"{exclusive}{repeat}{name}{suffix}[{_zsh_description(option.help)}]{values}"))
    return specs


def _zsh_function(command: CommandSpec) -> str:
    name = "_" + "_".join(part.replace("-", "_") for part in command.path)
    specs = [spec for option in command.options for spec in _zsh_option_specs(option)]
    if not command.commands:
        for index, value in _positions(command):
            position = "*" if index == "*" else str(int(index) + 1)
            specs.append(_zsh_quote(f"{position}:{value.label}:{_zsh_action(value)}"))
        lines = [f"{name}() {{", "    _arguments -s -S" + "".join(f" \\\n        {s}" for s in specs), "}", ""]
        return "\n".join(lines)
    specs += ["': :->command'", "'*:: :->argument'"]
    described = [_zsh_quote(f"{c.path[-1]}:{c.help}") for c in command.commands]
    cases = [
        f"                {c.path[-1]}) {name}_{c.path[-1].replace('-', '_')} && ret=0 ;;" for c in command.commands
    ]
    lines = [
        f"{name}() {{",
        "    local curcontext=$curcontext state state_descr line ret=1",
        "    typeset -A opt_args",
        "    _arguments -C -s -S" + "".join(f" \\\n        {s}" for s in specs) + " && ret=0",
        "    case $state in",
        "        command)",
        "            local -a commands",
        "            commands=(",
        *(f"                {d}" for d in described),
        "            )",
        f"            _describe -t commands '{command.key} command' commands && ret=0",
        "            ;;",
        "        argument)",
        f"            curcontext=${{curcontext%:*:*}}:{'-'.join(command.path)}-$words[1]:",
        "            case $words[1] in",
        *cases,
        "            esac",
        "            ;;",
        "    esac",
        "    return ret",
        "}",
        "",
    ]
    return "\n".join(lines)


def zsh_script(tree: CommandSpec) -> str:
    install = f"copy it as _{PROG} into a folder on $fpath (before compinit), or source it after compinit"
    functions = "\n".join(_zsh_function(command) for command in tree.walk())
    return (
        f"#compdef {PROG}\n"
        + _header("#", install)
        + "\n"
        + functions
        + "\n# Autoloaded from $fpath, complete now; sourced, register the function.\n"
        + "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n"
        + f'    _{PROG} "$@"\n'
        + "else\n"
        + f"    compdef _{PROG} {PROG}\n"
        + "fi\n"
    )


_FISH_BODY = """
# Prints the command path at the cursor, the values still owed to an option, and the positional index.
function __{prog}_state
    set -l words (commandline -opc)
    set -e words[1]
    set -l path {prog}
    set -l pending 0
    set -l npos 0
    for word in $words
        if test $pending -gt 0
            set pending (math $pending - 1)
            continue
        end
        switch "$path $word"
{switch}
            case '*'
                string match -q -- '-*' $word; or set npos (math $npos + 1)
        end
    end
    printf '%s\\n' $path $pending $npos
end

function __{prog}_in --argument-names want --description 'At command path $want (options and their values)'
    test (__{prog}_state)[1] = "$want"
end

function __{prog}_at --argument-names want --description 'At command path $want, no option value owed'
    set -l state (__{prog}_state)
    test "$state[1]" = "$want"; and test $state[2] -eq 0
end

function __{prog}_arg --argument-names want first last --description 'At positional $first..$last (-1: no end) of $want'
    set -l state (__{prog}_state)
    test "$state[1]" = "$want"; and test $state[2] -eq 0; and test $state[3] -ge $first
    and begin; test $last -lt 0; or test $state[3] -le $last; end
end

complete -c {prog} -f
{completes}
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_value(value: ValueSpec) -> str:
    if value.kind == "choice":
        return f"-a {_fish_quote(' '.join(value.choices))}"
    return {"file": "-F", "dir": "-a '(__fish_complete_directories)'", "text": ""}[value.kind]


def _fish_option(command: CommandSpec, option: OptionSpec) -> str:
    parts = [f"complete -c {PROG} -n {_fish_quote(f'__{PROG}_in {shlex.quote(command.key)}')}"]
    for name in option.names:
        if name.startswith("--"):
            parts.append(f"-l {name[2:]}")
        else:
            parts.append(f"-{'s' if len(name) == 2 else 'o'} {name[1:]}")
    if option.value is not None:
        parts.append("-r" if option.value.kind == "file" else "-x")
        parts.append(_fish_value(option.value))
    if option.help:
        parts.append(f"-d {_fish_quote(option.help)}")
    return " ".join(p for p in parts if p)


def fish_script(tree: CommandSpec) -> str:
    switch: list[str] = []
    completes: list[str] = []
    for command in tree.walk():
        key = shlex.quote(command.key)
        if command.commands:
            patterns = " ".join(_fish_quote(c.key) for c in command.commands)
            switch += [
                f"            case {patterns}",
                '                set path "$path $word"',
                "                set npos 0",
            ]
        for option in command.options:
            if option.nargs:
                patterns = " ".join(_fish_quote(f"{command.key} {n}") for n in option.names)
                switch += [f"            case {patterns}", f"                set pending {option.nargs}"]
        completes.append(f"\n# {command.key}")
        for sub in command.commands:
            condition = _fish_quote(f"__{PROG}_at {key}")
            completes.append(f"complete -c {PROG} -n {condition} -a {sub.path[-1]} -d {_fish_quote(sub.help)}")
        completes += [_fish_option(command, option) for option in command.options]
        for index, value in _positions(command):
            if value.kind != "text":
                first, last = (int(index), int(index)) if index != "*" else (len(_positions(command)) - 1, -1)
                condition = _fish_quote(f"__{PROG}_arg {key} {first} {last}")
                completes.append(f"complete -c {PROG} -n {condition} {_fish_value(value)}")
    install = f"copy it to ~/.config/fish/completions/{PROG}.fish"
    body = _FISH_BODY.format(prog=PROG, switch="\n".join(switch), completes="\n".join(completes))
    return _header("#", install) + body
