#!/usr/bin/env bash
# Mutation testing of the modules that decide (see tests/MUTATION.md), by hand.
#
#   bash tests/mutation/run.sh                      # every module in [tool.mutmut] only_mutate
#   bash tests/mutation/run.sh 'kasctl.decide.privileges*' # one module (mutmut's name patterns)
#   bash tests/mutation/run.sh 'kasctl.inside.entrypoint*' 'kasctl.inside.subids*'
#
# mutmut 3 runs in a venv of its own ($MUTMUT_VENV, made here if missing), never in
# the project's. It works on a copy of the tree in $MUTMUT_WORKDIR, so its mutants/
# never lands in the checkout; that copy's mutants/ is kept, so a rerun only tests
# what changed. One worker by default ($MUTMUT_CHILDREN): the machine is shared.
# At the end it prints, per module, mutants / killed / survived and the kill rate,
# then every surviving mutant's name (`mutmut show NAME` in $MUTMUT_WORKDIR shows it).
set -euo pipefail

# Mutated code runs in-process in the unit tests, the entrypoint's included,
# which as root could change the host (a mutant once chowned /usr/bin/newuidmap).
if [ "$(id -u)" = 0 ] && [ "${KASCTL_MUTMUT_AS_ROOT:-}" != yes ]; then
    echo "run.sh: run mutation tests as a normal user (KASCTL_MUTMUT_AS_ROOT=yes to insist)" >&2
    exit 2
fi

repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${MUTMUT_VENV:-/opt/mutmut-venv}
work=${MUTMUT_WORKDIR:-${TMPDIR:-/tmp}/kasctl-mutmut}
children=${MUTMUT_CHILDREN:-1}

if [ ! -x "$venv/bin/mutmut" ]; then
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'mutmut>=3.8,<4' pytest hypothesis pyyaml jsonschema 'kubernetes-validate>=1.33'
fi

# a fresh copy of the checkout (tracked and new files), keeping the old mutants/
mkdir -p "$work"
find "$work" -mindepth 1 -maxdepth 1 ! -name mutants -exec rm -rf {} +
# (safe.directory: the checkout may belong to another user than the one running this)
(cd "$repo" && git -c safe.directory="$repo" ls-files -co --exclude-standard -z \
    | tar --null -T - -cf -) \
    | tar -xf - -C "$work"
cd "$work"
# pytest's temp dirs of its own: another run by the same user may leave trees its
# clean-up of old temp dirs trips on
mkdir -p "$work/tmp"
export TMPDIR="$work/tmp"
# tests that start a python of their own (python -c 'import kasctl...') get the mutated
# copy, and tests/mutation/boot.py lets such a child find mutmut's config
export KASCTL_MUTMUT_ROOT="$work/mutants" KASCTL_MUTMUT_BOOT="$work/tests/mutation/boot.py"
# mutants/ must exist before python starts: a PYTHONPATH entry that is missing then is
# cached as holding nothing, and a first run's tests then fail to import (`No module
# named 'tests'`, mutmut: BadTestExecutionCommandsException)
mkdir -p "$work/mutants"
export PYTHONPATH="$work/mutants${PYTHONPATH:+:$PYTHONPATH}"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo 'import os; b = os.environ.get("KASCTL_MUTMUT_BOOT"); b and exec(open(b).read())' \
    >"$site/kasctl_mutmut_boot.pth"

start=$(date +%s)
status=0
"$venv/bin/mutmut" run --max-children "$children" "$@" || status=$?
echo "wall time: $(($(date +%s) - start)) s (mutmut run --max-children $children $*)"

"$venv/bin/mutmut" results --all true >results.txt || true
"$venv/bin/python" - "$@" <<'EOF' || status=$?
import fnmatch
import re
import sys
from collections import Counter

patterns = sys.argv[1:] or ["*"]
counts: dict[str, Counter[str]] = {}
survivors = []
for line in open("results.txt"):
    m = re.match(r"\s*(\S+)__mutmut_\d+: (.+)$", line)
    if not m:
        continue
    name = line.strip().split(": ")[0]
    if not any(fnmatch.fnmatch(name, p) for p in patterns):
        continue
    module = m.group(1).split(".x_")[0].split(".xǁ")[0]
    status = m.group(2).strip()
    counts.setdefault(module, Counter())[status] += 1
    if status in ("survived", "no tests"):
        survivors.append(name)
total = Counter()
print(f"{'module':28} {'mutants':>8} {'killed':>7} {'survived':>9} {'other':>6} {'kill rate':>9}")
for module, c in sorted(counts.items()):
    total += c
    n = sum(c.values())
    other = n - c["killed"] - c["survived"]
    tested = c["killed"] + c["survived"]
    rate = f"{100 * c['killed'] / tested:.1f}%" if tested else "-"
    print(f"{module:28} {n:8} {c['killed']:7} {c['survived']:9} {other:6} {rate:>9}")
n = sum(total.values())
tested = total["killed"] + total["survived"]
rate = f"{100 * total['killed'] / tested:.1f}%" if tested else "-"
other = n - total["killed"] - total["survived"]
print(f"{'total':28} {n:8} {total['killed']:7} {total['survived']:9} {other:6} {rate:>9}")
others = {k: v for k, v in total.items() if k not in ("killed", "survived")}
if others:
    print("other outcomes:", dict(others))
if survivors:
    print("\nsurvived:")
    print("\n".join(f"  {s}" for s in survivors))

# Every survivor (and mutant no test reaches) must be explained in tests/MUTATION.md,
# under its module's heading (`### kasctl/decide/plan.py`), as "`function` 3, 7, 12-14"
# (a method as `Class.method`).
sections: dict[str, str] = {}
current = None
for line in open("tests/MUTATION.md"):
    heading = re.match(r"### (kasctl/\S+)\.py\s*$", line)
    if heading:
        current = heading.group(1).replace("/", ".")
        sections[current] = ""
    elif line.startswith("## "):
        current = None
    elif current:
        sections[current] += line


def explained(name: str) -> bool:
    m = re.match(r"(.+?)\.(x_|xǁ)(.+)__mutmut_(\d+)$", name)
    if not m:
        return False
    module, kind, func, number = m.groups()
    func = func.replace("ǁ", ".") if kind == "xǁ" else func
    text = sections.get(module, "")
    # numbers after the name, each maybe followed by what it changes in parentheses
    numbers = r"`((?:[\s,]*(?:and )?\d+(?:[-–]\d+)?(?:\s*\([^()]*\))?)+)"
    names = {func, func.rpartition(".")[2]}  # `Class.method`, or the method among its class's
    for hit in (h for n in names for h in re.finditer("`" + re.escape(n) + numbers, text)):
        listed = re.sub(r"\([^()]*\)", "", hit.group(1))
        for part in re.findall(r"\d+(?:[-–]\d+)?", listed):
            lo, _, hi = part.replace("–", "-").partition("-")
            if int(lo) <= int(number) <= int(hi or lo):
                return True
    return False


unexplained = [s for s in survivors if not explained(s)]
print(f"\nunexplained (not in tests/MUTATION.md): {len(unexplained)}")
print("\n".join(f"  {s}" for s in unexplained))
sys.exit(1 if unexplained else 0)
EOF
exit "$status"
