"""With `reward_model.bf16` the reward model holds its decoder's linear weights in bf16 and lets go of the
model file's memory map: in float32 the map's pages that a pass reads (all of them) count in the
process's memory; after the conversion none stay mapped. Each case in a process of its own, since other
tests map the same file."""

import json
import subprocess
import sys

from conftest import REPO

PROBE = """
import json, sys
from esc.config import RewardModelConfig
from esc.models import ensure_embedded_cached
from learner.reward_model import RewardModel

model = RewardModel.from_config(RewardModelConfig(backbone="smollm2-135m", bf16=sys.argv[1] == "1"))
model.embed(["I lost my job and I cannot tell my family."])  # a pass reads every weight
path = str(ensure_embedded_cached() / "model.safetensors")
mapped_kb, inside = 0, False
for line in open("/proc/self/smaps"):
    first = line.split()[0]
    if "-" in first and not first.endswith(":"):  # a mapping's header line: address range ... path
        inside = line.rstrip().endswith(path)
    elif inside and first == "Rss:":
        mapped_kb += int(line.split()[1])
dtypes = {}
for p in model.lm.parameters():
    dtypes[str(p.dtype)] = dtypes.get(str(p.dtype), 0) + p.numel() * p.element_size()
print(json.dumps({"mapped_mb": mapped_kb / 1024, "bytes": dtypes}))
"""


def probe(bf16: bool) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "1" if bf16 else "0"], cwd=REPO, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bf16_reward_model_holds_half_the_linear_bytes_and_none_of_the_file_map():
    full, half = probe(False), probe(True)
    assert full["mapped_mb"] > 400  # float32: the weights are the file's pages (SmolLM2-135M: 513 MB)
    assert half["mapped_mb"] == 0
    assert set(full["bytes"]) == {"torch.float32"}
    linear = full["bytes"]["torch.float32"] - half["bytes"]["torch.float32"]  # what moved to bf16
    assert half["bytes"]["torch.bfloat16"] == linear // 2 and linear > 400e6
