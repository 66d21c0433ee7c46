"""Write ``sigreg.json`` and ``mmcr.json``: fixed float64 inputs and what the official code returns on them.

Run once, by hand, against checkouts of the official repositories (see README.md for the commits)::

    python tests/golden/generate_sigreg_mmcr.py --lejepa PATH/TO/lejepa --mmcr PATH/TO/mmcr --out tests/golden

The test suite never runs this script; it reads the JSON files it wrote. The official code is imported from the
checkouts as it is, with the two substitutions stated below (no other change):

- ``EppsPulley`` and the ``SIGReg`` class of ``MINIMAL.md`` build their knots and weights in float32 whatever the
  input dtype; for the float64 values their source is executed with ``dtype=torch.float32`` replaced by
  ``dtype=torch.float64`` (the float32 run of the ``drawn`` case uses ``EppsPulley`` unchanged).
- The ``SIGReg`` class of ``MINIMAL.md`` draws its directions with ``torch.randn(D, 256, device="cuda")``; it is
  executed on the CPU with ``torch.randn`` returning the case's directions instead, so that both official
  implementations see the same directions.
"""

import argparse
import importlib
import json
import pathlib
import re
import sys
import types


def _float64_epps_pulley(lejepa_root: pathlib.Path):
    import torch

    source = (lejepa_root / "lejepa" / "univariate" / "epps_pulley.py").read_text()
    assert source.count("dtype=torch.float32") == 2
    module = types.ModuleType("lejepa.univariate.epps_pulley_float64")
    module.__package__ = "lejepa.univariate"
    exec(compile(source.replace("dtype=torch.float32", "dtype=torch.float64"), "epps_pulley.py", "exec"), vars(module))
    return module.EppsPulley, torch


