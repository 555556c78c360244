#!/usr/bin/env bash
# The bash completion of dist/bash-completion/ knows exactly the commands
# and options the programs' --help lists, and completes their values
# sensibly: files after a FILE option, directories after a DIR, the listed
# words after an enumeration, nothing that looks like an option after any
# option that takes a value, and options again after a flag.
#
# The expected sets come from running the built programs, so a program that
# gains an option the completion does not know (or loses one) fails here.
# The completion function is driven as bash drives it: COMP_WORDS and
# COMP_CWORD set, COMPREPLY read back.  With the bash-completion package
# installed (or its bash_completion file named in $TW_BASH_COMPLETION),
# everything runs a second time with it loaded (its _filedir).
#
# usage: completion_test.sh BUILD_DIR SOURCE_DIR
set -u

build=${1:?usage: completion_test.sh BUILD_DIR SOURCE_DIR}
src=${2:?usage: completion_test.sh BUILD_DIR SOURCE_DIR}
completions=$src/dist/bash-completion

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Something for file and directory completion to find.
mkdir "$tmp/cwd" "$tmp/cwd/adir"
: >"$tmp/cwd/afile"

failures=0
checks=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# The words the completion offers, one a line, sorted.
#   complete_words SCRIPT WORD... (the last word is the one being completed)
bash_completion_lib=
complete_words() {
    local script=$1
    shift
    (cd "$tmp/cwd" && bash --norc --noprofile -c '
        [[ -n $1 ]] && source "$1" >/dev/null 2>&1
        source "$2" || exit 1
        shift 2
        fn=$(complete -p "$1" 2>/dev/null | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
        [[ -n $fn ]] || { echo "no completion function for $1" >&2; exit 1; }
        COMP_WORDS=("$@")
        COMP_CWORD=$(($# - 1))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        "$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        for w in "${COMPREPLY[@]}"; do printf "%s\n" "$w"; done
    ' _ "$bash_completion_lib" "$script" "$@") 2>&1 | sed 's:/$::' | sort -u
}

# The long options of one --help text, one a line: "OPTION<TAB>METAVAR".
# An option is one that starts a line indented by two spaces ("  --cert
# FILE  our certificate", "  --dns/--ip  names", "  --server, --client");
# its metavar is the upper-case word after it there or, failing that, the
# word after it in the usage lines ("[--dns NAME]..."); an enumeration in
# the usage ("[--purpose client|server]") wins over the column's "P".
# Lines indented further are descriptions.
help_options() {
    awk '
    BEGIN { usage = 1 }
    /^$/ { usage = 0 }
    usage {
        for (i = 1; i <= NF; i++) {
            w = $i; gsub(/^[[(]+|[])]+\.*$/, "", w)
            if (w !~ /^--[a-z0-9-]+$/) continue
            v = (i < NF) ? $(i + 1) : ""; gsub(/[][()]|\.\.\.$/, "", v)
            if (v != "" && v !~ /^-/ && v != "|" && !(w in umeta)) umeta[w] = v
        }
        next
    }
    /^  --/ {
        last = ""; n = 0
        for (i = 1; i <= NF; i++) {
            if ($i ~ /^--/) {
                m = split($i, parts, /[\/,]/); n = 0
                for (j = 1; j <= m; j++)
                    if (parts[j] ~ /^--[a-z0-9-]+$/) {
                        opt[parts[j]] = opt[parts[j]] ""; group[++n] = parts[j]
                        order[++count] = parts[j]
                    }
            } else if (n > 0 && $i ~ /^[A-Z][A-Z0-9_:]*(\|[A-Z-]+)?$/) {
                for (j = 1; j <= n; j++) opt[group[j]] = $i
                n = 0
            } else break
        }
    }
    END {
        for (k = 1; k <= count; k++) {
            o = order[k]; if (o in seen) continue; seen[o] = 1
            meta = opt[o] != "" ? opt[o] : (o in umeta ? umeta[o] : "")
            # An enumeration in the usage says more than its column name.
            if (o in umeta && umeta[o] ~ /^[a-z][a-z0-9-]*(\|[a-z0-9-]+)+$/) meta = umeta[o]
            printf "%s\t%s\n", o, meta
        }
    }'
}

# The words listed in the description of OPTION in a --help text: "ec-p256
# (default), ec-p384, ed25519, ... or rsa-4096", "text (default) or json:
# one object per line".  The list ends with the word after "or".
help_list() {
    awk -v o="$1" '
    /^  [^ -]/ || /^$/ { inside = 0 }
    /^  --/ { inside = ($1 == o); if (inside) { $1 = ""; $2 = "" } }
    inside { print }' | sed 's/(default)//g' | tr -s ' ' '\n' |
        awk '/^$/ { next }
             { w = $0; gsub(/[,.:;]+$/, "", w) } w == "" { next }
             w == "or" { last = 1; next }
             { print w } last { exit }' | sort -u
}

# The commands of a --help text: "  init DIR    create...", "  fetch   print".
help_commands() {
    grep -E '^  [a-z][a-z0-9-]*( [A-Z]+)?  ' | awk '{ print $1 }' | sort -u
}

# Compares two sorted lists; says what one has and the other lacks.
same_set() { # WHAT EXPECTED_FILE GOT_FILE
    checks=$((checks + 1))
    if ! cmp -s "$2" "$3"; then
        fail "$1"
        comm -23 "$2" "$3" | sed 's/^/    --help lists, completion lacks: /'
        comm -13 "$2" "$3" | sed 's/^/    completion offers, --help lacks: /'
    fi
}

has_word() { grep -qxF -- "$2" <<<"$1"; }
# A list of lines as one line, for a message.
flat() { paste -sd" " - <<<"$1"; }

# Checks one program, or one command of it: the option set, then each
# option's value.  check_options SCRIPT HELP_FILE WORD... (the program and
# command words before the option)
check_options() {
    local script=$1 help=$2
    shift 2
    local ctx="$*" table=$tmp/table
    help_options <"$help" >"$table"
    cut -f1 "$table" | sort -u >"$tmp/expected"
    complete_words "$script" "$@" - >"$tmp/got"
    same_set "\`$ctx -<TAB>\` offers the options of \`$ctx --help\`" \
        "$tmp/expected" "$tmp/got"

    local opt meta got want
    while IFS=$'\t' read -r opt meta; do
        checks=$((checks + 1))
        if [[ -z $meta ]]; then
            # A flag: the next word is an option again.
            got=$(complete_words "$script" "$@" "$opt" -)
            has_word "$got" "$opt" ||
                fail "\`$ctx $opt -<TAB>\`: $opt takes no value, but the options are not offered"
            continue
        fi
        for form in space equals; do
            if [[ $form == space ]]; then
                got=$(complete_words "$script" "$@" "$opt" "")
            else
                got=$(complete_words "$script" "$@" "$opt" = "")
            fi
            if grep -q -- '^-.' <<<"$got"; then
                fail "\`$ctx $opt <TAB>\` ($form): $opt takes $meta, but options are offered"
            fi
            case $meta in
            *FILE*)
                has_word "$got" afile ||
                    fail "\`$ctx $opt <TAB>\` ($form): $meta, but no file is offered (got: $(flat "$got"))" ;;
            *DIR)
                { has_word "$got" adir && ! has_word "$got" afile; } ||
                    fail "\`$ctx $opt <TAB>\` ($form): $meta, but not just directories (got: $(flat "$got"))" ;;
            *[a-z]*\|*)
                want=$(tr '|' '\n' <<<"$meta" | sort -u)
                [[ $got == "$want" ]] ||
                    fail "\`$ctx $opt <TAB>\` ($form): $meta, got: $(flat "$got")" ;;
            TYPE | REASON | LEVEL | FORMAT)
                want=$(help_list "$opt" <"$help")
                [[ $got == "$want" ]] ||
                    fail "\`$ctx $opt <TAB>\` ($form): --help lists $(flat "$want"), got: $(flat "$got")" ;;
            *)
                ! has_word "$got" afile ||
                    fail "\`$ctx $opt <TAB>\` ($form): $meta is not a file, but files are offered" ;;
            esac
        done
    done <"$table"
}

