import pytest
import torch

from bench.run import execute, resolve

TINY_TRAIN = {
    "steps": 12,
    "batch_size": 32,
    "eval_every": 6,
    "log_every": 3,
    "eval_samples": 200,
    "layer_stats_every": 4,
}
TINY_MODEL = {"hidden": 16}


def tiny_config(methods=None, dataset="ring8", seed=0, **train):
    return resolve(dataset, methods or [("none", {})], TINY_TRAIN | train, TINY_MODEL, seed, "cpu")


def tiny_run(methods=None, **kw):
    return execute(tiny_config(methods, **kw))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield


@pytest.fixture
def float64():
    """Tests that compare trajectories exactly run in float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="session")
def mlflow_tracker(tmp_path_factory):
    """One SQLite MLflow store for the session (creating one costs seconds); tests use their
    own experiment names."""
    from bench.tracking import MlflowTracker

    folder = tmp_path_factory.mktemp("mlflow")
    return MlflowTracker(f"sqlite:///{folder}/mlflow.db")


@pytest.fixture(autouse=True, scope="session")
def _image_caches(tmp_path_factory):
    """Classifier weights and reference features go to one session folder, never the repo's
    runs/; a classifier trained once serves every test."""
    import bench.metrics.classifier as classifier
    import bench.metrics.images as images

    folder = tmp_path_factory.mktemp("image-caches")
    old = classifier.CACHE_DIR, images.CACHE_DIR
    classifier.CACHE_DIR, images.CACHE_DIR = folder / "extractors", folder / "fidelity"
    yield folder
    classifier.CACHE_DIR, images.CACHE_DIR = old


def pytest_addoption(parser):
    parser.addoption(
        "--without-system-data", action="store_true",
        help="hide the data files installed on this machine (Debian's dataset-fashion-mnist, "
        "./data/<name>): tests that need them must skip, as on a fresh user's machine",
    )  # fmt: skip


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "data_files: may read optional data files (run again by the absent-data guard)"
    )


@pytest.fixture(autouse=True, scope="session")
def _system_data(request, tmp_path_factory):
    """With --without-system-data, every file data set finds its default places empty."""
    if not request.config.getoption("--without-system-data"):
        yield
        return
    from bench.datasets import files

    patch = pytest.MonkeyPatch()
    patch.setattr(files, "DATA_DIR", tmp_path_factory.mktemp("no-data"))
    for cls in _subclasses(files.FileData):
        patch.setattr(cls, "system_roots", ())
    yield
    patch.undo()


def _subclasses(cls) -> list[type]:
    return [s for c in cls.__subclasses__() for s in (c, *_subclasses(c))]
