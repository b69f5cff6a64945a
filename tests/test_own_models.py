"""Your own models and images, end to end: chapters 02, 04 and 05 on an image folder and external checkpoints.

The test writes what a researcher brings:

* a tiny image folder: coloured shapes (circles and squares) on coloured backgrounds, 48x40 PNGs,
  24 per class, one of them greyscale and one RGBA (both converted to RGB on reading);
* random-weight ResNet-50 checkpoints in the key layouts of four releases, found through
  ``$SSLGEOM_CHECKPOINTS`` under the release file names: InsDis (PyContrast: weights under ``model``
  with the prefix ``module.encoder.``, a projection head beside them, and the training options as an
  ``argparse.Namespace`` that only the allowlisted loading reads), MoCo-v2 (under ``state_dict``,
  prefix ``module.encoder_q.``, an MLP head, the key encoder's queue) and Barlow Twins (a flat
  torchvision file); and a file in the SwAV repository's layout (prefix ``module.``, projection head
  and prototypes beside the backbone) that a user registry names ``user/my-vicreg``, with a method
  and paradigm of its own;
* a parameter file at input size 32 with the chapters' smallest settings.

Two classes and four models keep the run short (every model is a ResNet-50 run on the CPU), and
chapter 04's paradigm test needs more methods than paradigms (two contrastive, two non-contrastive).

It runs the three chapters as the book does (papermill through ``scripts/run_notebooks.py``) and
checks that they finish on exactly these models, with the registry's labels, on the folder's colour
images (hue and saturation manifolds included), and that a run mixing a default-zoo model into the
folder's run is refused with the reason.
"""

import argparse
import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import run_notebooks  # noqa: E402

SHAPES = ("circle", "square")
PER_CLASS = 24
MODELS = ["published/insdis", "published/moco-v2", "published/barlowtwins", "user/my-vicreg"]
CHAPTERS = ("02_augmentation_manifolds", "04_geometry_vs_paradigm", "05_transfer_prediction")
USER_METHOD, USER_PARADIGM = "My-VICReg", "non-contrastive"


def write_shapes(root: Path) -> Path:
    """``root/<shape>/<shape>_<i>.png``: one filled shape per image, random colours, size and place."""
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        (root / shape).mkdir(parents=True)
        for i in range(PER_CLASS):
            image = Image.new("RGB", (48, 40), tuple(int(v) for v in rng.integers(0, 110, 3)))
            x, y, r = (int(v) for v in (rng.integers(14, 34), rng.integers(12, 28), rng.integers(7, 12)))
            box, fill = [x - r, y - r, x + r, y + r], tuple(int(v) for v in rng.integers(130, 256, 3))
            draw = ImageDraw.Draw(image)
            if shape == "circle":
                draw.ellipse(box, fill=fill)
            else:
                draw.rectangle(box, fill=fill)
            mode = {0: "L", 1: "RGBA"}.get(i, "RGB") if shape == "circle" else "RGB"  # mixed modes are converted
            image.convert(mode).save(root / shape / f"{shape}_{i:02d}.png")
    return root


def resnet50_weights(seed: int) -> dict[str, torch.Tensor]:
    """A random torchvision ResNet-50 backbone state (no ``fc``), in half precision to keep the files small."""
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    state = resnet50(weights=None).state_dict()
    return {k: (v.half() if v.is_floating_point() else v) for k, v in state.items() if not k.startswith("fc.")}


def write_checkpoints(directory: Path) -> dict[str, Path]:
    """The four releases' files; returns them by model name."""
    directory.mkdir(parents=True)
    files = {name: directory / file for name, file in (
        ("published/insdis", "InsDis.pth"), ("published/moco-v2", "moco_v2_800ep_pretrain.pth.tar"),
        ("published/barlowtwins", "barlowtwins_resnet50.pth"), ("user/my-vicreg", "my_vicreg.pth.tar"))}
    insdis = {f"module.encoder.{k}": v for k, v in resnet50_weights(1).items()}
    insdis["module.head.0.weight"] = torch.zeros(8, 8)
    torch.save({"model": insdis, "opt": argparse.Namespace(arch="resnet50", nce_k=16384), "epoch": 200},
               files["published/insdis"])
    moco = {f"module.encoder_q.{k}": v for k, v in resnet50_weights(2).items()}
    moco.update({"module.encoder_q.fc.0.weight": torch.zeros(8, 8), "module.encoder_k.conv1.weight": torch.zeros(1),
                 "module.queue": torch.zeros(8, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long)})
    torch.save({"state_dict": moco, "epoch": 800, "arch": "resnet50"}, files["published/moco-v2"])
    torch.save(resnet50_weights(3), files["published/barlowtwins"])
    swav_layout = {f"module.{k}": v for k, v in resnet50_weights(4).items()}
    swav_layout.update({"module.projection_head.0.weight": torch.zeros(8, 8),
                        "module.prototypes.weight": torch.zeros(8)})
    torch.save(swav_layout, files["user/my-vicreg"])
    return files