# The top level of a program with commands: the commands, and the options
# the program itself answers (--help; --version when it has one).
check_top() { # SCRIPT PROGRAM_PATH NAME
    local script=$1 prog=$2 name=$3
    "$prog" --help >"$tmp/help" 2>&1 || fail "$name --help exits $?"
    help_commands <"$tmp/help" >"$tmp/expected"
    grep -q "$name help COMMAND" "$tmp/help" && echo help >>"$tmp/expected"
    sort -u -o "$tmp/expected" "$tmp/expected"
    complete_words "$script" "$name" "" >"$tmp/got"
    same_set "\`$name <TAB>\` offers the commands of \`$name --help\`" \
        "$tmp/expected" "$tmp/got"

    { help_options <"$tmp/help" | cut -f1; echo --help
      "$prog" --version >/dev/null 2>&1 && echo --version; } | sort -u >"$tmp/expected"
    complete_words "$script" "$name" - >"$tmp/got"
    same_set "\`$name -<TAB>\` offers --help, --version and the options of \`$name --help\`" \
        "$tmp/expected" "$tmp/got"
}

run_all() {
    local ca=$build/src/ca/twoway-ca inv=$build/src/invoice/invoice-server
    local mail=$build/src/mail/mail-server cmd got

    # twoway-ca: its commands, each one's options, and the words that are
    # not options (init DIR, inspect FILE, verify CERTFILE, help COMMAND).
    check_top "$completions/twoway-ca" "$ca" twoway-ca
    "$ca" --help | help_commands >"$tmp/commands"
    while read -r cmd; do
        "$ca" "$cmd" --help >"$tmp/help.$cmd" 2>&1 ||
            fail "twoway-ca $cmd --help exits $?"
        check_options "$completions/twoway-ca" "$tmp/help.$cmd" twoway-ca "$cmd"
    done <"$tmp/commands"
    checks=$((checks + 1))
    got=$(complete_words "$completions/twoway-ca" twoway-ca init "")
    { has_word "$got" adir && ! has_word "$got" afile; } ||
        fail "\`twoway-ca init <TAB>\`: DIR, but not just directories (got: $(flat "$got"))"
    for cmd in inspect verify; do
        checks=$((checks + 1))
        got=$(complete_words "$completions/twoway-ca" twoway-ca "$cmd" "")
        has_word "$got" afile ||
            fail "\`twoway-ca $cmd <TAB>\`: a certificate file, but no file is offered (got: $(flat "$got"))"
    done
    complete_words "$completions/twoway-ca" twoway-ca help "" >"$tmp/got"
    { cat "$tmp/commands"; echo help; } | sort -u >"$tmp/expected"
    same_set "\`twoway-ca help <TAB>\` offers the commands" "$tmp/expected" "$tmp/got"

    # invoice-server: one level of options.
    "$inv" --help >"$tmp/help.inv" 2>&1 || fail "invoice-server --help exits $?"
    check_options "$completions/invoice-server" "$tmp/help.inv" invoice-server

    # mail-server: its commands and each one's options.
    check_top "$completions/mail-server" "$mail" mail-server
    "$mail" --help | help_commands >"$tmp/commands"
    while read -r cmd; do
        "$mail" "$cmd" --help >"$tmp/help.$cmd" 2>&1 ||
            fail "mail-server $cmd --help exits $?"
        check_options "$completions/mail-server" "$tmp/help.$cmd" mail-server "$cmd"
    done <"$tmp/commands"
}

echo "== without the bash-completion package (compgen)"
run_all
for lib in ${TW_BASH_COMPLETION:-} /usr/share/bash-completion/bash_completion \
           /etc/bash_completion; do
    if [[ -r $lib ]]; then
        echo "== with the bash-completion package ($lib: _filedir)"
        bash_completion_lib=$lib
        run_all
        break
    fi
done

if ((failures > 0)); then
    echo "$failures of $checks checks failed"
    exit 1
fi
echo "all $checks checks passed"
