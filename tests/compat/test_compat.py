"""`python -m nbgrad.compat script.py`: PyTorch scripts of the kind tutorials are made of run
unedited on nbgrad and print what they print under torch; a script that uses something nbgrad
lacks is told which PyTorch API and which line.

Each script in `scripts/` runs twice in a subprocess, once with torch and once with the
runner; the two outputs must be the same text, with the numbers in it equal to a tolerance
(float32 training loops add in a different order in the two libraries).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"
ADDRESS = re.compile(r" at 0x[0-9a-f]+")  # object reprs: <AddBackward0 object at 0x7f...>
NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|inf")


def _run(args, cwd=None):
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    return done.returncode, done.stdout, done.stderr


def _same_output(ours, theirs, rtol=1e-3, atol=2e-4):
    """Compare line by line: the text between numbers must be equal, the numbers close."""
    # nbgrad names its own module in reprs (nbgrad.float32, nbgrad.Size): the rest is torch's.
    ours = ours.replace("nbgrad.", "torch.")
    ours, theirs = (ADDRESS.sub(" at 0x", text).splitlines() for text in (ours, theirs))
    assert len(ours) == len(theirs), f"{len(ours)} lines, torch printed {len(theirs)}"
    for n, (mine, reference) in enumerate(zip(ours, theirs), 1):
        where = f"line {n}:\n  nbgrad: {mine}\n  torch:  {reference}"
        assert NUMBER.split(mine) == NUMBER.split(reference), where
        for a, b in zip(NUMBER.findall(mine), NUMBER.findall(reference)):
            if a != b:
                assert abs(float(a) - float(b)) <= atol + rtol * abs(float(b)), where


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_script_prints_what_it_prints_under_torch(script):
    path = str(SCRIPTS / script)
    code, theirs, error = _run([path])
    assert code == 0, f"the script fails under torch itself:\n{error}"
    code, ours, error = _run(["-m", "nbgrad.compat", path])
    assert code == 0, f"{script} stops under nbgrad.compat:\n{error[-3000:]}"
    _same_output(ours, theirs)


@pytest.mark.parametrize("source, missing, line", [
    ("import torch\nx = torch.ones(2)\ny = torch.not_an_op(x)\n", "torch.not_an_op", 3),
    ("import torch\n\ntorch.ones(2).not_a_method()\n", "torch.Tensor.not_a_method", 3),
    ("from torch.nn import NotALayer\n", "torch.nn.NotALayer", 1),
    ("import torch.not_a_module\n", "torch.not_a_module", 1),
    ("import torch.nn.functional as F\nF.not_a_function\n", "torch.nn.functional.not_a_function", 2),
    ("import torchvision.models\nimport torchvision.transforms\n", "torchvision.transforms", 2),
    ("from torchvision.models import vgg16\n", "torchvision.models.vgg16", 1),
])
def test_a_missing_api_is_named_with_its_line(tmp_path, source, missing, line):
    script = tmp_path / "uses_missing.py"
    script.write_text(source)
    code, _, error = _run(["-m", "nbgrad.compat", str(script)])
    assert code == 1
    assert f"nbgrad lacks {missing}, which the script uses at" in error
    assert f"{script}:{line}:" in error


def test_the_scripts_own_errors_and_exit_status_pass_through(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys\nimport torch\nprint(sys.argv[1:], torch.ones(1).item())\n"
                      "raise ValueError('its own bug')\n")
    code, out, error = _run(["-m", "nbgrad.compat", str(script), "a", "b"])
    assert code == 1 and out == "['a', 'b'] 1.0\n"
    assert "ValueError: its own bug" in error and "stopped with ValueError" in error
    assert f"{script}:4:" in error
    script.write_text("import sys\nsys.exit(3)\n")
    assert _run(["-m", "nbgrad.compat", str(script)])[0] == 3


def test_torch_modules_are_nbgrad_modules(tmp_path):
    script = tmp_path / "modules.py"
    script.write_text("import torch, torch.nn, torch.nn.functional, torch.optim, torch.autograd\n"
                      "import torch.utils.data, nbgrad\n"
                      "assert torch is nbgrad and torch.nn.functional is nbgrad.nn.functional\n"
                      "assert torch.utils.data.DataLoader is nbgrad.utils.data.DataLoader\n"
                      "print(torch.__name__)\n")
    code, out, error = _run(["-m", "nbgrad.compat", str(script)])
    assert (code, out) == (0, "nbgrad\n"), error


def test_torchvision_models_are_nbgrad_models(tmp_path):
    script = tmp_path / "models.py"
    script.write_text("import torchvision, torchvision.models as models, nbgrad\n"
                      "from torchvision.models import ResNet18_Weights\n"
                      "assert models is nbgrad.models is torchvision.models\n"
                      "print(type(models.resnet18(num_classes=10).fc).__name__, "
                      "ResNet18_Weights.DEFAULT)\n")
    code, out, error = _run(["-m", "nbgrad.compat", str(script)])
    assert (code, out) == (0, "Linear ResNet18_Weights.IMAGENET1K_V1\n"), error