def write_registry(path: Path, checkpoint: Path) -> Path:
    entry = {"name": "my-vicreg", "file": checkpoint.name, "architecture": "resnet50", "paradigm": USER_PARADIGM,
             "method": USER_METHOD, "prefix": "module.", "drop": ["projection_head.", "prototypes."]}
    path.write_text(yaml.safe_dump({"models": [entry]}, sort_keys=False))
    return path


def write_parameters(path: Path, folder: Path, registry: Path, models: list[str]) -> Path:
    """Every chapter at its smallest: input size 32, 10 images per class, 2 base images, tiny tests."""
    geometry = {"k": 5, "n_per_class": 10, "n_base": 2, "n_views": 4, "k_augmentation": 3}
    spec = {
        "common": {"profile": "smoke", "seed": 0, "device": "cpu", "image_folder": str(folder),
                   "registry": str(registry), "input_size": 32, "images_per_class": PER_CLASS},
        # chapter 02 builds the manifolds at the grids chapter 04 uses, so 04 reads their features from the cache
        "02_augmentation_manifolds": {"models": models, "n_per_class": 10, "n_base": 2, "n_views": 4,
                                      "strip_points": 3},
        "04_geometry_vs_paradigm": {"models": models, **geometry, "n_permutations": 99,
                                    "power_effects": [0.0, 1.0], "power_simulations": 10, "budgets": [1.0],
                                    "sensitivity_k": [], "sensitivity_kernel": "", "sensitivity_n_base": 0},
        "05_transfer_prediction": {"models": models, **geometry, "main_backbone": "resnet50",
                                   "tasks": ["image_folder"], "n_train": 50, "n_val": 20, "n_test": 50,
                                   "c_grid": [1.0], "shots": [2], "n_way": 2, "n_query": 4, "n_episodes": 10,
                                   "n_boot": 20, "power_rhos": [0.9], "n_power_sim": 5,
                                   "n_power_permutations": 19, "n_spectrum": 30, "budget_tasks": []},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """The assets, and each chapter's execution record and executed notebook (run once for the module)."""
    root = tmp_path_factory.mktemp("own_models")
    folder = write_shapes(root / "shapes")
    files = write_checkpoints(root / "checkpoints")
    registry = write_registry(root / "checkpoints" / "registry.yaml", files["user/my-vicreg"])
    parameters = write_parameters(root / "params.yaml", folder, registry, MODELS)
    output = root / "executed"
    with pytest.MonkeyPatch.context() as patch:  # the kernels inherit the environment
        patch.setenv("SSLGEOM_CACHE", str(root / "cache"))
        patch.setenv("SSLGEOM_CHECKPOINTS", str(root / "checkpoints"))
        for name in ("SSLGEOM_USER_REGISTRY", "SSLGEOM_INPUT_SIZE"):
            patch.delenv(name, raising=False)
        records = {stem: run_notebooks.run_one(stem, parameters, output, kernel="python3") for stem in CHAPTERS}
        mixed = write_parameters(root / "mixed.yaml", folder, registry, [*MODELS, "simclr-convnet-s0"])
        records["mixed"] = run_notebooks.run_one("04_geometry_vs_paradigm", mixed, root / "mixed", kernel="python3")
    return {"records": records, "output": output, "root": root}


def outputs_text(notebook_path: Path) -> str:
    """Every text and error output of an executed notebook, joined."""
    notebook = nbformat.read(notebook_path, as_version=4)
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(str(output.get("text", "")))
            parts.extend(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))
            parts.append(" ".join(output.get("traceback", [])))
    return "\n".join(parts)


