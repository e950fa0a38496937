#!/usr/bin/env bash
# Lower bounds: install editjudge into a fresh virtualenv with the LOWEST version of every dependency
# that pyproject.toml claims (each `name>=X` becomes `name==X`, the `lora` extra included), import it
# from outside the checkout, and run the tests that exercise torch, transformers, diffusers, accelerate
# and peft: the judge (tiny Qwen3-VL and Qwen2.5-VL, LoRA), rubrics and the tiny editors.
#
#   bash tests/lower_bounds.sh            # .ci/run runs it after `make test` (the tiny models are built)
#
# EDITJUDGE_LOWER_BOUNDS_VENV: where the venv goes (default: a new temporary folder, removed after).
# pip's own cache (PIP_CACHE_DIR, default ~/.cache/pip) keeps the downloads between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
started=$(date +%s)

if [ -n "${EDITJUDGE_LOWER_BOUNDS_VENV:-}" ]; then
  VENV=$EDITJUDGE_LOWER_BOUNDS_VENV
  rm -rf "$VENV"
else
  WORK=$(mktemp -d)
  VENV=$WORK/venv
fi

LOWER=$(mktemp)
trap 'rm -f "$LOWER"; [ -n "${WORK:-}" ] && rm -rf "$WORK"' EXIT
# The lower bounds, read from pyproject.toml so that they cannot drift from what it claims.
"$PYTHON" - "$LOWER" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
lines = []
for spec in project["dependencies"] + project["optional-dependencies"]["lora"]:
    match = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", spec)
    if not match:
        sys.exit(f"lower_bounds.sh: {spec!r} in pyproject.toml has no >= lower bound")
    lines.append(f"{match[1]}=={match[2]}")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
EOF
echo "lower bounds: $(tr '\n' ' ' < "$LOWER")"

"$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
# (pip's notes about this machine's partial local indexes are filtered out of the log.)
"$PY" -m pip install --quiet -c "$LOWER" "$ROOT[lora]" "pytest==$(sed -n 's/^pytest==//p' constraints.txt)" \
  2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
# Prove the pins took: every installed version equals its lower bound (up to a local label like +cpu).
"$PY" - "$LOWER" <<'EOF'
import importlib.metadata as md, sys
from packaging.version import Version
wrong = []
for line in open(sys.argv[1]).read().split():
    name, version = line.split("==")
    installed = md.version(name)
    if Version(Version(installed).public) != Version(version):
        wrong.append(f"{name} {installed} (wanted {version})")
if wrong:
    sys.exit("lower_bounds.sh: not the lower bounds: " + ", ".join(wrong))
EOF

# PyPI's torchvision wheels are built against PyPI's CUDA torch; beside a CPU-only torch build (this
# machine's local torch 2.13.0+cpu) their C ops (nms, roi_align: detection ops editjudge never calls)
# cannot load, and torchvision 0.28 then fails at import on its unguarded fake-kernel registration
# ('operator torchvision::nms does not exist'). transformers needs torchvision's Python transforms (the
# Qwen-VL video processors), not those ops: here, and only here, the two op schemas are declared before
# torchvision imports, so that the rest of torchvision is the real one.
if ! import_error=$("$PY" -c "import torchvision" 2>&1); then
  if [[ $import_error == *"operator torchvision::nms does not exist"* ]]; then
    echo "lower_bounds.sh: torchvision's C ops do not load beside $("$PY" -c 'import torch; print(torch.__version__)'); declaring nms/qnms for the test venv"
    cat > "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/sitecustomize.py" <<'EOF'
import torch
_lib = torch.library.Library("torchvision", "DEF")  # tests/lower_bounds.sh: see the comment there
_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
EOF
  fi
  "$PY" -c "import torchvision"
fi

# The installed package, imported from outside the checkout.
(cd "$VENV" && "$PY" -c "
import editjudge, torch, torchvision, transformers, diffusers, accelerate, peft
from editjudge import Qwen3VLRewardModel
print('editjudge', editjudge.__file__)
print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'transformers', transformers.__version__,
      'diffusers', diffusers.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__)
")
echo "lower_bounds.sh: venv ready in $(( $(date +%s) - started ))s"

# The tests load the pinned tiny models (the same bytes as under `make test`), so the lower bounds are
# checked on the very weights the pinned versions are.
OMP_NUM_THREADS=1 "$PY" -m pytest -q -p no:cacheprovider \
  tests/test_reward_model.py tests/test_judges_people_use.py tests/test_rubrics.py tests/test_editors.py \
  tests/test_pinned_models.py
echo "lower_bounds.sh: done in $(( $(date +%s) - started ))s"