def _minimal_md(lejepa_root: pathlib.Path) -> tuple[str, str, str]:
    """The ``SIGReg`` class and the two loss lines of the training loop of ``MINIMAL.md``."""
    text = (lejepa_root / "MINIMAL.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    sigreg_block = next(block for block in blocks if "class SIGReg" in block)
    sigreg_class = sigreg_block[sigreg_block.index("class SIGReg") : sigreg_block.index("class ViTEncoder")]
    loop = next(block for block in blocks if "inv_loss =" in block)
    invariance_line = next(line.strip() for line in loop.splitlines() if "inv_loss =" in line)
    loss_line = next(line.strip() for line in loop.splitlines() if "lejepa_loss =" in line)
    return sigreg_class, invariance_line, loss_line


def _rows(tensor) -> list:
    return tensor.tolist()


def sigreg_cases(lejepa_root: pathlib.Path) -> dict:
    sys.path.insert(0, str(lejepa_root))
    import torch

    slicing = importlib.import_module("lejepa.multivariate.slicing")
    epps_pulley_float32 = importlib.import_module("lejepa.univariate.epps_pulley")
    EppsPulley64, _ = _float64_epps_pulley(lejepa_root)
    sigreg_class, invariance_line, loss_line = _minimal_md(lejepa_root)

    def minimal_sigreg(knots: int, directions):
        namespace = {"torch": torch}
        exec(sigreg_class.replace('"cuda"', '"cpu"').replace("dtype=torch.float32", "dtype=torch.float64"), namespace)
        module = namespace["SIGReg"](knots=knots)
        real_randn = torch.randn

        def forward(proj):
            torch.randn = lambda *args, **kwargs: directions.clone()
            try:
                return module(proj)
            finally:
                torch.randn = real_randn

        return forward

    generator = torch.Generator().manual_seed(20251111)

    def normal(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    cases = []
    specs = [
        ("small", (8, 6), 5, 17, 3.0, 1.0),
        ("views", (3, 11, 5), 7, 9, 4.0, 1.0),
        ("odd", (37, 70), 16, 17, 3.0, 0.7),
        ("far", (24, 4), 6, 17, 3.0, 2.5),  # far from N(0, 1): larger statistic
    ]
    for name, shape, slices, knots, t_max, scale in specs:
        z = normal(*shape) * scale
        if name == "far":
            z = z + 0.8
        directions = normal(shape[-1], slices)
        unit = directions / directions.norm(p=2, dim=0)
        zg = z.clone().requires_grad_(True)
        official = EppsPulley64(t_max=t_max, n_points=knots)(zg @ unit).mean()
        (gradient,) = torch.autograd.grad(official, zg)
        case = {
            "name": name,
            "z": _rows(z),
            "directions": _rows(directions),
            "knots": knots,
            "t_max": t_max,
            "official": official.item(),
            "official_grad_z": _rows(gradient),
        }
        if t_max == 3.0:
            case["minimal_md"] = minimal_sigreg(knots, directions)(z).item()
        cases.append(case)

    # LeJEPA: the two lines of MINIMAL.md's training loop, with its SIGReg, on (V, N, D) projections.
    proj = normal(4, 10, 6)
    directions = normal(6, 9)
    lejepa = {"views": _rows(proj), "directions": _rows(directions), "expected": []}
    for lamb in (0.02, 0.05, 0.5):
        namespace = {"proj": proj, "sigreg": minimal_sigreg(17, directions), "cfg": types.SimpleNamespace(lamb=lamb)}
        exec("sigreg_loss = sigreg(proj)\n" + invariance_line + "\n" + loss_line, namespace)
        lejepa["expected"].append(
            {
                "lamb": lamb,
                "lejepa_loss": namespace["lejepa_loss"].item(),
                "inv_loss": namespace["inv_loss"].item(),
                "sigreg_loss": namespace["sigreg_loss"].item(),
            }
        )

    # Drawn directions: SlicingUnivariateTest as it is (float32), first call (step 0, seed 0), on the CPU.
    z32 = normal(16, 6).float()
    drawn = []
    real_randn = torch.randn

    def recording_randn(*args, **kwargs):
        value = real_randn(*args, **kwargs)
        drawn.append(value.clone())
        return value

    test = slicing.SlicingUnivariateTest(epps_pulley_float32.EppsPulley(), num_slices=8)
    slicing.torch.randn = recording_randn
    try:
        value = test(z32)
    finally:
        slicing.torch.randn = real_randn
    (raw,) = drawn
    drawn_case = {
        "z_float32": _rows(z32.double()),
        "num_slices": 8,
        "seed": 0,
        "raw_directions_float32": _rows(raw.double()),
        "official_float32": value.item(),
    }
    return {"sigreg": cases, "lejepa": lejepa, "drawn": drawn_case}


def mmcr_cases(mmcr_root: pathlib.Path) -> list:
    sys.path.insert(0, str(mmcr_root))
    import torch

    loss_module = importlib.import_module("mmcr.cifar_stl.loss_mmcr")
    generator = torch.Generator().manual_seed(20231203)
    cases = []
    for name, (views, n, d), with_gradient in [
        ("small", (2, 8, 6), True),
        ("wide", (4, 5, 12), True),
        ("tall", (3, 12, 4), True),
        ("odd", (3, 37, 70), False),
    ]:
        z_views = torch.randn(views, n, d, generator=generator, dtype=torch.float64)
        case = {"name": name, "views": _rows(z_views), "expected": []}
        for lmbda in (0.0, 0.005, 0.1):
            official_input = z_views.transpose(0, 1).reshape(n * views, d).clone().requires_grad_(True)
            loss, details = loss_module.MMCR_Loss(lmbda=lmbda, n_aug=views, distributed=False)(official_input)
            entry = {"lmbda": lmbda, "loss": loss.item(), "local_nuc": details["local_nuc"]}
            entry["global_nuc"] = details["global_nuc"]
            if with_gradient and lmbda == 0.1:
                (gradient,) = torch.autograd.grad(loss, official_input)
                entry["grad_views"] = _rows(gradient.reshape(n, views, d).transpose(0, 1))
            case["expected"].append(entry)
        cases.append(case)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lejepa", type=pathlib.Path, required=True, help="checkout of rbalestr-lab/lejepa")
    parser.add_argument("--mmcr", type=pathlib.Path, required=True, help="checkout of ThomasYerxa/mmcr")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent)
    args = parser.parse_args()
    import torch

    about = f"float64 inputs and the official code's outputs (torch {torch.__version__}); see README.md"
    sigreg = {"about": about, **sigreg_cases(args.lejepa)}
    mmcr = {"about": about, "layout": "views[v][n][d]; the official input is views.transpose(0, 1).reshape(N*V, D)"}
    mmcr["cases"] = mmcr_cases(args.mmcr)
    (args.out / "sigreg.json").write_text(json.dumps(sigreg) + "\n")
    (args.out / "mmcr.json").write_text(json.dumps(mmcr) + "\n")


if __name__ == "__main__":
    main()