@pytest.mark.notebook
@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_finishes_on_exactly_the_given_models(own_run, stem):
    record = own_run["records"][stem]
    assert record["status"] == "ok", f"{stem} failed on the image folder and external models: {record.get('error')}"
    used = {entry["name"] for entry in record["models_used"]}
    assert used == set(MODELS), f"{stem} used {sorted(used)}, not the models given"
    assert all(len(entry["sha256"]) == 64 for entry in record["models_used"])


@pytest.mark.notebook
def test_labels_come_from_the_registries(own_run):
    text = outputs_text(own_run["output"] / "02_augmentation_manifolds.ipynb")
    assert USER_METHOD in text and USER_PARADIGM in text  # chapter 02's table of the models' labels
    assert "InsDis" in text and "Barlow Twins" in text  # the published registry's method names
    vectors = pd.read_csv(own_run["output"] / "tables" / "04_geometry_vs_paradigm" / "geometry_vectors.csv",
                          index_col=0)
    assert sorted(vectors.index) == sorted(MODELS)
    sidecar = json.loads((own_run["output"] / "tables" / "04_geometry_vs_paradigm" / "geometry_vectors.json")
                         .read_text())
    assert sidecar["parameters"]["image_folder"].endswith("shapes") and sidecar["parameters"]["input_size"] == 32


@pytest.mark.notebook
def test_colour_families_and_the_folder_task_are_used(own_run):
    vectors = pd.read_csv(own_run["output"] / "tables" / "04_geometry_vs_paradigm" / "geometry_vectors.csv",
                          index_col=0)
    families = " ".join(vectors.columns)
    assert "hue" in families and "saturation" in families  # colour images get the colour families
    scores = pd.read_csv(own_run["output"] / "tables" / "05_transfer_prediction" / "transfer_scores.csv")
    assert set(scores["model"]) == set(MODELS) and set(scores["task"]) == {"image_folder"}
    assert scores["score"].between(0, 1).all()


@pytest.mark.notebook
def test_a_default_zoo_model_in_a_folder_run_is_refused_with_the_reason(own_run):
    record = own_run["records"]["mixed"]
    assert record["status"] == "failed"
    assert "SourceError" in record["error"] and "simclr-convnet-s0" in record["error"]
    assert "cannot see the folder's colour images" in record["error"]
    assert "set image_folder to null" in record["error"]  # and how to fix it


def parameter_names(stem: str) -> set[str]:
    """The names a chapter's ``parameters`` cell assigns."""
    import ast

    import jupytext

    notebook = jupytext.read(REPO / "notebooks" / f"{stem}.py")
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    return {target.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def test_the_worked_example_names_only_real_parameters():
    """params/imagenet_example.yaml: every key is a parameter of the chapter it is given to."""
    spec = yaml.safe_load((REPO / "params" / "imagenet_example.yaml").read_text())
    assert set(spec) == {"common", *CHAPTERS}
    for stem in CHAPTERS:
        given = run_notebooks.load_parameters(REPO / "params" / "imagenet_example.yaml", stem)
        unknown = set(given) - parameter_names(stem)
        assert not unknown, f"params/imagenet_example.yaml gives {stem} parameters it does not have: {unknown}"
    assert {"image_folder", "input_size", "images_per_class", "registry"} <= parameter_names(CHAPTERS[0])


def test_the_runner_reruns_a_chapter_when_an_image_of_its_folder_changes(tmp_path, monkeypatch):
    """The chapter's fingerprint covers the folder's files, so no --force is needed after editing one."""
    import os

    from sslgeom.folder_speed import write_synthetic_folder

    folder = write_synthetic_folder(tmp_path / "images", n_classes=2, n_per_class=3, shape=(8, 8), seed=0)
    monkeypatch.delenv("SSLGEOM_CHECKPOINTS", raising=False)
    source = REPO / "notebooks" / f"{CHAPTERS[0]}.py"
    parameters = {"image_folder": str(folder), "registry": None}
    before = run_notebooks.input_fingerprint(source, parameters)
    assert run_notebooks.input_fingerprint(source, parameters) == before
    os.utime(sorted(folder.rglob("*.png"))[0], ns=(10**18, 10**18))
    assert run_notebooks.input_fingerprint(source, parameters) != before
